"""Losses with Keras's names and semantics, and their exact gradients.

fastrnn has no autograd, so a loss gives both its value and the gradient of
that value with respect to the predictions:

    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    value = loss(y_true, y_pred, sample_weight=None, mask=None)          # a float
    value, d_y_pred = loss.forward_backward(y_true, y_pred, mask=mask)   # d_y_pred like y_pred

Shapes. The last axis of `y_pred` is its feature (class) axis; every other
axis is an *entry* axis. A loss first reduces each entry's features to one
number (the mean over the features for the regression losses and
`BinaryCrossentropy`, the cross-entropy over the classes for the categorical
ones), giving per-entry losses of shape `y_pred.shape[:-1]`: `(B,)` for
`(B, C)` outputs, `(B, T)` for per-time-step `(B, T, C)` outputs. A 1-d
`y_pred` of shape `(B,)` is read as `(B, 1)`: one feature per sample.
`CategoricalCrossentropy(axis=...)` can put the class axis elsewhere.

Weights and masks. `sample_weight` (any real dtype) and `mask` (bool or
integer, True/nonzero where an entry counts) have the per-entry shape or a
leading part of it, which is repeated over the remaining axes: a `(B,)`
weight applies to every step of a `(B, T)` entry grid. A trailing axis of
size 1 is accepted too (`(B, T, 1)`), and so is a scalar.

Reduction (`reduction=`):

- `"sum_over_batch_size"` (the default, Keras's): the per-entry losses are
  multiplied by `sample_weight`, masked entries are dropped, and the sum is
  divided by the number of entries that count: all entries without a mask,
  the unmasked ones with a mask (Keras 3 does the same, up to an epsilon).
  `SparseCategoricalCrossentropy(ignore_class=k)` treats entries labelled `k`
  as masked. Sample weights never change the divisor. When no entry counts,
  the loss and its gradient are 0.
- `"sum"`: the same weighted, masked sum, not divided.
- `"none"`: `__call__` returns the per-entry array (weighted, masked entries
  0) in `y_pred`'s dtype; `forward_backward` refuses it (no scalar to
  differentiate).

Masked entries contribute exactly 0 to the loss and the gradient, even when
their predictions are NaN or their labels are out of range.

Numerics. Arithmetic runs in `y_pred`'s dtype (float32 or float64); the
final sum is accumulated in float64. Cross-entropy from logits goes through
a log-sum-exp (softmax) or the form max(x, 0) - x*z + log1p(exp(-|x|))
(sigmoid), so logits of any finite size give finite results. Cross-entropy
from probabilities clips them to [1e-7, 1 - 1e-7] like Keras (categorical
ones first divide by their sum, like Keras), and the gradient is that of the
clipped formula: zero where the clip is active.

Serialization: `get(identifier)`, `serialize(loss)`, `deserialize(config)`;
`serialize` gives a JSON-able `{"class_name": ..., "config": ...}`.
"""
import numbers

import numpy as np

from . import _registry

__all__ = ["Loss", "MeanSquaredError", "MeanAbsoluteError", "Huber", "BinaryCrossentropy",
           "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "get", "serialize",
           "deserialize", "REDUCTIONS", "EPSILON"]

EPSILON = 1e-7          # Keras's backend.epsilon(): the clip applied to probabilities
REDUCTIONS = ("sum_over_batch_size", "sum", "none")
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ---------------------------------------------------------------------------
# Argument checking shared with fastrnn.metrics

def _shape_str(shape):
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _asarray(name, value):
    try:
        return np.asarray(value)
    except Exception as exc:  # ragged nested lists and the like
        raise TypeError(f"{name}: expected an array, got {type(value).__name__} ({exc})") from None


def _as_pred(value, name="y_pred"):
    """`value` as a float32/float64 array of at least one dimension."""
    arr = _asarray(name, value)
    if arr.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{name}: expected an array of at least 1 dimension, got a scalar")
    return arr


def _as_real(name, value, dtype):
    """A real-valued array (bool, integer or float) cast to `dtype`."""
    arr = _asarray(name, value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real-valued array (bool, integer or float), got dtype {arr.dtype}")
    return arr.astype(dtype, copy=False)


def _feature_view(pred, name="y_pred"):
    """`pred` with its feature axis last: (B,) is read as (B, 1)."""
    view = pred.reshape(pred.shape + (1,)) if pred.ndim == 1 else pred
    if view.shape[-1] == 0:
        raise ValueError(f"{name}: expected a non-empty last (feature) axis, got shape {_shape_str(pred.shape)}")
    return view


def _align_target(y_true, pred, view, dtype, name="y_true"):
    """`y_true` reshaped like `view` (the feature view of `pred`).

    `y_true` has `pred`'s shape, or differs from it by one trailing axis of
    size 1 on either side ((B, T) targets for (B, T, 1) outputs and back).
    """
    arr = _as_real(name, y_true, dtype)
    shape = pred.shape
    allowed = [shape, shape + (1,)]
    if shape[-1] == 1:
        allowed.append(shape[:-1])
    if arr.shape not in allowed:
        raise ValueError(f"{name}: expected shape {_shape_str(shape)} (the shape of y_pred), "
                         f"got {_shape_str(arr.shape)}")
    return arr.reshape(view.shape)


def _expand_to(name, arr, entry_shape):
    """Broadcast a weight or mask of the per-entry shape, a leading part of it,
    or the per-entry shape plus a trailing 1, to exactly `entry_shape`."""
    shape = arr.shape
    if shape == tuple(entry_shape) + (1,):
        return arr.reshape(entry_shape)
    k = len(shape)
    if k <= len(entry_shape) and shape == tuple(entry_shape[:k]):
        return np.broadcast_to(arr.reshape(shape + (1,) * (len(entry_shape) - k)), entry_shape)
    hint = _shape_str(entry_shape[:1]) if entry_shape else "()"
    raise ValueError(f"{name}: expected the per-entry shape {_shape_str(entry_shape)} or a leading part of it "
                     f"(e.g. {hint}), got {_shape_str(shape)}")


def _as_mask(mask, entry_shape):
    """A bool mask of `entry_shape` (True where an entry counts), or None."""
    if mask is None:
        return None
    arr = _asarray("mask", mask)
    if arr.dtype.kind not in "biu":
        raise TypeError(f"mask: expected a bool (or integer 0/1) array, got dtype {arr.dtype}")
    return _expand_to("mask", arr.astype(bool, copy=False), entry_shape)


def _as_weight(sample_weight, entry_shape, dtype):
    """Sample weights broadcast to `entry_shape` in `dtype`, or None."""
    if sample_weight is None:
        return None
    arr = _as_real("sample_weight", sample_weight, dtype)
    return _expand_to("sample_weight", arr, entry_shape)


def _sparse_labels(y_true, entry_shape, n_classes, ignore_class, active):
    """Integer class labels of `entry_shape` and the bool array of entries that
    are not `ignore_class` (None without ignore_class).

    Labels are checked to lie in [0, n_classes) wherever they count (not
    masked by `active`, not ignored). Floats are accepted when integral.
    """
    arr = _asarray("y_true", y_true)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"y_true: expected integer class labels, got dtype {arr.dtype}")
    shape = tuple(entry_shape)
    if arr.shape == shape + (1,):
        arr = arr.reshape(shape)
    elif arr.shape != shape:
        raise ValueError(f"y_true: expected class labels of shape {_shape_str(shape)} (y_pred's shape without its "
                         f"class axis), or {_shape_str(shape + (1,))}, got {_shape_str(arr.shape)}")
    valid = None if ignore_class is None else arr != ignore_class
    check = valid
    if active is not None:
        check = active if check is None else check & active
    if arr.dtype.kind == "f":
        considered = arr if check is None else arr[check]
        bad = ~np.isfinite(considered) | (considered != np.round(considered))
        if np.any(bad):
            raise ValueError(f"y_true: expected integer class labels, got the non-integer value "
                             f"{float(considered[bad][0])!r}")
        arr = np.where(check, arr, 0) if check is not None else arr
        arr = arr.astype(np.int64)
    else:
        arr = arr.astype(np.int64, copy=False)
    out_of_range = (arr < 0) | (arr >= n_classes)
    if check is not None:
        out_of_range &= check
    if np.any(out_of_range):
        value = int(arr[out_of_range][0])
        extra = "" if ignore_class is None else f" or ignore_class={ignore_class}"
        raise ValueError(f"y_true: class labels must be in [0, {n_classes - 1}] (y_pred has {n_classes} classes "
                         f"along its last axis){extra}, got {value}")
    if check is not None:
        arr = np.where(check, arr, 0)          # a safe index where the entry does not count
    return arr, valid


# ---------------------------------------------------------------------------
# Pointwise numerics (all arrays in one float dtype)

def _log_softmax_parts(x):
    """(log_softmax(x), softmax(x)) along the last axis, via a shifted log-sum-exp."""
    shifted = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(shifted)
    total = np.sum(e, axis=-1, keepdims=True)
    return shifted - np.log(total), e / total


def _sigmoid(x):
    """The logistic function without overflow for large |x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _clip_bounds(dtype):
    return dtype.type(EPSILON), dtype.type(1.0 - EPSILON)


def sparse_crossentropy(labels, pred, from_logits, need_grad):
    """Per-entry cross-entropy of integer `labels` (entry shape, all in range)
    under `pred` (entry shape + (C,)), and its local gradient (like `pred`,
    or None). Used by SparseCategoricalCrossentropy and metrics.Perplexity."""
    idx = labels[..., None]
    if from_logits:
        log_p, p = _log_softmax_parts(pred)
        values = -np.take_along_axis(log_p, idx, axis=-1)[..., 0]
        if not need_grad:
            return values, None
        grad = p
        np.put_along_axis(grad, idx, np.take_along_axis(grad, idx, axis=-1) - 1, axis=-1)
        return values, grad
    # Probabilities: normalise by the sum, clip, take -log of the label's entry.
    lo, hi = _clip_bounds(pred.dtype)
    total = np.sum(pred, axis=-1, keepdims=True)
    q_y = np.take_along_axis(pred, idx, axis=-1) / total
    r_y = np.clip(q_y, lo, hi)
    values = -np.log(r_y)[..., 0]
    if not need_grad:
        return values, None
    # d/dp_k of -log(p_y / sum p) = (1 - [k == y] / q_y) / sum p, zero when the clip is active.
    inside = ((q_y >= lo) & (q_y <= hi)).astype(pred.dtype)
    grad = np.broadcast_to(inside / total, pred.shape).copy()
    np.put_along_axis(grad, idx, inside * (1 - 1 / r_y) / total, axis=-1)
    return values, grad


# ---------------------------------------------------------------------------
# Losses

class Loss(_registry.Configurable):
    """Base class. A subclass implements `_compute` on arrays whose feature
    axis is last; this class does the checking, weighting, masking and
    reduction (see the module docstring)."""

    default_name = "loss"

    def __init__(self, reduction="sum_over_batch_size", name=None):
        if reduction is None:
            reduction = "none"
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction: expected one of {', '.join(map(repr, REDUCTIONS))}, got {reduction!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name: expected a str, got {type(name).__name__}")
        self.reduction = reduction
        self.name = name or self.default_name

    # ---- what a subclass provides -------------------------------------------------
    def _prepare(self, y_true, y_pred, mask):
        """Checked inputs: (target, view, valid, restore).

        `view` is `y_pred` with its feature axis last, `target` what `_compute`
        needs (like `view`, or labels), `valid` a bool array of the entries the
        targets allow (or None), `restore(grad_view)` the gradient in `y_pred`'s
        layout. `mask` is the caller's mask, already of the per-entry shape."""
        view = _feature_view(y_pred)
        target = _align_target(y_true, y_pred, view, y_pred.dtype)
        return target, view, None, lambda g: g.reshape(y_pred.shape)

    def _entry_shape(self, y_pred):
        return _feature_view(y_pred).shape[:-1]

    def _compute(self, target, view, need_grad):
        """(per-entry values of shape view.shape[:-1], d values / d view or None)."""
        raise NotImplementedError(type(self).__name__)

    # ---- the public calls ----------------------------------------------------------------
    def call(self, y_true, y_pred):
        """The unweighted per-entry losses (shape `y_pred.shape[:-1]`; 0 where
        the label is `ignore_class`)."""
        pred = _as_pred(y_pred)
        target, view, valid, _ = self._prepare(y_true, pred, None)
        values = self._compute(target, view, need_grad=False)[0]
        return values if valid is None else np.where(valid, values, pred.dtype.type(0))

    def __call__(self, y_true, y_pred, sample_weight=None, mask=None):
        """The loss: a float, or the per-entry array with reduction="none"."""
        return self._evaluate(y_true, y_pred, sample_weight, mask, need_grad=False)[0]

    def forward_backward(self, y_true, y_pred, sample_weight=None, mask=None):
        """(loss, d loss / d y_pred): the gradient is a new array with y_pred's shape and dtype."""
        if self.reduction == "none":
            raise ValueError("reduction: forward_backward needs a scalar loss; got reduction='none' "
                             "(use 'sum_over_batch_size' or 'sum')")
        return self._evaluate(y_true, y_pred, sample_weight, mask, need_grad=True)

    def _evaluate(self, y_true, y_pred, sample_weight, mask, need_grad):
        pred = _as_pred(y_pred)
        dtype = pred.dtype
        entry_shape = self._entry_shape(pred)
        active = _as_mask(mask, entry_shape)
        weight = _as_weight(sample_weight, entry_shape, dtype)
        target, view, valid, restore = self._prepare(y_true, pred, active)
        if valid is not None:
            active = valid if active is None else active & valid
        values, local = self._compute(target, view, need_grad)

        contrib = values if weight is None else values * weight
        if active is not None:
            contrib = np.where(active, contrib, dtype.type(0))
        if self.reduction == "none":
            return np.asarray(contrib, dtype=dtype), None
        total = float(np.sum(contrib, dtype=np.float64))
        if self.reduction == "sum":
            divisor = 1
        else:
            divisor = int(np.count_nonzero(active)) if active is not None else int(np.prod(entry_shape))
        loss = total / divisor if divisor else 0.0
        if not need_grad:
            return loss, None
        if not divisor:
            return loss, np.zeros(pred.shape, dtype)
        coef = np.full(entry_shape, 1 / divisor, dtype) if weight is None else weight / dtype.type(divisor)
        grad = local * coef[..., None]
        if active is not None:
            grad = np.where(active[..., None], grad, dtype.type(0))
        return loss, np.ascontiguousarray(restore(grad.astype(dtype, copy=False)))

    # ---- config -----------------------------------------------------------------------
    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}


def _check_fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a float in [0, 1], got {type(value).__name__}")
    if not 0 <= value <= 1:
        raise ValueError(f"{name}: expected a float in [0, 1], got {value!r}")
    return float(value)


def _check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


class MeanSquaredError(Loss):
    """mean((y_true - y_pred) ** 2) over the last axis."""

    default_name = "mean_squared_error"

    def _compute(self, target, view, need_grad):
        diff = view - target
        n = view.shape[-1]
        values = np.mean(diff * diff, axis=-1)
        return values, (diff * view.dtype.type(2 / n) if need_grad else None)


class MeanAbsoluteError(Loss):
    """mean(|y_true - y_pred|) over the last axis; the gradient at 0 is 0."""

    default_name = "mean_absolute_error"

    def _compute(self, target, view, need_grad):
        diff = view - target
        values = np.mean(np.abs(diff), axis=-1)
        return values, (np.sign(diff) / view.dtype.type(view.shape[-1]) if need_grad else None)


class Huber(Loss):
    """mean over the last axis of 0.5 d^2 where |d| <= delta, else delta (|d| - delta/2),
    with d = y_pred - y_true (PyTorch's HuberLoss(delta) per element)."""

    default_name = "huber_loss"

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        if isinstance(delta, bool) or not isinstance(delta, numbers.Real):
            raise TypeError(f"delta: expected a positive float, got {type(delta).__name__}")
        if not (np.isfinite(delta) and delta > 0):
            raise ValueError(f"delta: expected a positive finite float, got {delta!r}")
        self.delta = float(delta)

    def _compute(self, target, view, need_grad):
        diff = view - target
        a = np.abs(diff)
        delta = view.dtype.type(self.delta)
        quadratic = a <= delta
        elem = np.where(quadratic, 0.5 * diff * diff, delta * a - 0.5 * delta * delta)
        values = np.mean(elem, axis=-1)
        if not need_grad:
            return values, None
        return values, np.where(quadratic, diff, delta * np.sign(diff)) / view.dtype.type(view.shape[-1])

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


class BinaryCrossentropy(Loss):
    """Binary cross-entropy per element, averaged over the last axis.

    `y_true` holds targets in [0, 1]; `label_smoothing` s moves them to
    y (1 - s) + s / 2. `y_pred` holds logits with `from_logits=True`, else
    probabilities (clipped to [1e-7, 1 - 1e-7])."""

    default_name = "binary_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        self.from_logits = _check_bool("from_logits", from_logits)
        self.label_smoothing = _check_fraction("label_smoothing", label_smoothing)

    def _compute(self, target, view, need_grad):
        dtype = view.dtype
        z = target
        if self.label_smoothing:
            s = dtype.type(self.label_smoothing)
            z = z * (1 - s) + s / 2
        n = dtype.type(view.shape[-1])
        if self.from_logits:
            x = view
            elem = np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))
            grad = (_sigmoid(x) - z) / n if need_grad else None
        else:
            lo, hi = _clip_bounds(dtype)
            p = np.clip(view, lo, hi)
            elem = -(z * np.log(p) + (1 - z) * np.log1p(-p))
            grad = None
            if need_grad:
                inside = (view >= lo) & (view <= hi)
                grad = np.where(inside, (p - z) / (p * (1 - p)), dtype.type(0)) / n
        return np.mean(elem, axis=-1), grad

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


class CategoricalCrossentropy(Loss):
    """-sum(y_true * log softmax(y_pred)) along `axis` (from logits), or
    -sum(y_true * log(clip(y_pred / sum(y_pred)))) from probabilities.

    `y_true` has y_pred's shape (one-hot or probability rows);
    `label_smoothing` s moves it to y (1 - s) + s / C."""

    default_name = "categorical_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name=None):
        super().__init__(reduction=reduction, name=name)
        self.from_logits = _check_bool("from_logits", from_logits)
        self.label_smoothing = _check_fraction("label_smoothing", label_smoothing)
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"axis: expected an int, got {type(axis).__name__}")
        self.axis = int(axis)

    def _class_axis(self, y_pred):
        if not -y_pred.ndim <= self.axis < y_pred.ndim:
            raise ValueError(f"axis: expected an axis of y_pred (ndim {y_pred.ndim}), got {self.axis}")
        axis = self.axis % y_pred.ndim
        if y_pred.shape[axis] == 0:
            raise ValueError(f"y_pred: expected at least one class along axis {self.axis}, "
                             f"got shape {_shape_str(y_pred.shape)}")
        return axis

    def _entry_shape(self, y_pred):
        axis = self._class_axis(y_pred)
        return y_pred.shape[:axis] + y_pred.shape[axis + 1:]

    def _prepare(self, y_true, y_pred, mask):
        axis = self._class_axis(y_pred)
        target = _as_real("y_true", y_true, y_pred.dtype)
        if target.shape != y_pred.shape:
            raise ValueError(f"y_true: expected shape {_shape_str(y_pred.shape)} (the shape of y_pred: one-hot or "
                             f"probability rows), got {_shape_str(target.shape)}")
        view = np.moveaxis(y_pred, axis, -1)
        return np.moveaxis(target, axis, -1), view, None, lambda g: np.moveaxis(g, -1, axis)

    def _compute(self, target, view, need_grad):
        dtype = view.dtype
        t = target
        if self.label_smoothing:
            s = dtype.type(self.label_smoothing)
            t = t * (1 - s) + s / dtype.type(view.shape[-1])
        if self.from_logits:
            log_p, p = _log_softmax_parts(view)
            values = -np.sum(t * log_p, axis=-1)
            grad = p * np.sum(t, axis=-1, keepdims=True) - t if need_grad else None
            return values, grad
        lo, hi = _clip_bounds(dtype)
        total = np.sum(view, axis=-1, keepdims=True)
        q = view / total
        r = np.clip(q, lo, hi)
        values = -np.sum(t * np.log(r), axis=-1)
        if not need_grad:
            return values, None
        # g = dL/dq (zero where clipped); dL/dp_k = (g_k - sum_i g_i q_i) / sum p.
        g = np.where((q >= lo) & (q <= hi), -t / r, dtype.type(0))
        grad = (g - np.sum(g * q, axis=-1, keepdims=True)) / total
        return values, grad

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "axis": self.axis}


class SparseCategoricalCrossentropy(Loss):
    """Categorical cross-entropy with integer class labels.

    `y_true` has y_pred's shape without the class axis (a trailing axis of 1
    is accepted). Entries labelled `ignore_class` count as masked: no loss, no
    gradient, not in the divisor. Labels elsewhere must be in [0, C), except
    at entries the caller's mask drops, which are not checked."""

    default_name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        self.from_logits = _check_bool("from_logits", from_logits)
        if ignore_class is not None and (isinstance(ignore_class, bool)
                                         or not isinstance(ignore_class, numbers.Integral)):
            raise TypeError(f"ignore_class: expected an int or None, got {type(ignore_class).__name__}")
        self.ignore_class = None if ignore_class is None else int(ignore_class)

    def _prepare(self, y_true, y_pred, mask):
        view = y_pred
        if view.shape[-1] == 0:
            raise ValueError(f"y_pred: expected at least one class along the last axis, "
                             f"got shape {_shape_str(y_pred.shape)}")
        labels, valid = _sparse_labels(y_true, view.shape[:-1], view.shape[-1], self.ignore_class, mask)
        return labels, view, valid, lambda g: g

    def _entry_shape(self, y_pred):
        return y_pred.shape[:-1]

    def _compute(self, target, view, need_grad):
        return sparse_crossentropy(target, view, self.from_logits, need_grad)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "ignore_class": self.ignore_class}


# ---------------------------------------------------------------------------
# Registry and serialization

_CLASSES = (MeanSquaredError, MeanAbsoluteError, Huber, BinaryCrossentropy, CategoricalCrossentropy,
            SparseCategoricalCrossentropy)
_ALIASES = {
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "huber": Huber, "huber_loss": Huber,
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}
_BY_NAME = {**_ALIASES, **_registry.by_class_name(_CLASSES)}


def get(identifier):
    """A Loss from an instance (returned as is), a Loss subclass (instantiated
    with defaults), a name ("mse", "sparse_categorical_crossentropy",
    "Huber", ...), a serialized dict, or None (returns None)."""
    if identifier is None or isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier)
        if cls is None:
            raise ValueError(f"loss: unknown identifier {identifier!r}; known: {', '.join(sorted(_BY_NAME))}")
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise TypeError(f"loss: expected a Loss, a Loss class, a name or a config dict, got {type(identifier).__name__}")


def serialize(loss):
    """`{"class_name": ..., "config": ...}` (JSON-able) for a Loss."""
    return _registry.serialize(loss, Loss, "loss: expected a Loss instance, got {type}")


def deserialize(config, custom_objects=None):
    """The Loss that `serialize` described (a name is accepted too).

    `custom_objects` maps class names to Loss subclasses not defined here."""
    if isinstance(config, str):
        return get(config)
    return _registry.deserialize_checked(config, _CLASSES, "loss", custom_objects)
