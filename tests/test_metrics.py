"""fastrnn.metrics: values against plain loops, accumulation over batches,
masks and weights, "accuracy" resolution, Perplexity against the loss,
input checking and serialization."""
import json
import math

import numpy as np
import pytest

from fastrnn import losses, metrics


# ---------------------------------------------------------------------------
# Reference: per-entry values with loops, then sum(v * w) / sum(w) over counted entries

def ref_entry_values(kind, y_true, y_pred, threshold=0.5):
    y_pred = np.asarray(y_pred, np.float64)
    entry_shape = y_pred.shape[:-1]
    out = np.zeros(entry_shape)
    for idx in np.ndindex(entry_shape):
        p = list(y_pred[idx])
        if kind == "accuracy":
            t = list(np.asarray(y_true, np.float64)[idx])
            out[idx] = sum(a == b for a, b in zip(t, p)) / len(p)
        elif kind == "binary":
            t = list(np.asarray(y_true, np.float64)[idx])
            out[idx] = sum((1.0 if b > threshold else 0.0) == a for a, b in zip(t, p)) / len(p)
        elif kind == "categorical":
            t = list(np.asarray(y_true)[idx])
            out[idx] = float(t.index(max(t)) == p.index(max(p)))
        elif kind == "sparse":
            out[idx] = float(int(np.asarray(y_true)[idx]) == p.index(max(p)))
        elif kind == "mae":
            t = list(np.asarray(y_true, np.float64)[idx])
            out[idx] = sum(abs(a - b) for a, b in zip(t, p)) / len(p)
        elif kind == "mse":
            t = list(np.asarray(y_true, np.float64)[idx])
            out[idx] = sum((a - b) ** 2 for a, b in zip(t, p)) / len(p)
        elif kind == "nll_logits":
            lse = math.log(sum(math.exp(x) for x in p))
            out[idx] = lse - p[int(np.asarray(y_true)[idx])]
        else:
            raise AssertionError(kind)
    return out


def expand(w, entry_shape):
    w = np.asarray(w)
    return np.broadcast_to(w.reshape(w.shape + (1,) * (len(entry_shape) - w.ndim)), entry_shape)


def ref_weighted_mean(values, sample_weight=None, mask=None):
    w = np.ones(values.shape) if sample_weight is None else expand(sample_weight, values.shape)
    m = np.ones(values.shape, bool) if mask is None else expand(mask, values.shape)
    total = count = 0.0
    for idx in np.ndindex(values.shape):
        if m[idx]:
            total += values[idx] * w[idx]
            count += w[idx]
    return total / count if count else 0.0


# ---------------------------------------------------------------------------
# Problems

def make_problem(kind, shape, rng):
    """(metric factory, y_true, y_pred, reference kind, reference kwargs)."""
    if kind == "accuracy":
        y_true = rng.integers(0, 3, shape)
        y_pred = np.where(rng.random(shape) < 0.6, y_true, rng.integers(0, 3, shape)).astype(np.float64)
        return metrics.Accuracy, y_true, y_pred, {}
    if kind == "binary":
        return metrics.BinaryAccuracy, rng.integers(0, 2, shape).astype(float), rng.random(shape), {}
    if kind == "binary_logits":
        return (lambda: metrics.BinaryAccuracy(threshold=0.0)), rng.integers(0, 2, shape), \
            rng.standard_normal(shape), {"threshold": 0.0}
    if kind == "categorical":
        y_true = np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])]
        return metrics.CategoricalAccuracy, y_true, rng.standard_normal(shape), {}
    if kind == "sparse":
        return metrics.SparseCategoricalAccuracy, rng.integers(0, shape[-1], shape[:-1]), \
            rng.standard_normal(shape), {}
    if kind in ("mae", "mse"):
        cls = metrics.MeanAbsoluteError if kind == "mae" else metrics.MeanSquaredError
        return cls, rng.standard_normal(shape), rng.standard_normal(shape), {}
    if kind == "perplexity":
        return metrics.Perplexity, rng.integers(0, shape[-1], shape[:-1]), rng.standard_normal(shape), {}
    raise AssertionError(kind)


REF_KIND = {"binary_logits": "binary", "perplexity": "nll_logits"}
KINDS = ["accuracy", "binary", "binary_logits", "categorical", "sparse", "mae", "mse", "perplexity"]


def expected_result(kind, y_true, y_pred, sw, mask, ref_kwargs):
    values = ref_entry_values(REF_KIND.get(kind, kind), y_true, y_pred, **ref_kwargs)
    mean = ref_weighted_mean(values, sw, mask)
    return math.exp(mean) if kind == "perplexity" else mean


@pytest.mark.parametrize("weighting", ["none", "sw", "mask", "sw_mask"])
@pytest.mark.parametrize("shape", [(7, 4), (6, 5, 3)], ids=["2d", "3d"])
@pytest.mark.parametrize("kind", KINDS)
def test_value_and_batches_equal_concatenated(kind, shape, weighting):
    rng = np.random.default_rng([KINDS.index(kind), len(shape), len(weighting)])
    factory, y_true, y_pred, ref_kwargs = make_problem(kind, shape, rng)
    entry_shape = shape[:-1]
    sw = rng.uniform(0.2, 2.0, entry_shape[:1]) if "sw" in weighting else None
    mask = None
    if "mask" in weighting:
        mask = rng.random(entry_shape) < 0.6
        mask.flat[0] = True
    expected = expected_result(kind, y_true, y_pred, sw, mask, ref_kwargs)

    whole = factory()
    whole.update_state(y_true, y_pred, sample_weight=sw, mask=mask)
    np.testing.assert_allclose(whole.result(), expected, rtol=1e-12)

    pieces = factory()
    for lo, hi in [(0, 1), (1, 4), (4, shape[0])]:
        pieces.update_state(y_true[lo:hi], y_pred[lo:hi],
                            sample_weight=None if sw is None else sw[lo:hi],
                            mask=None if mask is None else mask[lo:hi])
    np.testing.assert_allclose(pieces.result(), whole.result(), rtol=1e-12)
    assert isinstance(pieces.result(), float)


@pytest.mark.parametrize("kind", KINDS)
def test_masked_entries_do_not_count(kind):
    """Garbage at masked entries changes nothing: the result is that of the unmasked rows."""
    rng = np.random.default_rng(3)
    factory, y_true, y_pred, _ = make_problem(kind, (5, 6, 3), rng)
    mask = rng.random((5, 6)) < 0.5
    mask[0, 0] = True
    subset = factory()
    subset.update_state(y_true[mask], y_pred[mask])
    masked = factory()
    y_pred = y_pred.copy()
    y_pred[~mask] = np.nan
    masked.update_state(y_true, y_pred, mask=mask)
    np.testing.assert_allclose(masked.result(), subset.result(), rtol=1e-13)


def test_reset_call_and_empty():
    m = metrics.SparseCategoricalAccuracy()
    assert m.result() == 0.0
    y_pred = np.array([[0.1, 0.9], [0.8, 0.2]])
    assert m(np.array([1, 1]), y_pred) == 0.5            # __call__ updates and returns the running result
    assert m(np.array([1, 0]), y_pred) == 0.75
    m.reset_state()
    assert m.result() == 0.0
    m.update_state(np.array([1, 0]), y_pred, mask=np.array([False, False]))
    assert m.result() == 0.0
    assert metrics.Perplexity().result() == 0.0


def test_mean_is_a_weighted_running_mean():
    m = metrics.Mean()
    assert m.name == "mean"
    m.update_state(2.0, sample_weight=3)        # how a model records a batch loss: weight = batch size
    m.update_state(np.array([4.0, 6.0]))
    m.update_state(np.array([[1.0, 100.0]]), sample_weight=np.array([2.0]), mask=np.array([[True, False]]))
    np.testing.assert_allclose(m.result(), (2 * 3 + 4 + 6 + 1 * 2) / (3 + 2 + 2), rtol=1e-15)


def test_sample_weights_divide_by_their_sum():
    """Unlike a loss, a metric's mean is sum(v w) / sum(w) (Keras's metrics)."""
    m = metrics.MeanAbsoluteError()
    m.update_state(np.array([[0.0], [0.0]]), np.array([[1.0], [3.0]]), sample_weight=np.array([3.0, 1.0]))
    np.testing.assert_allclose(m.result(), (1 * 3 + 3 * 1) / 4, rtol=1e-15)


def test_binary_accuracy_with_label_shapes():
    y_pred = np.array([[0.7], [0.2], [0.6], [0.4]])
    labels = np.array([1, 0, 0, 0])
    for y_true in (labels, labels[:, None]):
        m = metrics.BinaryAccuracy()
        m.update_state(y_true, y_pred)
        assert m.result() == 0.75
    m = metrics.BinaryAccuracy(threshold=0.65)
    m.update_state(labels, y_pred)
    assert m.result() == 1.0


# ---------------------------------------------------------------------------
# Perplexity against the loss

@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("ignore_class", [None, 0, -100])
def test_perplexity_is_exp_of_the_loss(from_logits, ignore_class):
    rng = np.random.default_rng(17)
    B, T, V = 5, 7, 6
    y_true = rng.integers(0, V, (B, T))
    if ignore_class is not None:
        y_true = np.where(rng.random((B, T)) < 0.2, ignore_class, y_true)
        y_true[0, 0] = 1
    y_pred = rng.standard_normal((B, T, V)) * 2
    if not from_logits:
        y_pred = np.exp(y_pred) / np.exp(y_pred).sum(-1, keepdims=True)
    mask = rng.random((B, T)) < 0.8
    mask[0, 0] = True
    loss = losses.SparseCategoricalCrossentropy(from_logits=from_logits, ignore_class=ignore_class)
    expected = math.exp(loss(y_true, y_pred, mask=mask))

    ppl = metrics.Perplexity(from_logits=from_logits, ignore_class=ignore_class)
    for lo, hi in [(0, 2), (2, 3), (3, B)]:
        ppl.update_state(y_true[lo:hi], y_pred[lo:hi], mask=mask[lo:hi])
    np.testing.assert_allclose(ppl.result(), expected, rtol=1e-12)


def test_perplexity_of_uniform_predictions_is_the_vocabulary_size():
    ppl = metrics.Perplexity()
    ppl.update_state(np.array([[3, 1, 0]]), np.zeros((1, 3, 11)))
    np.testing.assert_allclose(ppl.result(), 11, rtol=1e-13)


# ---------------------------------------------------------------------------
# "accuracy" resolution and the registry

@pytest.mark.parametrize("loss, cls, extra", [
    (losses.BinaryCrossentropy(), metrics.BinaryAccuracy, {"threshold": 0.5}),
    (losses.BinaryCrossentropy(from_logits=True), metrics.BinaryAccuracy, {"threshold": 0.0}),
    ("binary_crossentropy", metrics.BinaryAccuracy, {"threshold": 0.5}),
    (losses.SparseCategoricalCrossentropy(from_logits=True), metrics.SparseCategoricalAccuracy,
     {"ignore_class": None}),
    (losses.SparseCategoricalCrossentropy(ignore_class=0), metrics.SparseCategoricalAccuracy, {"ignore_class": 0}),
    ("sparse_categorical_crossentropy", metrics.SparseCategoricalAccuracy, {}),
    (losses.CategoricalCrossentropy(from_logits=True), metrics.CategoricalAccuracy, {}),
    (losses.CategoricalCrossentropy, metrics.CategoricalAccuracy, {}),
    (losses.MeanSquaredError(), metrics.Accuracy, {}),
    ("mae", metrics.Accuracy, {}),
    (None, metrics.Accuracy, {}),
])
@pytest.mark.parametrize("name", ["accuracy", "acc"])
def test_accuracy_resolves_from_the_loss(name, loss, cls, extra):
    m = metrics.get(name, loss=loss)
    assert type(m) is cls
    assert m.name == name
    config = m.get_config()
    for key, value in extra.items():
        assert config[key] == value


def test_accuracy_from_output_shape_without_a_loss():
    assert type(metrics.get("accuracy", output_shape=(None, 1))) is metrics.BinaryAccuracy
    assert type(metrics.get("accuracy", output_shape=(None, 10, 5))) is metrics.CategoricalAccuracy
    assert type(metrics.get("accuracy", output_shape=(None, None))) is metrics.Accuracy
    # a loss decides over the shape
    assert type(metrics.get("accuracy", loss="mse", output_shape=(None, 1))) is metrics.Accuracy


def test_resolved_sparse_accuracy_honours_ignore_class():
    m = metrics.get("accuracy", loss=losses.SparseCategoricalCrossentropy(ignore_class=-1))
    m.update_state(np.array([1, 0, -1]), np.array([[0.2, 0.8], [0.1, 0.9], [0.9, 0.1]]))
    assert m.result() == 0.5


@pytest.mark.parametrize("identifier, cls", [
    ("binary_accuracy", metrics.BinaryAccuracy), ("categorical_accuracy", metrics.CategoricalAccuracy),
    ("sparse_categorical_accuracy", metrics.SparseCategoricalAccuracy),
    ("mae", metrics.MeanAbsoluteError), ("mean_absolute_error", metrics.MeanAbsoluteError),
    ("mse", metrics.MeanSquaredError), ("mean_squared_error", metrics.MeanSquaredError),
    ("perplexity", metrics.Perplexity), ("mean", metrics.Mean),
])
def test_names_resolve_and_name_the_metric(identifier, cls):
    m = metrics.get(identifier)
    assert type(m) is cls and m.name == identifier


def test_get_class_names_instances_and_errors():
    assert metrics.get("BinaryAccuracy").name == "binary_accuracy"
    assert metrics.get(metrics.Perplexity).name == "perplexity"
    m = metrics.Accuracy(name="exact")
    assert metrics.get(m) is m and metrics.get(None) is None
    with pytest.raises(ValueError, match="metric: unknown identifier 'acuracy'; known: .*accuracy.*perplexity"):
        metrics.get("acuracy")
    with pytest.raises(TypeError, match="metric: expected a Metric"):
        metrics.get(1)


def test_perplexity_resolution_follows_a_sparse_loss():
    m = metrics.get("perplexity", loss=losses.SparseCategoricalCrossentropy(from_logits=False, ignore_class=0))
    assert m.from_logits is False and m.ignore_class == 0
    assert metrics.get("perplexity").from_logits is True


@pytest.mark.parametrize("metric", [
    metrics.Mean(name="loss"), metrics.Accuracy(), metrics.BinaryAccuracy(threshold=0.0, name="accuracy"),
    metrics.CategoricalAccuracy(), metrics.SparseCategoricalAccuracy(ignore_class=-100),
    metrics.MeanAbsoluteError(name="mae"), metrics.MeanSquaredError(),
    metrics.Perplexity(from_logits=False, ignore_class=3),
], ids=lambda m: type(m).__name__)
def test_serialize_round_trip(metric):
    back = metrics.deserialize(json.loads(json.dumps(metrics.serialize(metric))))
    assert type(back) is type(metric) and back.get_config() == metric.get_config()
    assert metrics.get(metrics.serialize(metric)).get_config() == metric.get_config()


def test_deserialize_rejects_bad_configs():
    with pytest.raises(ValueError, match="config: unknown metric class 'Nope'"):
        metrics.deserialize({"class_name": "Nope", "config": {}})
    with pytest.raises(TypeError, match="config: expected a dict"):
        metrics.deserialize([1])


# ---------------------------------------------------------------------------
# Bad input

def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match=r"y_true: expected shape \(4, 3\).*got \(4, 2\)"):
        metrics.CategoricalAccuracy().update_state(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"y_true: expected shape \(4, 3\).*got \(3, 4\)"):
        metrics.BinaryAccuracy().update_state(np.zeros((3, 4)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"sample_weight: expected the per-entry shape \(2, 5\).*got \(5,\)"):
        metrics.SparseCategoricalAccuracy().update_state(np.zeros((2, 5), int), np.zeros((2, 5, 3)),
                                                         sample_weight=np.ones(5))
    with pytest.raises(TypeError, match="mask: expected a bool"):
        metrics.MeanSquaredError().update_state(np.zeros((2, 3)), np.zeros((2, 3)), mask=np.ones(2))
    with pytest.raises(ValueError, match=r"y_true: class labels must be in \[0, 2\].*got 3"):
        metrics.Perplexity().update_state(np.array([0, 3]), np.zeros((2, 3)))
    with pytest.raises(TypeError, match="threshold: expected a float"):
        metrics.BinaryAccuracy(threshold="0.5")
    with pytest.raises(TypeError, match="from_logits: expected a bool"):
        metrics.Perplexity(from_logits=None)
    with pytest.raises(TypeError, match="values: expected a real-valued array"):
        metrics.Mean().update_state("x")
    m = metrics.Accuracy()
    with pytest.raises(ValueError):
        m.update_state(np.zeros((2, 2)), np.zeros((3, 2)))
    assert m.result() == 0.0 and m.count == 0        # a failed update leaves the state untouched
