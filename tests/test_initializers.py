"""Initializers and regularizers: distributions, orthogonality, reproducibility,
dtypes, name resolution and serialization; regularizer values and gradients
against finite differences; and, when keras is installed, the same distribution
parameters and penalties as Keras 3 (never its random draws)."""
import math
import os

import numpy as np
import pytest

from fastrnn import initializers as I
from fastrnn import regularizers as R

from conftest import central_difference, rel_error

RNG_SEED = 1234


def draw(init, shape, dtype=np.float64, seed=RNG_SEED):
    return init(shape, dtype, rng=np.random.default_rng(seed))


# ---------------------------------------------------------------------------
# fans and distribution parameters

@pytest.mark.parametrize("shape, fans", [
    ((), (1, 1)), ((7,), (7, 7)), ((3, 5), (3, 5)), ((3, 4, 5), (12, 15)), ((2, 3, 4, 5), (24, 30)),
])
def test_compute_fans(shape, fans):
    assert I.compute_fans(shape) == fans


@pytest.mark.parametrize("cls, limit", [
    (I.GlorotUniform, lambda fi, fo: math.sqrt(6 / (fi + fo))),
    (I.HeUniform, lambda fi, fo: math.sqrt(6 / fi)),
    (I.LecunUniform, lambda fi, fo: math.sqrt(3 / fi)),
])
def test_uniform_variance_scaling_bounds_and_variance(cls, limit):
    shape = (300, 500)
    lim = limit(*shape)
    assert cls().parameters(shape) == {"limit": pytest.approx(lim)}
    w = draw(cls(), shape)
    assert np.abs(w).max() <= lim
    assert np.abs(w).max() > 0.999 * lim          # the whole range is used
    assert abs(w.mean()) < 0.01 * lim
    assert w.var() == pytest.approx(lim ** 2 / 3, rel=0.02)


@pytest.mark.parametrize("cls, std", [
    (I.GlorotNormal, lambda fi, fo: math.sqrt(2 / (fi + fo))),
    (I.HeNormal, lambda fi, fo: math.sqrt(2 / fi)),
    (I.LecunNormal, lambda fi, fo: math.sqrt(1 / fi)),
])
def test_truncated_normal_variance_scaling(cls, std):
    shape = (300, 500)
    target = std(*shape)
    w = draw(cls(), shape)
    # The values after truncation have the target standard deviation...
    assert w.std() == pytest.approx(target, rel=0.02)
    assert abs(w.mean()) < 0.01 * target
    # ...and none lies beyond 2 stddev of the normal before truncation.
    raw = cls().parameters(shape)["stddev"]
    assert raw == pytest.approx(target / 0.87962566103423978, rel=1e-12)
    assert np.abs(w).max() <= 2 * raw
    assert np.abs(w).max() > 1.95 * raw


def test_variance_scaling_modes_and_untruncated():
    shape = (200, 800)
    for mode, n in (("fan_in", 200), ("fan_out", 800), ("fan_avg", 500)):
        init = I.VarianceScaling(scale=3.0, mode=mode, distribution="untruncated_normal")
        assert init.parameters(shape) == {"stddev": pytest.approx(math.sqrt(3.0 / n))}
        w = draw(init, shape)
        assert w.std() == pytest.approx(math.sqrt(3.0 / n), rel=0.02)
    assert I.VarianceScaling(distribution="normal").distribution == "truncated_normal"
    with pytest.raises(ValueError, match="mode"):
        I.VarianceScaling(mode="fan_max")
    with pytest.raises(ValueError, match="distribution"):
        I.VarianceScaling(distribution="cauchy")
    with pytest.raises(ValueError, match="scale"):
        I.VarianceScaling(scale=0)


def test_plain_distributions():
    w = draw(I.RandomUniform(-0.3, 0.7), (400, 400))
    assert w.min() >= -0.3 and w.max() < 0.7
    assert w.mean() == pytest.approx(0.2, abs=0.005)
    w = draw(I.RandomNormal(mean=1.0, stddev=0.5), (400, 400))
    assert w.mean() == pytest.approx(1.0, abs=0.005)
    assert w.std() == pytest.approx(0.5, rel=0.01)
    w = draw(I.TruncatedNormal(mean=-1.0, stddev=0.5), (400, 400))
    assert w.min() >= -2.0 and w.max() <= 0.0
    assert w.mean() == pytest.approx(-1.0, abs=0.005)
    assert w.std() == pytest.approx(0.5 * 0.87962566103423978, rel=0.01)
    d = I.RandomUniform()
    assert (d.minval, d.maxval) == (-0.05, 0.05)
    assert I.RandomNormal().stddev == I.TruncatedNormal().stddev == 0.05
    with pytest.raises(ValueError, match="minval"):
        I.RandomUniform(1.0, 0.0)
    with pytest.raises(ValueError, match="stddev"):
        I.RandomNormal(stddev=-1.0)


def test_constants():
    assert np.array_equal(I.Zeros()((2, 3)), np.zeros((2, 3), np.float32))
    assert I.Ones()((4,), "float64").dtype == np.float64
    assert np.all(I.Ones()((2, 2)) == 1)
    assert np.all(I.Constant(2.5)((3, 2)) == 2.5)
    row = I.Constant([1.0, 2.0, 3.0])((2, 3), "float64")
    assert np.array_equal(row, [[1, 2, 3], [1, 2, 3]])
    with pytest.raises(ValueError, match="broadcast"):
        I.Constant([1.0, 2.0])((3, 3))
    assert np.array_equal(I.Identity(gain=2.0)((2, 3), "float64"), [[2, 0, 0], [0, 2, 0]])
    with pytest.raises(ValueError, match="2-d"):
        I.Identity()((3,))


# ---------------------------------------------------------------------------
# Orthogonal

@pytest.mark.parametrize("shape", [(64, 64), (50, 20), (20, 50), (3, 4, 5), (16, 64)])
def test_orthogonal(shape):
    gain = 1.5
    w = draw(I.Orthogonal(gain=gain), shape)
    assert w.shape == shape
    m = w.reshape(-1, shape[-1])
    rows, cols = m.shape
    gram = m.T @ m if rows >= cols else m @ m.T
    np.testing.assert_allclose(gram, gain ** 2 * np.eye(min(rows, cols)), atol=1e-12)


def test_orthogonal_sign_fix_makes_distribution_uniform():
    # Without the sign fix, QR (Householder) gives a Q whose diag(R) signs follow
    # a fixed convention; with it, the diagonal of Q is symmetric about zero.
    diag = np.array([np.diag(draw(I.Orthogonal(), (4, 4), seed=s)) for s in range(400)])
    assert abs((diag > 0).mean() - 0.5) < 0.06


def test_orthogonal_needs_two_dimensions():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        I.Orthogonal()((5,))


# ---------------------------------------------------------------------------
# PyTorch's RNN init

def test_torch_uniform():
    H = 16
    w = draw(I.TorchUniform(fan_in=H), (4 * H, 10))
    assert np.abs(w).max() <= 0.25 and np.abs(w).max() > 0.249
    assert I.TorchUniform(bound=0.1).limit == 0.1
    bare = I.get("torch_uniform")
    with pytest.raises(ValueError, match="fan_in"):
        bare((3, 4))
    completed = bare.with_fan_in(H)
    assert completed.limit == 0.25
    explicit = I.TorchUniform(fan_in=4)
    assert explicit.with_fan_in(H) is explicit        # an explicit fan is kept
    with pytest.raises(ValueError, match="not both"):
        I.TorchUniform(bound=0.1, fan_in=4)
    with pytest.raises(ValueError, match="fan_in"):
        I.TorchUniform(fan_in=0)


# ---------------------------------------------------------------------------
# reproducibility and dtypes

RANDOM_INITS = [I.RandomUniform(), I.RandomNormal(), I.TruncatedNormal(), I.GlorotUniform(),
                I.GlorotNormal(), I.HeNormal(), I.HeUniform(), I.LecunNormal(), I.LecunUniform(),
                I.Orthogonal(), I.TorchUniform(fan_in=8), I.VarianceScaling(2.0, "fan_out", "uniform")]


@pytest.mark.parametrize("init", RANDOM_INITS, ids=lambda i: type(i).__name__)
def test_reproducible_with_a_seeded_generator(init):
    a = draw(init, (6, 9), seed=7)
    b = draw(init, (6, 9), seed=7)
    c = draw(init, (6, 9), seed=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # Two calls on one generator continue its stream.
    rng = np.random.default_rng(7)
    first, second = init((6, 9), "float64", rng=rng), init((6, 9), "float64", rng=rng)
    assert np.array_equal(first, a) and not np.array_equal(second, a)
    # An int is a seed.
    assert np.array_equal(init((6, 9), "float64", rng=7), a)


@pytest.mark.parametrize("init", RANDOM_INITS, ids=lambda i: type(i).__name__)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_honoured(init, dtype):
    w = draw(init, (5, 7), dtype)
    assert w.dtype == np.dtype(dtype) and w.shape == (5, 7)
    assert w.flags.writeable and w.flags.c_contiguous
    # float32 weights are the float64 ones rounded: both precisions start alike.
    if dtype == "float32":
        assert np.array_equal(w, draw(init, (5, 7), np.float64).astype(np.float32))


def test_random_initializers_refuse_integer_dtypes():
    with pytest.raises(TypeError, match="dtype"):
        I.GlorotUniform()((3, 3), "int32")


def test_own_seed_gives_the_same_values_every_call():
    init = I.GlorotUniform(seed=3)
    a = init((4, 4), rng=np.random.default_rng(0))
    b = init((4, 4), rng=np.random.default_rng(99))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, I.GlorotUniform(seed=4)((4, 4)))


def test_unseeded_calls_differ():
    assert not np.array_equal(I.RandomNormal()((8,)), I.RandomNormal()((8,)))


def test_bad_rng_and_shape():
    with pytest.raises(TypeError, match="rng"):
        I.RandomNormal()((2, 2), rng=np.random.RandomState(0))
    with pytest.raises(ValueError, match="shape"):
        I.Zeros()((2, -1))


# ---------------------------------------------------------------------------
# names, get, serialization

@pytest.mark.parametrize("name, cls", [
    ("zeros", I.Zeros), ("ones", I.Ones), ("random_uniform", I.RandomUniform),
    ("random_normal", I.RandomNormal), ("truncated_normal", I.TruncatedNormal),
    ("glorot_uniform", I.GlorotUniform), ("glorot_normal", I.GlorotNormal),
    ("he_normal", I.HeNormal), ("he_uniform", I.HeUniform), ("lecun_normal", I.LecunNormal),
    ("orthogonal", I.Orthogonal), ("torch_uniform", I.TorchUniform),
    ("GlorotUniform", I.GlorotUniform), ("Orthogonal", I.Orthogonal),
])
def test_get_by_name(name, cls):
    assert type(I.get(name)) is cls


def test_get_other_identifiers():
    inst = I.HeNormal()
    assert I.get(inst) is inst
    assert I.get(None) is None
    assert type(I.get(I.LecunNormal)) is I.LecunNormal
    orth = I.get({"class_name": "Orthogonal", "config": {"gain": 2.0, "seed": 5}})
    assert isinstance(orth, I.Orthogonal) and orth.gain == 2.0 and orth.seed == 5
    # A Keras 3 config (extra keys, input/output axes) is understood.
    keras_cfg = {"module": "keras.initializers", "class_name": "GlorotUniform",
                 "config": {"seed": None, "input_axes": None, "output_axes": None}, "registered_name": None}
    assert isinstance(I.get(keras_cfg), I.GlorotUniform)


def test_get_plain_callable():
    calls = []

    def fill(shape, dtype):
        calls.append((shape, dtype))
        return np.full(shape, 3.0, dtype)

    init = I.get(fill)
    out = init((2, 2), "float64", rng=np.random.default_rng(0))
    assert np.array_equal(out, np.full((2, 2), 3.0)) and calls == [((2, 2), "float64")]

    def seeded(shape, dtype, rng=None):
        return rng.uniform(size=shape).astype(dtype)

    a = I.get(seeded)((3,), "float64", rng=np.random.default_rng(1))
    assert np.array_equal(a, np.random.default_rng(1).uniform(size=3))
    with pytest.raises(TypeError, match="config"):
        I.serialize(init)


def test_bad_identifiers():
    with pytest.raises(ValueError) as e:
        I.get("glorot_unifrom")
    assert "glorot_uniform" in str(e.value) and "orthogonal" in str(e.value)
    with pytest.raises(ValueError, match="class_name"):
        I.get({"config": {}})
    with pytest.raises(ValueError, match="bad config"):
        I.get({"class_name": "Orthogonal", "config": {"gian": 1.0}})
    with pytest.raises(TypeError):
        I.get(3.0)
    with pytest.raises(TypeError, match="not an Initializer"):
        I.get(dict)


@pytest.mark.parametrize("init", RANDOM_INITS + [I.Zeros(), I.Ones(), I.Constant(0.3), I.Constant([1.0, 2.0]),
                                                 I.Identity(2.0), I.Orthogonal(gain=3.0, seed=2),
                                                 I.TorchUniform(bound=0.2), I.TorchUniform()],
                         ids=lambda i: type(i).__name__)
def test_serialize_round_trip(init):
    cfg = I.serialize(init)
    assert cfg["class_name"] == type(init).__name__
    again = I.deserialize(cfg)
    assert type(again) is type(init) and again.get_config() == init.get_config()
    assert I.get(cfg).get_config() == init.get_config()
    import json
    json.dumps(cfg)                       # configs are plain JSON


def test_custom_objects():
    class Twos(I.Initializer):
        def __call__(self, shape, dtype="float32", rng=None):
            return np.full(shape, 2, dtype)

    init = I.deserialize({"class_name": "Twos", "config": {}}, custom_objects={"Twos": Twos})
    assert np.all(init((2,)) == 2)


def test_layer_add_weight_protocol():
    base = pytest.importorskip("fastrnn.layers.base")
    layer = base.Layer(dtype="float64")
    w = layer.add_weight("kernel", (4, 12), "orthogonal", regularizer="l2", rng=np.random.default_rng(0))
    np.testing.assert_allclose(w @ w.T, np.eye(4), atol=1e-12)
    assert layer.regularization_loss() == pytest.approx(0.01 * 4)
    layer.add_regularization_grads()
    np.testing.assert_allclose(layer.grads["kernel"], 0.02 * w)
    # Same generator seed, same weights.
    other = base.Layer(dtype="float64")
    assert np.array_equal(other.add_weight("kernel", (4, 12), "orthogonal", rng=np.random.default_rng(0)), w)


# ---------------------------------------------------------------------------
# regularizers

def test_regularizer_values():
    w = np.array([[1.0, -2.0], [0.5, 0.0]])
    assert R.L1(0.1)(w) == pytest.approx(0.1 * 3.5)
    assert R.L2(0.1)(w) == pytest.approx(0.1 * 5.25)            # no 1/2
    assert R.L1L2(0.1, 0.2)(w) == pytest.approx(0.1 * 3.5 + 0.2 * 5.25)
    assert R.L1L2()(w) == 0.0
    assert R.L1().l1 == R.L2().l2 == 0.01
    assert isinstance(R.L2(0.1)(w.astype(np.float32)), float)


@pytest.mark.parametrize("reg", [R.L1(0.3), R.L2(0.7), R.L1L2(0.2, 0.5)], ids=repr)
def test_regularizer_gradient_matches_finite_differences(reg):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 5))
    w[np.abs(w) < 0.05] = 0.3            # keep L1 away from its kink at 0
    grad = reg.gradient(w)
    fd = central_difference(reg, w, 1e-6)
    assert grad.shape == w.shape and grad.dtype == w.dtype
    assert rel_error(grad, fd) < 1e-8
    assert reg.gradient(w.astype(np.float32)).dtype == np.float32


def test_l1_gradient_is_zero_at_zero():
    assert np.array_equal(R.L1(0.5).gradient(np.array([0.0, 2.0, -3.0])), [0.0, 0.5, -0.5])


def test_regularizer_get_and_serialize():
    assert R.get(None) is None
    assert isinstance(R.get("l1"), R.L1) and R.get("l1").l1 == 0.01
    assert isinstance(R.get("l2"), R.L2)
    both = R.get("l1_l2")
    assert isinstance(both, R.L1L2) and (both.l1, both.l2) == (0.01, 0.01)
    inst = R.L2(0.5)
    assert R.get(inst) is inst
    assert isinstance(R.get(R.L1), R.L1)
    for reg in (R.L1(0.2), R.L2(0.3), R.L1L2(0.1, 0.4)):
        cfg = R.serialize(reg)
        again = R.get(cfg)
        assert type(again) is type(reg) and again.get_config() == reg.get_config()
    assert R.get({"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.01},
                  "registered_name": None}).l2 == 0.01
    with pytest.raises(ValueError) as e:
        R.get("l3")
    assert "l1_l2" in str(e.value)
    with pytest.raises(ValueError, match="l1"):
        R.L1(-0.1)
    with pytest.raises(TypeError, match="l2"):
        R.L2("big")
    with pytest.raises(TypeError, match="gradient"):
        R.get(lambda w: 0.0)


# ---------------------------------------------------------------------------
# Keras 3 parity (keras is installed locally, not in CI)

@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("keras")


class _Recorder:
    """Stands in for keras's backend random module: records the distribution
    parameters Keras asks for and returns zeros; anything else is the real module's."""

    def __init__(self, real):
        self.real = real
        self.calls = []

    def _record(self, kind):
        def fn(shape, **kw):
            self.calls.append((kind, tuple(shape), kw))
            return np.zeros(shape, kw.get("dtype") or "float32")
        return fn

    def __getattr__(self, kind):
        if kind in ("uniform", "normal", "truncated_normal"):
            return self._record(kind)
        return getattr(self.real, kind)


@pytest.fixture
def keras_params(keras, monkeypatch):
    try:
        from keras.src.initializers import random_initializers as kr
    except ImportError:
        pytest.skip("keras.src.initializers.random_initializers moved")
    if not hasattr(kr, "random"):
        pytest.skip("keras initializers no longer use a module-level `random`")
    rec = _Recorder(kr.random)
    monkeypatch.setattr(kr, "random", rec)

    def params(init, shape):
        rec.calls.clear()
        init(shape, dtype="float32")
        assert len(rec.calls) == 1, rec.calls
        return rec.calls[0]
    return params


SHAPES = [(7,), (12, 5), (64, 256), (3, 4, 8), (2, 3, 5, 6)]


@pytest.mark.parametrize("name", ["GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform", "LecunNormal",
                                  "LecunUniform"])
@pytest.mark.parametrize("shape", SHAPES)
def test_variance_scaling_parameters_match_keras(keras, keras_params, name, shape):
    kind, _, kw = keras_params(getattr(keras.initializers, name)(), shape)
    ours = getattr(I, name)()
    assert kind == ours.distribution
    p = ours.parameters(shape)
    if kind == "uniform":
        assert kw["minval"] == pytest.approx(-p["limit"], rel=1e-12)
        assert kw["maxval"] == pytest.approx(p["limit"], rel=1e-12)
    else:
        assert kw["stddev"] == pytest.approx(p["stddev"], rel=1e-12)
        assert kw.get("mean", 0.0) == 0.0


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_match_keras(keras, shape):
    from keras.src.initializers.random_initializers import compute_fans
    assert I.compute_fans(shape) == compute_fans(shape)


def test_plain_distribution_defaults_match_keras(keras, keras_params):
    for name in ("RandomUniform", "RandomNormal", "TruncatedNormal"):
        kind, _, kw = keras_params(getattr(keras.initializers, name)(), (3, 4))
        cfg = getattr(I, name)().get_config()
        for key in ("minval", "maxval", "mean", "stddev"):
            if key in cfg:
                assert kw[key] == cfg[key], (name, key)


def test_orthogonal_side_matches_keras(keras):
    for shape in [(20, 50), (50, 20), (3, 4, 5)]:
        theirs = np.asarray(keras.initializers.Orthogonal(seed=1)(shape), np.float64).reshape(-1, shape[-1])
        ours = draw(I.Orthogonal(), shape).reshape(-1, shape[-1])
        rows, cols = ours.shape
        for m in (theirs, ours):
            gram = m.T @ m if rows >= cols else m @ m.T
            np.testing.assert_allclose(gram, np.eye(min(rows, cols)), atol=1e-5)


def test_deterministic_initializers_match_keras(keras):
    for ours, theirs in [(I.Identity(2.0), keras.initializers.Identity(2.0)),
                         (I.Constant(0.25), keras.initializers.Constant(0.25)),
                         (I.Ones(), keras.initializers.Ones())]:
        np.testing.assert_array_equal(ours((3, 5)), np.asarray(theirs((3, 5), dtype="float32")))


def test_regularizers_match_keras(keras):
    w = np.random.default_rng(0).standard_normal((6, 7)).astype(np.float32)
    for ours, theirs in [(R.L1(0.03), keras.regularizers.L1(0.03)), (R.L2(0.07), keras.regularizers.L2(0.07)),
                         (R.L1L2(0.02, 0.05), keras.regularizers.L1L2(0.02, 0.05))]:
        assert ours(w) == pytest.approx(float(np.asarray(theirs(w))), rel=1e-5)
