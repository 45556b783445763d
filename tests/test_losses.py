"""fastrnn.losses: values against plain float64 formulas, gradients against
central finite differences, PyTorch parity (when torch is installed),
numerical stability, input checking and serialization.

The reference formulas below loop over entries with Python's `math`, so they
share no code path with the vectorised implementation.
"""
import json
import math
import zlib

import numpy as np
import pytest

from fastrnn import losses

EPS = 1e-7


# ---------------------------------------------------------------------------
# Reference: per-entry losses with math, one feature row at a time

def _clip(p):
    return min(max(p, EPS), 1 - EPS)


def _ref_row(kind, cfg, t, p):
    """The loss of one entry: `t` and `p` are lists of floats (p: feature row)."""
    n = len(p)
    if kind == "mse":
        return sum((a - b) ** 2 for a, b in zip(t, p)) / n
    if kind == "mae":
        return sum(abs(a - b) for a, b in zip(t, p)) / n
    if kind == "huber":
        d = cfg.get("delta", 1.0)
        out = 0.0
        for a, b in zip(t, p):
            e = abs(b - a)
            out += 0.5 * e * e if e <= d else d * e - 0.5 * d * d
        return out / n
    if kind == "bce":
        s = cfg.get("label_smoothing", 0.0)
        out = 0.0
        for z, x in zip(t, p):
            z = z * (1 - s) + 0.5 * s
            q = 1 / (1 + math.exp(-x)) if cfg.get("from_logits") else _clip(x)
            out -= z * math.log(q) + (1 - z) * math.log(1 - q)
        return out / n
    if kind in ("cce", "scce"):
        if kind == "scce":
            t = [1.0 if k == int(t[0]) else 0.0 for k in range(n)]
        s = cfg.get("label_smoothing", 0.0)
        t = [z * (1 - s) + s / n for z in t]
        if cfg.get("from_logits"):
            lse = math.log(sum(math.exp(x) for x in p))
            logq = [x - lse for x in p]
        else:
            total = sum(p)
            logq = [math.log(_clip(x / total)) for x in p]
        return -sum(z * lq for z, lq in zip(t, logq))
    raise AssertionError(kind)


def ref_values(kind, cfg, y_true, y_pred, axis=-1):
    """Per-entry losses, shape y_pred.shape without the feature axis."""
    y_pred = np.moveaxis(np.asarray(y_pred, np.float64), axis, -1)
    if y_pred.ndim == 1:
        y_pred = y_pred[:, None]
    entry_shape = y_pred.shape[:-1]
    if kind == "scce":
        y_true = np.asarray(y_true, np.float64).reshape(entry_shape + (1,))
    else:
        y_true = np.moveaxis(np.asarray(y_true, np.float64), axis, -1).reshape(y_pred.shape)
    out = np.zeros(entry_shape)
    for idx in np.ndindex(entry_shape):
        out[idx] = _ref_row(kind, cfg, list(y_true[idx]), list(y_pred[idx]))
    return out


def expand(w, entry_shape):
    """A weight/mask of a leading part of entry_shape repeated over the rest."""
    w = np.asarray(w)
    return np.broadcast_to(w.reshape(w.shape + (1,) * (len(entry_shape) - w.ndim)), entry_shape)


def ref_reduce(values, sample_weight=None, mask=None, reduction="sum_over_batch_size"):
    """Weighted, masked reduction written out: sum(v * w over counted) / #counted."""
    w = np.ones(values.shape) if sample_weight is None else expand(sample_weight, values.shape).astype(float)
    m = np.ones(values.shape, bool) if mask is None else expand(mask, values.shape)
    total = 0.0
    count = 0
    per_entry = np.zeros(values.shape)
    for idx in np.ndindex(values.shape):
        if m[idx]:
            per_entry[idx] = values[idx] * w[idx]
            total += per_entry[idx]
            count += 1
    if reduction == "none":
        return per_entry
    if reduction == "sum":
        return total
    return total / count if count else 0.0


def central_difference(f, x, eps=1e-6):
    x = np.array(x, np.float64)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        fp = f(x)
        x[idx] = old - eps
        fm = f(x)
        x[idx] = old
        g[idx] = (fp - fm) / (2 * eps)
    return g


def rel_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300)


# ---------------------------------------------------------------------------
# Problems: (kind, cfg, factory) and random inputs away from kinks and clips

LOSSES = {
    "mse": ("mse", {}, lambda **r: losses.MeanSquaredError(**r)),
    "mae": ("mae", {}, lambda **r: losses.MeanAbsoluteError(**r)),
    "huber": ("huber", {"delta": 1.0}, lambda **r: losses.Huber(**r)),
    "huber_0.5": ("huber", {"delta": 0.5}, lambda **r: losses.Huber(delta=0.5, **r)),
    "bce": ("bce", {}, lambda **r: losses.BinaryCrossentropy(**r)),
    "bce_logits": ("bce", {"from_logits": True}, lambda **r: losses.BinaryCrossentropy(from_logits=True, **r)),
    "bce_smooth": ("bce", {"from_logits": True, "label_smoothing": 0.2},
                   lambda **r: losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.2, **r)),
    "cce": ("cce", {}, lambda **r: losses.CategoricalCrossentropy(**r)),
    "cce_logits": ("cce", {"from_logits": True}, lambda **r: losses.CategoricalCrossentropy(from_logits=True, **r)),
    "cce_smooth": ("cce", {"label_smoothing": 0.1},
                   lambda **r: losses.CategoricalCrossentropy(label_smoothing=0.1, **r)),
    "scce": ("scce", {}, lambda **r: losses.SparseCategoricalCrossentropy(**r)),
    "scce_logits": ("scce", {"from_logits": True},
                    lambda **r: losses.SparseCategoricalCrossentropy(from_logits=True, **r)),
}


def make_inputs(kind, cfg, shape, rng):
    """(y_true, y_pred) in float64 for a y_pred of `shape` (class axis last)."""
    if kind in ("mse", "mae", "huber"):
        y_true = rng.standard_normal(shape)
        delta = cfg.get("delta", 1.0)
        # |diff| stays 0.1 away from 0 (mae's kink) and from delta (huber's).
        mag = np.where(rng.random(shape) < 0.5, rng.uniform(0.1, delta - 0.1, shape),
                       rng.uniform(delta + 0.1, 3 * delta, shape))
        return y_true, y_true + mag * rng.choice([-1.0, 1.0], shape)
    if kind == "bce":
        y_true = np.where(rng.random(shape) < 0.3, rng.random(shape), rng.integers(0, 2, shape)).astype(float)
        y_pred = rng.standard_normal(shape) * 3 if cfg.get("from_logits") else rng.uniform(0.05, 0.95, shape)
        return y_true, y_pred
    if kind == "cce":
        y_true = rng.dirichlet(np.ones(shape[-1]), shape[:-1])
        y_pred = rng.standard_normal(shape) * 2 if cfg.get("from_logits") else rng.uniform(0.1, 1.0, shape)
        return y_true, y_pred
    if kind == "scce":
        y_true = rng.integers(0, shape[-1], shape[:-1])
        y_pred = rng.standard_normal(shape) * 2 if cfg.get("from_logits") else rng.uniform(0.1, 1.0, shape)
        return y_true, y_pred
    raise AssertionError(kind)


def make_weighting(weighting, entry_shape, rng):
    """(sample_weight, mask) for a weighting case; masks keep some entries on and some off."""
    sw = mask = None
    if weighting in ("sw", "sw_mask"):
        sw = rng.uniform(0.2, 2.0, entry_shape)
    if weighting == "sw_prefix":
        sw = rng.uniform(0.2, 2.0, entry_shape[:1])
    if weighting in ("mask", "sw_mask"):
        mask = rng.random(entry_shape) < 0.6
        mask.flat[0], mask.flat[-1] = True, False
    return sw, mask


SHAPES = [(5, 3), (3, 4, 5)]
WEIGHTINGS = ["none", "sw", "sw_prefix", "mask", "sw_mask"]


@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("shape", SHAPES, ids=["2d", "3d"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_value_and_gradient(name, shape, weighting):
    kind, cfg, factory = LOSSES[name]
    rng = np.random.default_rng(zlib.crc32(repr((name, shape, weighting)).encode()))
    y_true, y_pred = make_inputs(kind, cfg, shape, rng)
    sw, mask = make_weighting(weighting, shape[:-1], rng)
    loss = factory()

    expected = ref_reduce(ref_values(kind, cfg, y_true, y_pred), sw, mask)
    value = loss(y_true, y_pred, sample_weight=sw, mask=mask)
    assert isinstance(value, float)
    np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-14)

    value2, grad = loss.forward_backward(y_true, y_pred, sample_weight=sw, mask=mask)
    assert value2 == value
    assert grad.shape == y_pred.shape and grad.dtype == np.float64
    fd = central_difference(lambda p: loss(y_true, p, sample_weight=sw, mask=mask), y_pred)
    assert rel_error(grad, fd) < 1e-7, (name, rel_error(grad, fd))
    if mask is not None:
        assert np.all(grad[~mask] == 0)


@pytest.mark.parametrize("reduction", ["sum", "none"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_other_reductions(name, reduction):
    kind, cfg, factory = LOSSES[name]
    rng = np.random.default_rng(7)
    shape = (3, 4, 5)
    y_true, y_pred = make_inputs(kind, cfg, shape, rng)
    sw, mask = make_weighting("sw_mask", shape[:-1], rng)
    loss = factory(reduction=reduction)
    expected = ref_reduce(ref_values(kind, cfg, y_true, y_pred), sw, mask, reduction)
    value = loss(y_true, y_pred, sample_weight=sw, mask=mask)
    np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-14)
    if reduction == "none":
        assert value.shape == shape[:-1] and value.dtype == np.float64
        with pytest.raises(ValueError, match="reduction"):
            loss.forward_backward(y_true, y_pred)
    else:
        _, grad = loss.forward_backward(y_true, y_pred, sample_weight=sw, mask=mask)
        fd = central_difference(lambda p: loss(y_true, p, sample_weight=sw, mask=mask), y_pred)
        assert rel_error(grad, fd) < 1e-7


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("weighting", ["none", "sw_mask"])
def test_categorical_other_axis(from_logits, weighting):
    """axis=1 on (B, C, T): the entries are (B, T)."""
    rng = np.random.default_rng(11)
    cfg = {"from_logits": from_logits}
    y_true, y_pred = make_inputs("cce", cfg, (3, 5, 4), rng)            # (B, T, C)
    y_true, y_pred = y_true.transpose(0, 2, 1), y_pred.transpose(0, 2, 1)  # (B, C, T)
    sw, mask = make_weighting(weighting, (3, 5), rng)
    loss = losses.CategoricalCrossentropy(from_logits=from_logits, axis=1)
    expected = ref_reduce(ref_values("cce", cfg, y_true, y_pred, axis=1), sw, mask)
    np.testing.assert_allclose(loss(y_true, y_pred, sample_weight=sw, mask=mask), expected, rtol=1e-12)
    _, grad = loss.forward_backward(y_true, y_pred, sample_weight=sw, mask=mask)
    fd = central_difference(lambda p: loss(y_true, p, sample_weight=sw, mask=mask), y_pred)
    assert grad.shape == y_pred.shape and rel_error(grad, fd) < 1e-7


def test_one_dimensional_predictions_are_one_feature_per_sample():
    rng = np.random.default_rng(3)
    y_true, y_pred = rng.standard_normal(6), rng.standard_normal(6)
    sw = rng.uniform(0.5, 1.5, 6)
    expected = np.sum((y_true - y_pred) ** 2 * sw) / 6
    loss = losses.MeanSquaredError()
    np.testing.assert_allclose(loss(y_true, y_pred, sample_weight=sw), expected, rtol=1e-12)
    # (B,) targets for (B, 1) outputs and (B, 1) targets for (B,) outputs
    np.testing.assert_allclose(loss(y_true, y_pred[:, None], sample_weight=sw), expected, rtol=1e-12)
    np.testing.assert_allclose(loss(y_true[:, None], y_pred, sample_weight=sw), expected, rtol=1e-12)
    _, grad = loss.forward_backward(y_true, y_pred, sample_weight=sw)
    assert grad.shape == (6,)
    np.testing.assert_allclose(grad, 2 * (y_pred - y_true) * sw / 6, rtol=1e-12)


# ---------------------------------------------------------------------------
# Masks, ignore_class and weights: semantics checked against subsets

@pytest.mark.parametrize("name", sorted(LOSSES))
def test_mask_equals_loss_on_unmasked_entries(name):
    """A (B, T) mask gives the loss of the unmasked rows alone; masked rows may hold NaN."""
    kind, cfg, factory = LOSSES[name]
    rng = np.random.default_rng(5)
    y_true, y_pred = make_inputs(kind, cfg, (4, 6, 3), rng)
    mask = rng.random((4, 6)) < 0.5
    mask[0, 0] = True
    loss = factory()
    subset = loss(y_true[mask], y_pred[mask])
    y_pred = y_pred.copy()
    y_pred[~mask] = np.nan
    value, grad = loss.forward_backward(y_true, y_pred, mask=mask)
    np.testing.assert_allclose(value, subset, rtol=1e-12)
    assert np.all(np.isfinite(grad)) and np.all(grad[~mask] == 0)


def test_all_masked_gives_zero():
    y_pred = np.ones((2, 3, 4))
    for loss in (losses.MeanSquaredError(), losses.CategoricalCrossentropy(from_logits=True)):
        value, grad = loss.forward_backward(np.zeros_like(y_pred), y_pred, mask=np.zeros((2, 3), bool))
        assert value == 0.0 and np.all(grad == 0)


def test_sample_weight_does_not_change_the_divisor():
    rng = np.random.default_rng(2)
    y_true, y_pred = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    loss = losses.MeanAbsoluteError()
    base = loss(y_true, y_pred)
    np.testing.assert_allclose(loss(y_true, y_pred, sample_weight=np.full(4, 3.0)), 3 * base, rtol=1e-12)
    # a zero weight keeps the entry in the divisor (unlike a mask)
    sw = np.array([1.0, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(loss(y_true, y_pred, sample_weight=sw), loss(y_true[:3], y_pred[:3]) * 3 / 4,
                               rtol=1e-12)


def test_weight_and_mask_shape_forms_agree():
    """(B,) weights, (B, 1) weights, (B, T) weights repeated, and (B, T, 1) agree."""
    rng = np.random.default_rng(4)
    y_true, y_pred = make_inputs("scce", {"from_logits": True}, (3, 4, 5), rng)
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    sw = rng.uniform(0.5, 2, 3)
    full = np.repeat(sw[:, None], 4, axis=1)
    mask = rng.random((3, 4)) < 0.7
    mask[0, 0] = True
    ref = loss(y_true, y_pred, sample_weight=full, mask=mask)
    for w in (sw, full[..., None]):
        np.testing.assert_allclose(loss(y_true, y_pred, sample_weight=w, mask=mask), ref, rtol=1e-14)
    np.testing.assert_allclose(loss(y_true, y_pred, sample_weight=full, mask=mask.astype(np.int8)), ref, rtol=1e-14)
    np.testing.assert_allclose(loss(y_true[..., None], y_pred, sample_weight=full, mask=mask[..., None]), ref,
                               rtol=1e-14)
    np.testing.assert_allclose(loss(y_true, y_pred, sample_weight=2.0), 2 * loss(y_true, y_pred), rtol=1e-14)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("ignore_class", [0, 2, -1, -100])
def test_ignore_class_is_a_mask(from_logits, ignore_class):
    rng = np.random.default_rng(9)
    y_true, y_pred = make_inputs("scce", {"from_logits": from_logits}, (4, 5, 3), rng)
    if ignore_class < 0:
        y_true = np.where(rng.random(y_true.shape) < 0.3, ignore_class, y_true)
    y_true[0, 0] = 1
    y_true[0, 1] = ignore_class
    user_mask = rng.random((4, 5)) < 0.8
    user_mask[0, :2] = True
    ignored = y_true == ignore_class
    loss = losses.SparseCategoricalCrossentropy(from_logits=from_logits, ignore_class=ignore_class)
    plain = losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    value, grad = loss.forward_backward(y_true, y_pred, mask=user_mask)
    safe = np.where(ignored, 1, y_true)
    ref_value, ref_grad = plain.forward_backward(safe, y_pred, mask=user_mask & ~ignored)
    np.testing.assert_allclose(value, ref_value, rtol=1e-13)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-13, atol=1e-16)
    assert np.all(grad[ignored] == 0)


def test_masked_labels_are_not_checked():
    y_pred = np.zeros((2, 3, 4))
    y_true = np.array([[0, 1, 99], [2, -5, 3]])
    mask = np.array([[True, True, False], [True, False, True]])
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    np.testing.assert_allclose(loss(y_true, y_pred, mask=mask), math.log(4), rtol=1e-14)
    with pytest.raises(ValueError, match="y_true"):
        loss(y_true, y_pred)


def test_float_labels_accepted_when_integral():
    rng = np.random.default_rng(1)
    y_pred = rng.standard_normal((4, 3))
    labels = np.array([0, 2, 1, 2])
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    assert loss(labels.astype(np.float32), y_pred) == loss(labels, y_pred)
    with pytest.raises(ValueError, match=r"y_true.*non-integer.*1\.5"):
        loss(np.array([0, 1.5, 1, 2]), y_pred)


# ---------------------------------------------------------------------------
# float32

@pytest.mark.parametrize("name", sorted(LOSSES))
def test_float32_matches_float64(name):
    kind, cfg, factory = LOSSES[name]
    rng = np.random.default_rng(13)
    y_true, y_pred = make_inputs(kind, cfg, (3, 4, 5), rng)
    sw, mask = make_weighting("sw_mask", (3, 4), rng)
    loss = factory()
    v64, g64 = loss.forward_backward(y_true, y_pred, sample_weight=sw, mask=mask)
    yt32 = y_true if kind == "scce" else y_true.astype(np.float32)
    v32, g32 = loss.forward_backward(yt32, y_pred.astype(np.float32), sample_weight=sw, mask=mask)
    assert g32.dtype == np.float32 and g32.shape == y_pred.shape
    np.testing.assert_allclose(v32, v64, rtol=1e-5)
    np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-6 * np.abs(g64).max())
    none32 = factory(reduction="none")(yt32, y_pred.astype(np.float32))
    assert none32.dtype == np.float32


# ---------------------------------------------------------------------------
# Stability

@pytest.mark.parametrize("make", [
    lambda: losses.BinaryCrossentropy(from_logits=True),
    lambda: losses.CategoricalCrossentropy(from_logits=True),
    lambda: losses.SparseCategoricalCrossentropy(from_logits=True),
], ids=["bce", "cce", "scce"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits_are_finite(make, dtype):
    loss = make()
    y_pred = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4]], dtype)
    if isinstance(loss, losses.SparseCategoricalCrossentropy):
        y_true = np.array([1, 2, 0])
        # -log softmax: 2e4 (class 1 of row 0), 0 (row 1), log 2 (row 2)
        expected = (2e4 + 0.0 + math.log(2)) / 3
    elif isinstance(loss, losses.CategoricalCrossentropy):
        y_true = np.eye(3)[[1, 2, 0]]
        expected = (2e4 + 0.0 + math.log(2)) / 3
    else:
        y_true = np.array([[0, 1, 1], [0, 0, 1], [1, 1, 0]], dtype)
        # per element: |x| where the sign disagrees with the label, log 2 at x = 0, else ~0
        expected = ((1e4 + 1e4 + math.log(2)) / 3 + 0.0 + 0.0) / 3
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        value, grad = loss.forward_backward(y_true, y_pred)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    assert np.all(np.abs(grad) <= 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_probabilities_zero_and_one_are_finite(dtype):
    p = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype)
    t = np.array([[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]], dtype)
    for loss, y_true in [(losses.BinaryCrossentropy(), t),
                         (losses.CategoricalCrossentropy(), np.eye(3, dtype=dtype)[[2, 0]]),
                         (losses.SparseCategoricalCrossentropy(), np.array([2, 1]))]:
        value, grad = loss.forward_backward(y_true, p)
        assert np.isfinite(value) and np.all(np.isfinite(grad)), loss
        # a wrong certain prediction costs -log(1e-7) per entry and element, not inf
        assert value > 5


def test_clipped_probabilities_have_the_clipped_gradient():
    """Inside the clip zone the loss is flat: the gradient is 0 there, as finite differences say."""
    for loss in (losses.BinaryCrossentropy(), losses.SparseCategoricalCrossentropy()):
        if isinstance(loss, losses.BinaryCrossentropy):
            y_true, y_pred = np.array([[1.0, 0.0]]), np.array([[1e-9, 0.3]])
        else:
            y_true, y_pred = np.array([0]), np.array([[1e-9, 0.7, 0.3]])
        _, grad = loss.forward_backward(y_true, y_pred)
        fd = central_difference(lambda p: loss(y_true, p), y_pred, eps=1e-11)
        assert grad[0, 0] == 0 and fd[0, 0] == 0
        np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------
# PyTorch parity (values and autograd gradients)

def _torch_grad(fn, y_pred):
    torch = pytest.importorskip("torch")
    x = torch.tensor(y_pred, dtype=torch.float64, requires_grad=True)
    out = fn(x)
    out.backward()
    return out.item(), x.grad.numpy()


@pytest.mark.parametrize("shape", SHAPES, ids=["2d", "3d"])
@pytest.mark.parametrize("name", ["mse", "mae", "huber", "huber_0.5", "bce", "bce_logits"])
def test_torch_elementwise(name, shape):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    kind, cfg, factory = LOSSES[name]
    rng = np.random.default_rng(21)
    y_true, y_pred = make_inputs(kind, cfg, shape, rng)
    t = torch.tensor(y_true)
    # (B,) sample weights: torch's elementwise weight with the same broadcast
    # and a mean over all elements is the same quantity.
    sw = rng.uniform(0.5, 2.0, shape[0])
    w = torch.tensor(sw.reshape((-1,) + (1,) * (len(shape) - 1)))
    fns = {
        "mse": lambda x: (tf.mse_loss(x, t, reduction="none") * w).mean(),
        "mae": lambda x: (tf.l1_loss(x, t, reduction="none") * w).mean(),
        "huber": lambda x: (tf.huber_loss(x, t, reduction="none", delta=1.0) * w).mean(),
        "huber_0.5": lambda x: (torch.nn.HuberLoss(reduction="none", delta=0.5)(x, t) * w).mean(),
        "bce": lambda x: tf.binary_cross_entropy(x, t, weight=w.expand(shape)),
        "bce_logits": lambda x: tf.binary_cross_entropy_with_logits(x, t, weight=w.expand(shape)),
    }
    ref_value, ref_grad = _torch_grad(fns[name], y_pred)
    value, grad = factory().forward_backward(y_true, y_pred, sample_weight=sw)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-15)
    # unweighted, through the module classes
    modules = {"mse": torch.nn.MSELoss(), "mae": torch.nn.L1Loss(), "huber": torch.nn.HuberLoss(delta=1.0),
               "huber_0.5": torch.nn.HuberLoss(delta=0.5), "bce": torch.nn.BCELoss(),
               "bce_logits": torch.nn.BCEWithLogitsLoss()}
    ref_value, ref_grad = _torch_grad(lambda x: modules[name](x, t), y_pred)
    value, grad = factory().forward_backward(y_true, y_pred)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-15)


def test_torch_bce_with_logits_extreme():
    torch = pytest.importorskip("torch")
    y_pred = np.array([[1e4, -1e4, 30.0, -30.0, 0.0]])
    y_true = np.array([[0.0, 1.0, 0.3, 1.0, 0.5]])
    ref_value, ref_grad = _torch_grad(
        lambda x: torch.nn.functional.binary_cross_entropy_with_logits(x, torch.tensor(y_true)), y_pred)
    value, grad = losses.BinaryCrossentropy(from_logits=True).forward_backward(y_true, y_pred)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-18)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.15])
@pytest.mark.parametrize("shape", SHAPES, ids=["2d", "3d"])
def test_torch_cross_entropy_probability_targets(shape, label_smoothing):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(31)
    y_true, y_pred = make_inputs("cce", {"from_logits": True}, shape, rng)
    t = torch.tensor(np.moveaxis(y_true, -1, 1))     # torch wants the class axis second

    def fn(x):
        return torch.nn.functional.cross_entropy(x.movedim(-1, 1), t, label_smoothing=label_smoothing)

    ref_value, ref_grad = _torch_grad(fn, y_pred)
    loss = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
    value, grad = loss.forward_backward(y_true, y_pred)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("ignore_index", [None, 1, -100])
@pytest.mark.parametrize("shape", SHAPES, ids=["2d", "3d"])
def test_torch_cross_entropy_class_indices(shape, ignore_index):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(41)
    y_true, y_pred = make_inputs("scce", {"from_logits": True}, shape, rng)
    if ignore_index is not None:
        y_true = np.where(rng.random(y_true.shape) < 0.3, ignore_index, y_true)
        y_true.flat[0] = 0 if ignore_index != 0 else 2
    t = torch.tensor(y_true)
    kwargs = {} if ignore_index is None else {"ignore_index": ignore_index}

    def fn(x):
        return torch.nn.functional.cross_entropy(x.movedim(-1, 1), t, **kwargs)

    ref_value, ref_grad = _torch_grad(fn, y_pred)
    loss = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore_index)
    value, grad = loss.forward_backward(y_true, y_pred)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-15)


def test_torch_sparse_from_probabilities_is_nll_of_log():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(51)
    y_true = rng.integers(0, 4, (6,))
    y_pred = rng.dirichlet(np.ones(4) * 3, 6)        # rows sum to 1, entries well inside the clip
    ref_value, ref_grad = _torch_grad(lambda x: torch.nn.functional.nll_loss(torch.log(x), torch.tensor(y_true)),
                                      y_pred)
    value, grad = losses.SparseCategoricalCrossentropy().forward_backward(y_true, y_pred)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    # ours also differentiates the normalisation by the row sum: equal on the simplex's tangent
    _, ref_norm_grad = _torch_grad(
        lambda x: torch.nn.functional.nll_loss(torch.log(x / x.sum(-1, keepdim=True)), torch.tensor(y_true)), y_pred)
    np.testing.assert_allclose(grad, ref_norm_grad, rtol=1e-10, atol=1e-15)
    centred = lambda g: g - g.mean(-1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(centred(grad), centred(ref_grad), rtol=1e-10, atol=1e-15)


# ---------------------------------------------------------------------------
# Bad input

def test_bad_inputs_name_the_argument():
    mse = losses.MeanSquaredError()
    y = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"y_true: expected shape \(4, 3\).*got \(4, 2\)"):
        mse(np.zeros((4, 2)), y)
    with pytest.raises(TypeError, match="y_pred: expected dtype float32 or float64, got int64"):
        mse(y, np.zeros((4, 3), np.int64))
    with pytest.raises(ValueError, match="y_pred.*scalar"):
        mse(1.0, np.float64(1.0))
    with pytest.raises(TypeError, match="y_true.*dtype <U1"):
        mse(np.full((4, 3), "a"), y)
    with pytest.raises(ValueError, match=r"sample_weight: expected the per-entry shape \(4,\).*got \(3,\)"):
        mse(y, y, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match=r"mask: expected the per-entry shape \(4,\).*got \(4, 3\)"):
        mse(y, y, mask=np.ones((4, 3), bool))
    with pytest.raises(TypeError, match="mask: expected a bool.*float64"):
        mse(y, y, mask=np.ones(4))
    with pytest.raises(TypeError, match="y_pred: expected an array"):
        mse(y, [[1.0, 2.0], [3.0]])


def test_bad_sparse_labels():
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    y_pred = np.zeros((2, 3, 5))
    with pytest.raises(ValueError, match=r"y_true: class labels must be in \[0, 4\].*5 classes.*got 7"):
        loss(np.array([[0, 1, 7], [0, 0, 0]]), y_pred)
    with pytest.raises(ValueError, match=r"y_true.*got -1"):
        loss(np.array([[0, 1, -1], [0, 0, 0]]), y_pred)
    with pytest.raises(ValueError, match=r"y_true.*ignore_class=-100.*got -1"):
        losses.SparseCategoricalCrossentropy(ignore_class=-100)(np.array([[0, 1, -1], [0, 0, -100]]), y_pred)
    with pytest.raises(ValueError, match=r"y_true: expected class labels of shape \(2, 3\).*got \(3, 2\)"):
        loss(np.zeros((3, 2), int), y_pred)
    with pytest.raises(TypeError, match="y_true: expected integer class labels, got dtype bool"):
        loss(np.zeros((2, 3), bool), y_pred)
    with pytest.raises(ValueError, match="y_pred: expected at least one class"):
        loss(np.zeros(2, int), np.zeros((2, 0)))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="reduction: expected one of.*'sum'.*got 'avg'"):
        losses.MeanSquaredError(reduction="avg")
    with pytest.raises(ValueError, match="delta: expected a positive finite float, got -1"):
        losses.Huber(delta=-1)
    with pytest.raises(TypeError, match="delta"):
        losses.Huber(delta="1")
    with pytest.raises(ValueError, match=r"label_smoothing: expected a float in \[0, 1\], got 1.5"):
        losses.BinaryCrossentropy(label_smoothing=1.5)
    with pytest.raises(TypeError, match="from_logits: expected a bool, got str"):
        losses.CategoricalCrossentropy(from_logits="yes")
    with pytest.raises(TypeError, match="ignore_class: expected an int or None, got float"):
        losses.SparseCategoricalCrossentropy(ignore_class=1.0)
    with pytest.raises(TypeError, match="axis: expected an int"):
        losses.CategoricalCrossentropy(axis=None)
    with pytest.raises(ValueError, match=r"axis: expected an axis of y_pred \(ndim 2\), got 2"):
        losses.CategoricalCrossentropy(axis=2)(np.eye(2), np.eye(2))
    with pytest.raises(TypeError, match="name: expected a str"):
        losses.MeanSquaredError(name=3)


# ---------------------------------------------------------------------------
# Registry and serialization

@pytest.mark.parametrize("identifier, cls", [
    ("mse", losses.MeanSquaredError), ("mean_squared_error", losses.MeanSquaredError),
    ("mae", losses.MeanAbsoluteError), ("mean_absolute_error", losses.MeanAbsoluteError),
    ("huber", losses.Huber), ("binary_crossentropy", losses.BinaryCrossentropy),
    ("categorical_crossentropy", losses.CategoricalCrossentropy),
    ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy),
    ("MeanSquaredError", losses.MeanSquaredError), ("Huber", losses.Huber),
    ("SparseCategoricalCrossentropy", losses.SparseCategoricalCrossentropy),
    (losses.Huber, losses.Huber),
])
def test_get_resolves(identifier, cls):
    assert type(losses.get(identifier)) is cls


def test_get_passes_instances_and_none_and_rejects_unknown():
    loss = losses.Huber(delta=2.0)
    assert losses.get(loss) is loss
    assert losses.get(None) is None
    with pytest.raises(ValueError, match="loss: unknown identifier 'msqe'; known: .*mse.*sparse_categorical"):
        losses.get("msqe")
    with pytest.raises(TypeError, match="loss: expected a Loss"):
        losses.get(3.0)


@pytest.mark.parametrize("loss", [
    losses.MeanSquaredError(reduction="sum"), losses.MeanAbsoluteError(name="l1"), losses.Huber(delta=0.3),
    losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1),
    losses.CategoricalCrossentropy(label_smoothing=0.2, axis=1),
    losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-100, reduction="none"),
], ids=lambda loss: type(loss).__name__)
def test_serialize_round_trip(loss):
    text = json.dumps(losses.serialize(loss))
    back = losses.deserialize(json.loads(text))
    assert type(back) is type(loss)
    assert back.get_config() == loss.get_config()
    assert type(loss).from_config(loss.get_config()).get_config() == loss.get_config()
    assert losses.get(json.loads(text)).get_config() == loss.get_config()


def test_deserialize_rejects_bad_configs():
    with pytest.raises(ValueError, match="config: unknown loss class 'Nope'"):
        losses.deserialize({"class_name": "Nope", "config": {}})
    with pytest.raises(ValueError, match="config: expected a dict with a str 'class_name'"):
        losses.deserialize({"config": {}})
    with pytest.raises(TypeError, match="config: expected a dict"):
        losses.deserialize(3)

    class MyLoss(losses.MeanSquaredError):
        pass
    back = losses.deserialize(losses.serialize(MyLoss()), custom_objects={"MyLoss": MyLoss})
    assert type(back) is MyLoss


def test_call_gives_unweighted_per_entry_losses():
    rng = np.random.default_rng(8)
    y_true, y_pred = make_inputs("bce", {"from_logits": True}, (3, 4, 2), rng)
    values = losses.BinaryCrossentropy(from_logits=True).call(y_true, y_pred)
    np.testing.assert_allclose(values, ref_values("bce", {"from_logits": True}, y_true, y_pred), rtol=1e-12)


def test_call_is_zero_at_ignored_labels():
    y_pred = np.random.default_rng(2).standard_normal((2, 3, 4))
    y_true = np.array([[0, -1, 2], [3, 1, -1]])
    values = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1).call(y_true, y_pred)
    keep = y_true != -1
    np.testing.assert_allclose(values[keep], ref_values("scce", {"from_logits": True}, np.where(keep, y_true, 0),
                                                        y_pred)[keep], rtol=1e-12)
    assert np.all(values[~keep] == 0)
