"""Stateful metrics with Keras's names and semantics.

    acc = metrics.SparseCategoricalAccuracy()
    for y_true, y_pred, mask in batches:
        acc.update_state(y_true, y_pred, mask=mask)
    acc.result()          # a float over every batch seen since reset_state()

Every metric here is a weighted mean of per-entry values, accumulated as a
total and a count (in float64), so the result over several batches equals
the result on the concatenated data. Shapes follow `fastrnn.losses`: the last
axis of `y_pred` is its feature (class) axis, the other axes are entries
(`(B,)` for `(B, C)` outputs, `(B, T)` per time step; a 1-d `(B,)` output is
read as `(B, 1)`). `sample_weight` and `mask` have the per-entry shape or a
leading part of it (or a trailing 1, or a scalar), like in the losses.

Weighting differs from the losses the way Keras's does: a metric divides by
the sum of the weights of the entries that count (`sum(v * w) / sum(w)`),
where a loss divides by their number. Masked entries (and, for the sparse
metrics, entries labelled `ignore_class`) neither add to the total nor to
the count. With no weight seen, `result()` is 0.

`Perplexity` is exp(total NLL / count) over the unmasked tokens: with unit
weights, exactly exp of `SparseCategoricalCrossentropy` on the same tokens.

`get(identifier, loss=None, output_shape=None)` resolves names; "accuracy"
(and "acc") picks the accuracy that fits the loss, as Keras does. The result
is named by the string that asked for it (`metrics=["accuracy"]` reports
"accuracy", `["mae"]` reports "mae").
"""
import numbers

import numpy as np

from . import _registry, losses
from .losses import (_align_target, _as_mask, _as_pred, _as_real, _asarray, _check_bool, _expand_to,
                     _feature_view, _shape_str, _sparse_labels, sparse_crossentropy)

__all__ = ["Metric", "Mean", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy",
           "MeanAbsoluteError", "MeanSquaredError", "Perplexity", "get", "serialize", "deserialize"]


class Metric(_registry.Configurable):
    """Base class: a name, a running weighted total and count, and config."""

    default_name = "metric"

    def __init__(self, name=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name: expected a str, got {type(name).__name__}")
        self.name = name or self.default_name
        self.reset_state()

    def reset_state(self):
        """Forget every update."""
        self.total = 0.0
        self.count = 0.0

    def update_state(self, y_true, y_pred, sample_weight=None, mask=None):
        raise NotImplementedError(type(self).__name__)

    def result(self):
        """total / count as a float; 0.0 while nothing has been counted."""
        return self.total / self.count if self.count else 0.0

    def __call__(self, *args, **kwargs):
        """Update with one batch and return the running result (as Keras does)."""
        self.update_state(*args, **kwargs)
        return self.result()

    def _accumulate(self, values, entry_shape, sample_weight, active):
        """Add `values` (entry shape) weighted by `sample_weight` where `active`."""
        weight = None
        if sample_weight is not None:
            weight = _expand_to("sample_weight", _as_real("sample_weight", sample_weight, np.float64), entry_shape)
        values = np.asarray(values, np.float64)
        contrib = values if weight is None else values * weight
        counted = np.ones(entry_shape) if weight is None else weight
        if active is not None:
            contrib = np.where(active, contrib, 0.0)
            counted = np.where(active, counted, 0.0)
        self.total += float(np.sum(contrib))
        self.count += float(np.sum(counted))

    def get_config(self):
        return {"name": self.name}


class Mean(Metric):
    """The running weighted mean of `values` (the model uses one for its loss).

    `update_state(values, sample_weight=None, mask=None)`: `values` is a
    number or an array; weights and mask cover its shape or a leading part."""

    default_name = "mean"

    def update_state(self, values, sample_weight=None, mask=None):
        values = _as_real("values", values, np.float64)
        self._accumulate(values, values.shape, sample_weight, _as_mask(mask, values.shape))


class _EntryMetric(Metric):
    """A metric of per-entry values computed by `_values` from a batch.

    `_compares`: y_pred may have any real dtype (an accuracy compares, it does
    not differentiate). `_by_class`: an entry is a row of the last axis, which
    holds the classes (at least one); otherwise entries follow the losses (a
    1-d y_pred is (B, 1))."""

    _compares = False
    _by_class = False

    def update_state(self, y_true, y_pred, sample_weight=None, mask=None):
        """Add one batch: `y_pred` (..., C), `y_true` as the subclass says."""
        pred = _as_real_pred(y_pred) if self._compares else _as_pred(y_pred)
        entry_shape = pred.shape[:-1] if self._by_class else _feature_view(pred).shape[:-1]
        active = _as_mask(mask, entry_shape)
        if self._by_class and pred.shape[-1] == 0:
            raise ValueError(f"y_pred: expected at least one class along the last axis, "
                             f"got shape {_shape_str(pred.shape)}")
        values, valid = self._values(y_true, pred, active)
        if valid is not None:
            active = valid if active is None else active & valid
        self._accumulate(values, entry_shape, sample_weight, active)

    def _values(self, y_true, pred, active):
        """(per-entry values, bool array of entries the labels allow or None)."""
        raise NotImplementedError(type(self).__name__)


def _as_real_pred(y_pred):
    """Predictions of any real dtype (accuracies compare, they do not differentiate)."""
    arr = _asarray("y_pred", y_pred)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"y_pred: expected a real-valued array (bool, integer or float), got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError("y_pred: expected an array of at least 1 dimension, got a scalar")
    return arr


class Accuracy(_EntryMetric):
    """How often y_pred == y_true exactly, averaged over the last axis per entry."""

    default_name = "accuracy"
    _compares = True

    def _values(self, y_true, pred, active):
        view = _feature_view(pred)
        target = _asarray("y_true", y_true)
        if target.dtype.kind not in "biuf":
            raise TypeError(f"y_true: expected a real-valued array (bool, integer or float), got dtype {target.dtype}")
        dtype = np.result_type(target.dtype, view.dtype)
        target = _align_target(target, pred, view, dtype)
        return np.mean(target == view.astype(dtype, copy=False), axis=-1), None


class BinaryAccuracy(_EntryMetric):
    """How often (y_pred > threshold) equals y_true (0/1), averaged over the last axis.

    For a model that outputs logits use threshold=0."""

    default_name = "binary_accuracy"
    _compares = True

    def __init__(self, threshold=0.5, name=None):
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
            raise TypeError(f"threshold: expected a float, got {type(threshold).__name__}")
        self.threshold = float(threshold)
        super().__init__(name=name)

    def _values(self, y_true, pred, active):
        view = _feature_view(pred)
        target = _align_target(y_true, pred, view, np.float64)
        return np.mean((view > self.threshold) == target, axis=-1), None

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


class CategoricalAccuracy(_EntryMetric):
    """How often argmax(y_pred) == argmax(y_true) along the last axis (one-hot y_true)."""

    default_name = "categorical_accuracy"
    _compares = _by_class = True

    def _values(self, y_true, pred, active):
        target = _as_real("y_true", y_true, np.float64)
        if target.shape != pred.shape:
            raise ValueError(f"y_true: expected shape {_shape_str(pred.shape)} (the shape of y_pred: one-hot rows), "
                             f"got {_shape_str(target.shape)}")
        return np.argmax(target, axis=-1) == np.argmax(pred, axis=-1), None


class SparseCategoricalAccuracy(_EntryMetric):
    """How often argmax(y_pred) equals the integer label y_true.

    `ignore_class` (an extension of Keras's metric) leaves the entries with
    that label out, like `SparseCategoricalCrossentropy(ignore_class=...)`."""

    default_name = "sparse_categorical_accuracy"
    _compares = _by_class = True

    def __init__(self, ignore_class=None, name=None):
        self.ignore_class = _check_ignore_class(ignore_class)
        super().__init__(name=name)

    def _values(self, y_true, pred, active):
        labels, valid = _sparse_labels(y_true, pred.shape[:-1], pred.shape[-1], self.ignore_class, active)
        return labels == np.argmax(pred, axis=-1), valid

    def get_config(self):
        return {**super().get_config(), "ignore_class": self.ignore_class}


class MeanAbsoluteError(_EntryMetric):
    """The weighted mean of mean(|y_true - y_pred|) over the last axis."""

    default_name = "mean_absolute_error"

    def _values(self, y_true, pred, active):
        return losses.MeanAbsoluteError().call(y_true, pred), None


class MeanSquaredError(_EntryMetric):
    """The weighted mean of mean((y_true - y_pred) ** 2) over the last axis."""

    default_name = "mean_squared_error"

    def _values(self, y_true, pred, active):
        return losses.MeanSquaredError().call(y_true, pred), None


class Perplexity(_EntryMetric):
    """exp(mean negative log-likelihood) of integer labels over the unmasked tokens.

    `y_pred` is (..., C) logits (`from_logits=True`) or probabilities; the
    total NLL and the token count are accumulated, so the result over batches
    is that of the concatenated data. Tokens labelled `ignore_class` are left
    out."""

    default_name = "perplexity"
    _by_class = True

    def __init__(self, from_logits=True, ignore_class=None, name=None):
        self.from_logits = _check_bool("from_logits", from_logits)
        self.ignore_class = _check_ignore_class(ignore_class)
        super().__init__(name=name)

    def _values(self, y_true, pred, active):
        labels, valid = _sparse_labels(y_true, pred.shape[:-1], pred.shape[-1], self.ignore_class, active)
        nll, _ = sparse_crossentropy(labels, pred, self.from_logits, need_grad=False)
        return nll, valid

    def result(self):
        if not self.count:
            return 0.0
        with np.errstate(over="ignore"):
            return float(np.exp(self.total / self.count))

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "ignore_class": self.ignore_class}


def _check_ignore_class(value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise TypeError(f"ignore_class: expected an int or None, got {type(value).__name__}")
    return None if value is None else int(value)


# ---------------------------------------------------------------------------
# Registry and serialization

_CLASSES = (Mean, Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy, MeanAbsoluteError,
            MeanSquaredError, Perplexity)
_ALIASES = {
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "perplexity": Perplexity,
    "mean": Mean,
}
_ACCURACY_NAMES = ("accuracy", "acc")


def _known_names():
    return sorted(set(_ALIASES) | set(_ACCURACY_NAMES) | {cls.__name__ for cls in _CLASSES})


def _accuracy_for(name, loss, output_shape):
    """The accuracy Keras picks for `loss`: binary for binary cross-entropy
    (threshold 0 on logits), sparse categorical for sparse cross-entropy (with
    its ignore_class), categorical for categorical cross-entropy, else exact
    equality. Without a loss, an output_shape ending in 1 gives binary
    accuracy and one ending in more classes categorical accuracy."""
    loss = losses.get(loss)
    if isinstance(loss, losses.BinaryCrossentropy):
        return BinaryAccuracy(threshold=0.0 if loss.from_logits else 0.5, name=name)
    if isinstance(loss, losses.SparseCategoricalCrossentropy):
        return SparseCategoricalAccuracy(ignore_class=loss.ignore_class, name=name)
    if isinstance(loss, losses.CategoricalCrossentropy):
        return CategoricalAccuracy(name=name)
    if loss is None and output_shape is not None and len(output_shape) and output_shape[-1] is not None:
        return BinaryAccuracy(name=name) if output_shape[-1] == 1 else CategoricalAccuracy(name=name)
    return Accuracy(name=name)


def get(identifier, loss=None, output_shape=None):
    """A Metric from an instance (returned as is), a Metric subclass, a name,
    a serialized dict, or None (returns None).

    `loss` (anything `losses.get` takes) decides what "accuracy"/"acc" means
    and passes from_logits/ignore_class of a sparse cross-entropy on to
    "perplexity"; `output_shape` (the model output's shape) decides
    "accuracy" when there is no loss. Metrics built from a lower-case name
    carry that name."""
    if identifier is None or isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if not isinstance(identifier, str):
        raise TypeError(f"metric: expected a Metric, a Metric class, a name or a config dict, "
                        f"got {type(identifier).__name__}")
    if identifier in _ACCURACY_NAMES:
        return _accuracy_for(identifier, loss, output_shape)
    if identifier == "perplexity":
        resolved = losses.get(loss)
        if isinstance(resolved, losses.SparseCategoricalCrossentropy):
            return Perplexity(from_logits=resolved.from_logits, ignore_class=resolved.ignore_class, name=identifier)
        return Perplexity(name=identifier)
    if identifier in _ALIASES:
        return _ALIASES[identifier](name=identifier)
    for cls in _CLASSES:
        if cls.__name__ == identifier:
            return cls()
    raise ValueError(f"metric: unknown identifier {identifier!r}; known: {', '.join(_known_names())}")


def serialize(metric):
    """`{"class_name": ..., "config": ...}` (JSON-able) for a Metric (its state is not saved)."""
    return _registry.serialize(metric, Metric, "metric: expected a Metric instance, got {type}")


def deserialize(config, custom_objects=None):
    """The Metric that `serialize` described (a name is accepted too)."""
    if isinstance(config, str):
        return get(config)
    return _registry.deserialize_checked(config, _CLASSES, "metric", custom_objects)
