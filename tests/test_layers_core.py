"""Core layers, merge layers and activations: finite differences in float64,
PyTorch and Keras parity (each skipped when absent), validation, configs."""
import math

import numpy as np
import pytest

from fastrnn import activations, initializers, layers
from fastrnn.layers import base

# ---------------------------------------------------------------------------
# finite differences


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def gradcheck(layer, inputs, *, mask=None, training=False, reseed=None, eps=1e-6, rtol=1e-6,
              atol=1e-8, skip=None, seed=0):
    """Check layer.backward against central differences of sum(out * W).

    `inputs`: one array or a list (float arrays are checked, integer ones are not).
    `reseed()` runs before every forward (fixed dropout masks). `skip`: per input,
    a bool array of the elements not to difference (where the function jumps).
    Returns the analytic input gradients.
    """
    is_list = isinstance(inputs, (list, tuple))
    xs = [np.array(x) for x in _as_list(inputs)]

    def run(xs_):
        if reseed is not None:
            reseed()
        return layer.forward(xs_ if is_list else xs_[0], training=training, mask=mask)

    out, ctx = run(xs)
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal(np.shape(o)) for o in _as_list(out)]

    def loss(xs_):
        o, _ = run(xs_)
        return sum(float(np.sum(a * w)) for a, w in zip(_as_list(o), ws))

    layer.zero_grads()
    d = layer.backward(ctx, ws if isinstance(out, (list, tuple)) else ws[0])
    ds = _as_list(d) if is_list else [d]
    assert len(ds) == len(xs)

    def numeric(arr, perturb_loss, skip_mask=None):
        g = np.zeros(arr.shape)
        it = np.nditer(arr, flags=["multi_index"])
        for _ in it:
            idx = it.multi_index
            if skip_mask is not None and skip_mask[idx]:
                continue
            old = arr[idx]
            arr[idx] = old + eps
            lp = perturb_loss()
            arr[idx] = old - eps
            lm = perturb_loss()
            arr[idx] = old
            g[idx] = (lp - lm) / (2 * eps)
        return g

    for i, (x, dx) in enumerate(zip(xs, ds)):
        if x.dtype.kind != "f":
            assert dx is None, f"input {i}: integer input should get a None gradient"
            continue
        sk = None if skip is None else skip[i]
        num = numeric(x, lambda: loss(xs), sk)
        assert dx is not None and dx.shape == x.shape, f"input {i}: gradient shape"
        ana = np.array(dx, dtype=np.float64)
        if sk is not None:
            ana = np.where(sk, 0.0, ana)
        np.testing.assert_allclose(ana, num, rtol=rtol, atol=atol, err_msg=f"d inputs[{i}]")

    grads = {n: g.copy() for n, g in layer.grads.items()}
    for name in layer.weight_names():
        if name not in grads:
            continue
        p = layer.params[name]

        def wl():
            layer.weights_changed()
            return loss(xs)
        num = numeric(p, wl)
        np.testing.assert_allclose(grads[name], num, rtol=rtol, atol=atol, err_msg=f"d {name}")
    return ds


def _smooth_input(rng, shape, kinks=(0.0,), gap=0.05):
    """Random float64 values at least `gap` away from each kink."""
    x = rng.standard_normal(shape) * 2
    for k in kinks:
        close = np.abs(x - k) < gap
        x[close] = k + np.sign(x[close] - k + 1e-12) * gap * 2
    return x


# ---------------------------------------------------------------------------
# activations

ALL_ACTS = ["linear", "relu", "sigmoid", "tanh", "softmax", "log_softmax", "elu", "selu", "gelu",
            "softplus", "softsign", "swish", "silu", "hard_sigmoid", "hard_swish", "leaky_relu",
            "exponential"]
KINKS = {"relu": (0.0,), "leaky_relu": (0.0,), "elu": (0.0,), "selu": (0.0,),
         "hard_sigmoid": (-3.0, 3.0), "hard_swish": (-3.0, 3.0)}


def _act_cases():
    for name in ALL_ACTS:
        yield name, activations.get(name)
    yield "gelu_tanh", activations.GELU(approximate=True)
    yield "softmax_axis1", activations.Softmax(axis=1)
    yield "log_softmax_axis1", activations.LogSoftmax(axis=1)
    yield "relu_params", activations.ReLU(negative_slope=0.1, max_value=1.5, threshold=0.5)


@pytest.mark.parametrize("name,act", list(_act_cases()), ids=[c[0] for c in _act_cases()])
def test_activation_backward_finite_differences(name, act):
    rng = np.random.default_rng(1)
    kinks = KINKS.get(name.split("_")[0] if name.startswith("relu") else name, ())
    if name == "relu_params":
        kinks = (0.5, 1.5)
    x = _smooth_input(rng, (3, 4, 5), kinks)
    w = rng.standard_normal(x.shape)
    y = act(x)
    assert y.shape == x.shape and y.dtype == np.float64
    dx = act.backward(w, x=x if "x" in act.needs else None, y=y if "y" in act.needs else None)
    eps = 1e-6
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp = x.copy(); xp[idx] += eps
        xm = x.copy(); xm[idx] -= eps
        num[idx] = (np.sum(act(xp) * w) - np.sum(act(xm) * w)) / (2 * eps)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ALL_ACTS)
def test_activation_keeps_float32(name):
    x = np.linspace(-4, 4, 24, dtype=np.float32).reshape(4, 6)
    act = activations.get(name)
    y = act(x)
    assert y.dtype == np.float32
    dx = act.backward(np.ones_like(x), x=x, y=y)
    assert dx.dtype == np.float32


def test_activations_stable_at_extremes():
    x = np.array([[-1e4, 0.0, 1e4], [1000.0, 1000.0, 999.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = activations.softmax(x)
        ls = activations.log_softmax(x)
        sg = activations.sigmoid(x)
        sp = activations.softplus(x)
    assert np.all(np.isfinite(s)) and np.allclose(s.sum(-1), 1)
    np.testing.assert_allclose(ls[0], [-2e4, -1e4, 0.0])
    np.testing.assert_allclose(sg[0], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(sp[0], [0.0, math.log(2), 1e4])


def test_erf_matches_math():
    x = np.concatenate([np.linspace(-7, 7, 2801), [1e-300, -1e-8, 30.0, -30.0, 1e10]])
    ref = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(activations.erf(x), ref, rtol=2e-15, atol=1e-300)
    # gelu's lower tail is computed through erfc without cancellation
    t = np.array([-8.0, -10.0])
    ref_tail = t * 0.5 * np.array([math.erfc(-v / math.sqrt(2)) for v in t])
    np.testing.assert_allclose(activations.gelu(t), ref_tail, rtol=1e-13)


def test_hard_sigmoid_is_keras3_formula():
    x = np.array([-4.0, -3.0, -1.5, 0.0, 1.5, 3.0, 4.0])
    np.testing.assert_allclose(activations.hard_sigmoid(x), np.clip(x / 6 + 0.5, 0, 1))
    np.testing.assert_allclose(activations.leaky_relu(np.array([-1.0, 2.0])), [-0.2, 2.0])


def test_activation_registry_and_serialize():
    assert activations.get(None) is activations.linear
    assert activations.get("silu") is activations.swish
    assert activations.get("ReLU") is activations.relu
    assert activations.serialize(activations.tanh) == "tanh"
    g = activations.GELU(approximate=True)
    cfg = activations.serialize(g)
    assert cfg == {"class_name": "gelu", "config": {"approximate": True}}
    assert activations.deserialize(cfg) == g
    assert activations.get("relu6")(np.array([7.0]))[0] == 6.0
    with pytest.raises(ValueError, match="activation.*'nope'"):
        activations.get("nope")
    with pytest.raises(TypeError, match="activation"):
        activations.get(3)
    np.testing.assert_allclose(activations.softmax(np.eye(2), axis=0), activations.Softmax(0)(np.eye(2)))
    # a plain callable works forward, and says what it needs for backward
    act = activations.get(np.square)
    np.testing.assert_allclose(act(np.array([2.0])), [4.0])
    with pytest.raises(NotImplementedError, match="backward"):
        act.backward(np.ones(1), x=np.ones(1), y=np.ones(1))


TORCH_ACTS = {
    "relu": lambda F, x: F.relu(x), "sigmoid": lambda F, x: F.sigmoid(x),
    "tanh": lambda F, x: F.tanh(x), "softmax": lambda F, x: F.softmax(x, dim=-1),
    "log_softmax": lambda F, x: F.log_softmax(x, dim=-1), "elu": lambda F, x: F.elu(x),
    "selu": lambda F, x: F.selu(x), "gelu": lambda F, x: F.gelu(x),
    "softplus": lambda F, x: F.softplus(x), "softsign": lambda F, x: F.softsign(x),
    "swish": lambda F, x: F.silu(x), "hard_sigmoid": lambda F, x: F.hardsigmoid(x),
    "hard_swish": lambda F, x: F.hardswish(x),
    "leaky_relu": lambda F, x: F.leaky_relu(x, 0.2), "exponential": lambda F, x: x.exp(),
    "linear": lambda F, x: x * 1,
}


@pytest.mark.parametrize("name", sorted(TORCH_ACTS) + ["gelu_tanh"])
def test_activation_vs_torch(name):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(2)
    x = _smooth_input(rng, (4, 7), KINKS.get(name, ()), gap=1e-3) * 2
    w = rng.standard_normal(x.shape)
    if name == "gelu_tanh":
        act, fn = activations.GELU(approximate=True), (lambda F, t: F.gelu(t, approximate="tanh"))
    else:
        act, fn = activations.get(name), TORCH_ACTS[name]
    xt = torch.tensor(x, requires_grad=True)
    yt = fn(F, xt)
    (yt * torch.tensor(w)).sum().backward()
    y = act(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    # torch's hardsigmoid backward scales by a float32 1/6 even in float64
    rtol = 1e-7 if name == "hard_sigmoid" else 1e-10
    np.testing.assert_allclose(act.backward(w, x=x, y=y), xt.grad.numpy(), rtol=rtol, atol=1e-13)


# ---------------------------------------------------------------------------
# Dense


@pytest.mark.parametrize("activation", [None, "tanh", "relu", "softmax", "gelu"])
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4)])
def test_dense_finite_differences(activation, shape):
    rng = np.random.default_rng(3)
    layer = layers.Dense(5, activation=activation, dtype="float64", bias_initializer="random_normal")
    layer.maybe_build((None,) + shape[1:])
    x = _smooth_input(rng, shape, (), gap=0)
    mask = np.ones(shape[:-1], bool) if len(shape) == 3 else None
    if activation == "relu":
        # keep pre-activations away from the kink
        z = x.reshape(-1, 4) @ layer.params["kernel"] + layer.params["bias"]
        layer.params["bias"] += np.where(np.abs(z).min() < 1e-3, 0.01, 0.0)
    gradcheck(layer, x, mask=mask)
    assert layer.compute_mask(x, mask) is mask


def test_dense_no_bias_and_not_trainable():
    layer = layers.Dense(2, use_bias=False, dtype="float64")
    layer.maybe_build((None, 3))
    assert layer.weight_names() == ["kernel"]
    gradcheck(layer, np.random.default_rng(0).standard_normal((4, 3)))
    frozen = layers.Dense(2, trainable=False, dtype="float64")
    frozen.maybe_build((None, 3))
    y, ctx = frozen.forward(np.ones((2, 3)))
    dx = frozen.backward(ctx, np.ones((2, 2)))
    assert dx.shape == (2, 3) and not frozen.trainable_weights
    assert all(not g.any() for g in frozen.grads.values())


def test_dense_dtypes_and_casts():
    layer = layers.Dense(2)
    layer.maybe_build((None, 3))
    assert layer.params["kernel"].dtype == np.float32
    y, _ = layer.forward(np.ones((2, 3), dtype=np.int64))
    assert y.dtype == np.float32
    l64 = layers.Dense(2, dtype="float64")
    l64.maybe_build((None, 3))
    assert l64.forward(np.ones((2, 3), np.float32))[0].dtype == np.float64
    assert layer.compute_output_shape((None, 7, 3)) == (None, 7, 2)


def test_dense_torch_uniform_and_init_rng():
    a = layers.Dense(4, kernel_initializer="torch_uniform", bias_initializer="torch_uniform")
    a.init_rng = np.random.default_rng(7)
    a.maybe_build((None, 16))
    assert np.abs(a.params["kernel"]).max() <= 0.25 and np.abs(a.params["bias"]).max() <= 0.25
    assert np.abs(a.params["bias"]).max() > 0
    b = layers.Dense(4, kernel_initializer="torch_uniform", bias_initializer="torch_uniform")
    b.init_rng = np.random.default_rng(7)
    b.maybe_build((None, 16))
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_dense_regularizers():
    layer = layers.Dense(3, kernel_regularizer="l2", bias_regularizer=None, dtype="float64")
    layer.maybe_build((None, 2))
    k = layer.params["kernel"]
    assert layer.regularization_loss() == pytest.approx(0.01 * np.sum(k * k))
    layer.zero_grads()
    layer.add_regularization_grads()
    np.testing.assert_allclose(layer.grads["kernel"], 0.02 * k)
    assert layers.serialize(layer)["config"]["kernel_regularizer"] == "l2"


def test_dense_vs_torch_linear():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    layer = layers.Dense(6, dtype="float64")
    layer.maybe_build((None, 5, 4))
    x = rng.standard_normal((3, 5, 4))
    lin = torch.nn.Linear(4, 6).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(layer.params["kernel"].T))
        lin.bias.copy_(torch.tensor(rng.standard_normal(6)))
    layer.params["bias"][...] = lin.bias.detach().numpy()
    xt = torch.tensor(x, requires_grad=True)
    yt = lin(xt)
    w = rng.standard_normal(yt.shape)
    (yt * torch.tensor(w)).sum().backward()
    y, ctx = layer.forward(x)
    layer.zero_grads()
    dx = layer.backward(ctx, w)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.grads["kernel"], lin.weight.grad.numpy().T, rtol=1e-12)
    np.testing.assert_allclose(layer.grads["bias"], lin.bias.grad.numpy(), rtol=1e-12)


def test_dense_grads_accumulate():
    layer = layers.Dense(2, dtype="float64")
    layer.maybe_build((None, 3))
    x = np.ones((4, 3))
    _, ctx = layer.forward(x)
    layer.zero_grads()
    layer.backward(ctx, np.ones((4, 2)))
    once = layer.grads["kernel"].copy()
    layer.backward(ctx, np.ones((4, 2)))
    np.testing.assert_allclose(layer.grads["kernel"], 2 * once)


# ---------------------------------------------------------------------------
# Embedding


@pytest.mark.parametrize("n_ids", [(3, 4), (10, 20)])     # both scatter paths (<= 64 ids and more)
def test_embedding_finite_differences(n_ids):
    rng = np.random.default_rng(5)
    layer = layers.Embedding(7, 3, dtype="float64", mask_zero=True)
    layer.maybe_build((None,) + n_ids[1:])
    ids = rng.integers(0, 7, n_ids)
    ids[0, :2] = 3                                           # repeated ids accumulate
    gradcheck(layer, ids)
    np.testing.assert_array_equal(layer.compute_mask(ids), ids != 0)


def test_embedding_scatter_matches_add_at():
    rng = np.random.default_rng(6)
    layer = layers.Embedding(50, 8)
    layer.maybe_build((None, 40))
    ids = rng.integers(0, 50, (16, 40))
    out, ctx = layer.forward(ids)
    assert out.dtype == np.float32 and out.shape == (16, 40, 8)
    np.testing.assert_array_equal(out, layer.params["embeddings"][ids])
    d = rng.standard_normal(out.shape).astype(np.float32)
    layer.zero_grads()
    assert layer.backward(ctx, d) is None
    ref = np.zeros((50, 8), np.float64)
    np.add.at(ref, ids.reshape(-1), d.reshape(-1, 8).astype(np.float64))
    np.testing.assert_allclose(layer.grads["embeddings"], ref, rtol=1e-5, atol=1e-5)


def test_embedding_default_initializer_is_keras3_uniform():
    layer = layers.Embedding(1000, 16)
    layer.maybe_build((None, 5))
    e = layer.params["embeddings"]
    assert e.shape == (1000, 16) and np.abs(e).max() <= 0.05 and e.std() > 0.02
    assert layer.compute_mask(np.array([[0, 1]])) is None
    assert layer.compute_output_shape((None, 5)) == (None, 5, 16)


def test_embedding_vs_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    layer = layers.Embedding(9, 4, dtype="float64")
    layer.maybe_build((None, 6))
    emb = torch.nn.Embedding(9, 4).double()
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(layer.params["embeddings"]))
    ids = rng.integers(0, 9, (5, 6))
    yt = emb(torch.tensor(ids))
    w = rng.standard_normal(yt.shape)
    (yt * torch.tensor(w)).sum().backward()
    y, ctx = layer.forward(ids)
    layer.zero_grads()
    layer.backward(ctx, w)
    np.testing.assert_allclose(y, yt.detach().numpy())
    np.testing.assert_allclose(layer.grads["embeddings"], emb.weight.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_embedding_ids_validation():
    layer = layers.Embedding(10, 2)
    layer.maybe_build((None, 3))
    with pytest.raises(ValueError, match=r"inputs.*\[0, 9\].*got 10"):
        layer.forward(np.array([[1, 10, 2]]))
    with pytest.raises(ValueError, match=r"inputs.*\[0, 9\].*got -1"):
        layer.forward(np.array([[1, -1, 2]]))
    with pytest.raises(TypeError, match="inputs.*integer ids.*float64"):
        layer.forward(np.array([[1.5, 2.0]]))
    with pytest.raises(TypeError, match="inputs.*integer ids.*bool"):
        layer.forward(np.array([[True, False]]))
    out, _ = layer.forward(np.array([[1.0, 2.0]]))        # whole-number floats are ids (as Keras)
    np.testing.assert_array_equal(out, layer.params["embeddings"][[[1, 2]]])
    with pytest.raises(ValueError, match="input_dim.*positive int.*0"):
        layers.Embedding(0, 2)
    with pytest.raises(ValueError, match="output_dim.*positive int"):
        layers.Embedding(3, 2.5)


# ---------------------------------------------------------------------------
# Dropout


def test_dropout_finite_differences_with_fixed_seed():
    layer = layers.Dropout(0.4, seed=11, dtype="float64")
    x = np.random.default_rng(0).standard_normal((4, 5, 3))
    layer.maybe_build((None, 5, 3))
    reseed = lambda: layer.set_rng(np.random.default_rng(123))   # noqa: E731
    gradcheck(layer, x, training=True, reseed=reseed)
    reseed()
    y, ctx = layer.forward(x, training=True)
    kept = y != 0
    assert 0.3 < 1 - kept.mean() < 0.5
    np.testing.assert_allclose(y[kept], x[kept] / 0.6)


def test_dropout_noise_shape_and_inference():
    layer = layers.Dropout(0.5, noise_shape=(None, 1, 6), seed=3)
    x = np.ones((8, 5, 6), np.float32)
    y, ctx = layer.forward(x, training=True)
    assert np.all(y == y[:, :1, :])                       # one mask shared over time
    assert set(np.unique(y)) <= {0.0, 2.0}
    d = layer.backward(ctx, np.ones_like(x))
    np.testing.assert_array_equal(d, y)
    y0, ctx0 = layer.forward(x, training=False)
    np.testing.assert_array_equal(y0, x)
    np.testing.assert_array_equal(layer.backward(ctx0, x), x)
    assert layer.compute_mask(x, np.ones((8, 5), bool)).all()


def test_dropout_seed_reproducible_and_set_rng():
    x = np.ones((20, 30))
    a = layers.Dropout(0.5, seed=5).forward(x, training=True)[0]
    b = layers.Dropout(0.5, seed=5).forward(x, training=True)[0]
    np.testing.assert_array_equal(a, b)
    layer = layers.Dropout(0.5, seed=5)
    layer.set_rng(9)
    c = layer.forward(x, training=True)[0]
    layer.set_rng(np.random.default_rng(9))
    np.testing.assert_array_equal(c, layer.forward(x, training=True)[0])
    assert not np.array_equal(a, c)
    assert np.all(layers.Dropout(1.0).forward(x, training=True)[0] == 0)


def test_dropout_validation():
    with pytest.raises(ValueError, match="rate.*1.5"):
        layers.Dropout(1.5)
    with pytest.raises(ValueError, match="seed"):
        layers.Dropout(0.1, seed=-1)
    with pytest.raises(TypeError, match="rng.*Generator"):
        layers.Dropout(0.1).set_rng("x")
    with pytest.raises(ValueError, match="noise_shape"):
        layers.Dropout(0.1, noise_shape=(None, 2)).forward(np.ones((3, 4)), training=True)
    with pytest.raises(ValueError, match="noise_shape.*one entry per"):
        layers.Dropout(0.1, noise_shape=(None,)).forward(np.ones((3, 4)), training=True)


# ---------------------------------------------------------------------------
# Activation, Flatten, Masking


@pytest.mark.parametrize("name", ["relu", "softmax", "gelu", "sigmoid", "hard_swish"])
def test_activation_layer_finite_differences(name):
    layer = layers.Activation(name, dtype="float64")
    x = _smooth_input(np.random.default_rng(1), (2, 3, 4), (0.0, -3.0, 3.0))
    layer.maybe_build((None, 3, 4))
    gradcheck(layer, x)
    m = np.ones((2, 3), bool)
    assert layer.compute_mask(x, m) is m


def test_flatten_finite_differences_and_shapes():
    layer = layers.Flatten(dtype="float64")
    layer.maybe_build((None, 3, 4))
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    gradcheck(layer, x)
    assert layer.forward(x)[0].shape == (2, 12)
    assert layer.compute_output_shape((None, 3, 4)) == (None, 12)
    assert layer.compute_output_shape((None, None, 4)) == (None, None)
    assert layer.compute_mask(x, np.ones((2, 3), bool)) is None
    one = layers.Flatten()
    one.maybe_build((None,))
    assert one.forward(np.ones(5))[0].shape == (5, 1)
    with pytest.raises(ValueError, match=r"inputs.*dimension 2 of size 4.*got shape \(2, 3, 5\)"):
        layer.forward(np.ones((2, 3, 5)))


def test_masking_forward_mask_and_gradient():
    layer = layers.Masking(mask_value=-1.0, dtype="float64")
    layer.maybe_build((None, 4, 3))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 3))
    x[0, 1] = -1.0
    x[1, 3] = -1.0
    x[1, 0, 0] = -1.0                                       # one feature equal is not masked
    mask = layer.compute_mask(x)
    np.testing.assert_array_equal(mask, [[True, False, True, True], [True, True, True, False]])
    y, ctx = layer.forward(x)
    np.testing.assert_array_equal(y[0, 1], 0)
    np.testing.assert_array_equal(y[1, 0], x[1, 0])
    # masked steps jump when perturbed (they stop being masked): difference the others,
    # and the gradient there is zero (as Keras's where())
    skip = np.broadcast_to(~mask[..., None], x.shape)
    dx = gradcheck(layer, x, skip=[skip])[0]
    assert np.all(dx[~mask] == 0)


# ---------------------------------------------------------------------------
# TimeDistributed


def test_time_distributed_dense_finite_differences_and_shared_weights():
    inner = layers.Dense(3, activation="tanh", dtype="float64", bias_initializer="random_normal")
    td = layers.TimeDistributed(inner)
    td.maybe_build((None, 4, 2))
    assert td.params is inner.params and td.weight_names() == ["kernel", "bias"]
    x = np.random.default_rng(3).standard_normal((2, 4, 2))
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
    gradcheck(td, x, mask=mask)
    assert td.compute_mask(x, mask) is mask
    assert td.compute_output_shape((None, 4, 2)) == (None, 4, 3)
    td.set_weights([np.zeros((2, 3)), np.ones(3)])
    np.testing.assert_array_equal(inner.params["bias"], 1)
    np.testing.assert_allclose(td.forward(x)[0], np.tanh(1.0))
    td.trainable = False
    assert not inner.trainable and td.trainable_weights == []


def test_time_distributed_dropout_fixed_seed():
    td = layers.TimeDistributed(layers.Dropout(0.3, dtype="float64"))
    x = np.random.default_rng(4).standard_normal((2, 3, 4))
    td.maybe_build((None, 3, 4))
    gradcheck(td, x, training=True, reseed=lambda: td.layer.set_rng(np.random.default_rng(0)))


def test_time_distributed_validation_and_config():
    with pytest.raises(TypeError, match="layer.*Layer"):
        layers.TimeDistributed("dense")
    td = layers.TimeDistributed(layers.Dense(2))
    with pytest.raises(ValueError, match="input_shape.*at least 3"):
        td.maybe_build((None, 4))
    td2 = layers.TimeDistributed(layers.Dense(2))
    td2.maybe_build((None, 3, 4))
    with pytest.raises(ValueError, match="inputs.*at least 3"):
        td2.forward(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"mask expected shape \(2, 3\)"):
        td2.forward(np.ones((2, 3, 4)), mask=np.ones((2, 4), bool))
    cfg = layers.serialize(td2)
    assert cfg["config"]["layer"]["class_name"] == "Dense"
    again = layers.deserialize(cfg)
    assert isinstance(again.layer, layers.Dense) and again.layer.units == 2


# ---------------------------------------------------------------------------
# merge layers


def test_concatenate_finite_differences_and_masks():
    layer = layers.Concatenate(dtype="float64")
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 2))]
    layer.maybe_build([(None, 3, 4), (None, 3, 2)])
    gradcheck(layer, xs)
    assert layer.compute_output_shape([(None, 3, 4), (None, 3, 2)]) == (None, 3, 6)
    m1 = np.array([[1, 1, 0], [1, 0, 0]], bool)
    m2 = np.array([[1, 0, 0], [1, 1, 1]], bool)
    np.testing.assert_array_equal(layer.compute_mask(xs, [m1, m2]), m1 | m2)
    assert layer.compute_mask(xs, [m1, None]).all()
    assert layer.compute_mask(xs, [None, None]) is None and layer.compute_mask(xs, None) is None
    t = layers.Concatenate(axis=1, dtype="float64")
    t.maybe_build([(None, 3, 4), (None, 2, 4)])
    ys = [rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 2, 4))]
    gradcheck(t, ys)
    np.testing.assert_array_equal(t.compute_mask(ys, [m1, None]),
                                  np.concatenate([m1, np.ones((2, 2), bool)], axis=1))


def test_add_finite_differences_broadcast_and_masks():
    layer = layers.Add(dtype="float64")
    rng = np.random.default_rng(6)
    xs = [rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 1, 4)), rng.standard_normal((2, 4))]
    layer.maybe_build([(None, 3, 4), (None, 1, 4), (None, 4)])
    assert layer.compute_output_shape([(None, 3, 4), (None, 1, 4), (None, 4)]) == (None, 3, 4)
    ds = gradcheck(layer, xs)
    assert len({id(d) for d in ds}) == 3
    m1 = np.array([[1, 1, 0], [1, 0, 0]], bool)
    m2 = np.array([[1, 0, 0], [1, 1, 0]], bool)
    np.testing.assert_array_equal(layer.compute_mask(xs[:2], [m1, m2]), m1 | m2)
    assert layer.compute_mask(xs[:2], [m1, None]) is None
    with pytest.raises(ValueError, match="mask expected 2 entries"):
        layer.compute_mask(xs[:2], [m1])


def test_merge_validation():
    c = layers.Concatenate()
    with pytest.raises(ValueError, match="input_shape.*equal sizes except along axis -1"):
        c.maybe_build([(None, 3, 4), (None, 2, 4)])
    c2 = layers.Concatenate()
    c2.maybe_build([(None, 3, 4), (None, 3, 2)])
    with pytest.raises(ValueError, match=r"inputs\[1\] expected shape \(None, 3, 2\).*\(2, 3, 5\)"):
        c2.forward([np.ones((2, 3, 4)), np.ones((2, 3, 5))])
    with pytest.raises(ValueError, match="inputs expected 2 arrays"):
        c2.forward([np.ones((2, 3, 4))])
    with pytest.raises(ValueError, match="inputs expected a list"):
        c2.forward(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="axis"):
        layers.Concatenate(axis="x")
    a = layers.Add()
    with pytest.raises(ValueError, match="do not broadcast"):
        a.maybe_build([(None, 3, 4), (None, 3, 5)])
    a2 = layers.Add()
    a2.maybe_build([(None, 4), (None, 4)])
    with pytest.raises(ValueError, match="one batch size"):
        a2.forward([np.ones((2, 4)), np.ones((3, 4))])
    with pytest.raises(TypeError, match=r"inputs\[1\].*real-valued.*<U1"):
        a2.forward([np.ones((2, 4)), np.full((2, 4), "a")])


# ---------------------------------------------------------------------------
# validation, registry, configs


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="units.*positive int.*0"):
        layers.Dense(0)
    with pytest.raises(ValueError, match="units.*positive int"):
        layers.Dense(True)
    with pytest.raises(ValueError, match="activation.*'sigmoidd'"):
        layers.Dense(3, activation="sigmoidd")
    with pytest.raises(ValueError, match="initializer 'glorot'"):
        layers.Dense(3, kernel_initializer="glorot")
    with pytest.raises(TypeError, match="dtype.*float32 or float64.*int32"):
        layers.Dense(3, dtype="int32")
    with pytest.raises(ValueError, match="mask_value.*number"):
        layers.Masking(mask_value="zero")


def test_dense_input_validation():
    layer = layers.Dense(2)
    layer.maybe_build((None, 4))
    with pytest.raises(ValueError, match=r"inputs expected last dimension 4, got shape \(3, 5\)"):
        layer.forward(np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"inputs expected at least 2 dimensions.*\(4,\)"):
        layer.forward(np.ones(4))
    with pytest.raises(TypeError, match="inputs expected a real-valued array.*complex"):
        layer.forward(np.ones((3, 4), complex))
    with pytest.raises(ValueError, match="last dimension of input_shape must be known.*None, None"):
        layers.Dense(2).maybe_build((None, None))
    m = layers.Masking()
    m.maybe_build((None, 3, 2))
    with pytest.raises(ValueError, match=r"inputs expected dimension 2 of size 2"):
        m.forward(np.ones((1, 3, 4)))


ALL_LAYERS = [
    lambda: layers.Dense(3, activation=activations.GELU(approximate=True), kernel_regularizer="l1",
                         kernel_initializer=initializers.RandomNormal(stddev=0.1)),
    lambda: layers.Embedding(10, 4, mask_zero=True),
    lambda: layers.Dropout(0.2, noise_shape=(None, 1, 3), seed=4),
    lambda: layers.Activation("softmax"),
    lambda: layers.Flatten(),
    lambda: layers.Masking(mask_value=0.5),
    lambda: layers.TimeDistributed(layers.Dense(2, use_bias=False)),
    lambda: layers.Concatenate(axis=1),
    lambda: layers.Add(name="my_add", dtype="float64"),
]


@pytest.mark.parametrize("make", ALL_LAYERS)
def test_serialize_roundtrip(make):
    import json
    layer = make()
    cfg = layers.serialize(layer)
    text = json.dumps(cfg)                                 # configs are plain JSON
    again = layers.deserialize(json.loads(text))
    assert type(again) is type(layer)
    assert layers.serialize(again) == cfg


def test_registry():
    assert layers.get("Dense") is layers.Dense
    assert isinstance(layers.get({"class_name": "Flatten", "config": {}}), layers.Flatten)
    for n in ["Dense", "Embedding", "Dropout", "Activation", "Flatten", "Masking", "TimeDistributed",
              "Concatenate", "Add"]:
        assert n in layers.registered_names()
    with pytest.raises(ValueError, match="unknown layer class_name 'Nope'"):
        layers.deserialize({"class_name": "Nope", "config": {}})

    class Custom(layers.Layer):
        pass
    assert isinstance(layers.deserialize({"class_name": "Custom", "config": {}},
                                         custom_objects={"Custom": Custom}), Custom)

    class Dense(layers.Layer):                          # a clash with a taken name
        pass
    with pytest.raises(ValueError, match="'Dense' is taken"):
        layers.register(Dense)
    with pytest.raises(TypeError, match="Layer subclass"):
        layers.register(int)


# ---------------------------------------------------------------------------
# Keras parity (skipped when keras is not importable)


@pytest.fixture(scope="module")
def keras():
    k = pytest.importorskip("keras")
    return k


def _np(t):
    import keras as k
    return np.asarray(k.ops.convert_to_numpy(t))


def test_keras_dense_weights_and_outputs(keras):
    rng = np.random.default_rng(0)
    ours = layers.Dense(5, activation="tanh")
    ours.maybe_build((None, 3, 4))
    theirs = keras.layers.Dense(5, activation="tanh")
    theirs.build((None, 3, 4))
    assert [tuple(w.shape) for w in theirs.get_weights()] == [w.shape for w in ours.get_weights()]
    assert [w.path.split("/")[-1] for w in theirs.weights] == ours.weight_names()
    ours.params["bias"][...] = rng.standard_normal(5)
    theirs.set_weights(ours.get_weights())
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(ours.forward(x)[0], _np(theirs(x)), rtol=1e-5, atol=1e-6)


def test_keras_embedding_outputs_and_mask(keras):
    ours = layers.Embedding(12, 3, mask_zero=True)
    ours.maybe_build((None, 5))
    theirs = keras.layers.Embedding(12, 3, mask_zero=True)
    theirs.build((None, 5))
    assert [tuple(w.shape) for w in theirs.get_weights()] == [w.shape for w in ours.get_weights()]
    theirs.set_weights(ours.get_weights())
    ids = np.array([[1, 4, 0, 0, 0], [11, 2, 3, 0, 5]])
    np.testing.assert_allclose(ours.forward(ids)[0], _np(theirs(ids)))
    np.testing.assert_array_equal(ours.compute_mask(ids), _np(theirs.compute_mask(ids)))


def test_keras_masking(keras):
    x = np.random.default_rng(1).standard_normal((2, 4, 3)).astype(np.float32)
    x[0, 2] = 0.0
    x[1, 0] = 0.0
    x[1, 1, 0] = 0.0
    ours = layers.Masking()
    ours.maybe_build((None, 4, 3))
    theirs = keras.layers.Masking()
    np.testing.assert_array_equal(ours.forward(x)[0], _np(theirs(x)))
    np.testing.assert_array_equal(ours.compute_mask(x), _np(theirs.compute_mask(x)))


def test_keras_time_distributed_dense(keras):
    rng = np.random.default_rng(2)
    ours = layers.TimeDistributed(layers.Dense(3, activation="relu", bias_initializer="random_normal"))
    ours.maybe_build((None, 4, 2))
    theirs = keras.layers.TimeDistributed(keras.layers.Dense(3, activation="relu"))
    theirs.build((None, 4, 2))
    assert [tuple(w.shape) for w in theirs.get_weights()] == [w.shape for w in ours.get_weights()]
    theirs.set_weights(ours.get_weights())
    x = rng.standard_normal((2, 4, 2)).astype(np.float32)
    np.testing.assert_allclose(ours.forward(x)[0], _np(theirs(x)), rtol=1e-5, atol=1e-6)
    mask = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], bool)
    np.testing.assert_array_equal(ours.compute_mask(x, mask), _np(theirs.compute_mask(x, mask)))


def _keras_mask(keras, layer, xs, masks):
    out = layer.compute_mask(xs, masks)
    return None if out is None else _np(out)


@pytest.mark.parametrize("axis", [-1, 1])
def test_keras_concatenate(keras, axis):
    rng = np.random.default_rng(3)
    if axis == -1:
        xs = [rng.standard_normal((2, 3, 4)).astype(np.float32), rng.standard_normal((2, 3, 2)).astype(np.float32)]
    else:
        xs = [rng.standard_normal((2, 3, 4)).astype(np.float32), rng.standard_normal((2, 2, 4)).astype(np.float32)]
    ours = layers.Concatenate(axis=axis)
    ours.maybe_build([base._shape_of(x) for x in xs])
    theirs = keras.layers.Concatenate(axis=axis)
    np.testing.assert_array_equal(ours.forward(xs)[0], _np(theirs(xs)))
    m1 = np.array([[1, 1, 0], [1, 0, 0]], bool)
    m2 = np.array([[1, 0, 0], [1, 1, 1]], bool)[:, : xs[1].shape[1]]
    for masks in ([m1, m2], [m1, None], [None, m2], [None, None], None):
        want = _keras_mask(keras, theirs, xs, masks)
        got = ours.compute_mask(xs, masks)
        if want is None:
            assert got is None
        else:
            np.testing.assert_array_equal(got, want, err_msg=str(masks))


def test_keras_add(keras):
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((2, 3, 4)).astype(np.float32) for _ in range(3)]
    ours = layers.Add()
    ours.maybe_build([(None, 3, 4)] * 3)
    theirs = keras.layers.Add()
    np.testing.assert_allclose(ours.forward(xs)[0], _np(theirs(xs)), rtol=1e-6)
    m = [np.array([[1, 1, 0], [1, 0, 0]], bool), np.array([[1, 0, 0], [1, 1, 1]], bool),
         np.array([[0, 0, 0], [1, 1, 0]], bool)]
    for masks in (m, [m[0], None, m[2]], None):
        want = _keras_mask(keras, theirs, xs, masks)
        got = ours.compute_mask(xs, masks)
        if want is None:
            assert got is None
        else:
            np.testing.assert_array_equal(got, want)


def test_keras_flatten_and_dropout_inference(keras):
    x = np.random.default_rng(5).standard_normal((2, 3, 4)).astype(np.float32)
    f = layers.Flatten()
    f.maybe_build((None, 3, 4))
    np.testing.assert_array_equal(f.forward(x)[0], _np(keras.layers.Flatten()(x)))
    d = layers.Dropout(0.5)
    np.testing.assert_array_equal(d.forward(x)[0], _np(keras.layers.Dropout(0.5)(x, training=False)))
