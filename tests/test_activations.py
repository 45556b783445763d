"""A forward's own activations, `clip` and `input_forget` (ONNX's recurrent
attributes): the kernels' generic epilogue against `fastrnn.reference`, the
reference's functions against the ONNX operator definitions written out
independently, thread counts bit for bit, NaN propagation, and argument checks.
"""
import math

import numpy as np
import pytest

import fastrnn.functional as F
import fastrnn.reference as R

NAMES = ["sigmoid", "tanh", "relu", "hard_sigmoid", "leaky_relu", "affine", "scaled_tanh", "elu", "softsign",
         "softplus", "thresholded_relu"]
SLOTS = {"rnn": 1, "gru": 2, "lstm": 3}
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
TOL = {np.float32: (1e-4, 1e-5), np.float64: (1e-11, 1e-12)}      # rtol, atol per unit of the largest output


def spec(name, x, alpha, beta):
    """The ONNX definitions, one scalar at a time, with the math module."""
    if name == "sigmoid":
        return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))
    if name == "tanh":
        return math.tanh(x)
    if name == "relu":
        return max(0.0, x)
    if name == "hard_sigmoid":
        return min(max(alpha * x + beta, 0.0), 1.0)
    if name == "leaky_relu":
        return x if x >= 0 else alpha * x
    if name == "affine":
        return alpha * x + beta
    if name == "scaled_tanh":
        return alpha * math.tanh(beta * x)
    if name == "elu":
        return x if x >= 0 else alpha * (math.exp(x) - 1)
    if name == "softsign":
        return x / (1 + abs(x))
    if name == "softplus":
        return math.log1p(math.exp(-abs(x))) + max(x, 0.0)
    if name == "thresholded_relu":
        return x if x > alpha else 0.0
    raise AssertionError(name)


def run(mod, family, dtype, acts, *, clip=None, input_forget=False, seed=0, T=6, B=5, I=7, H=13, peep=False,
        proj=0, lbr=True, scale=0.4, **kw):
    """One forward of `mod` on random weights small enough to keep unbounded activations finite."""
    rng = np.random.default_rng(seed)
    G = GATES[family]
    P = proj or H
    x = rng.standard_normal((T, B, I)).astype(dtype)
    w_ih = (rng.uniform(-scale, scale, (G * H, I))).astype(dtype)
    w_hh = (rng.uniform(-scale, scale, (G * H, P))).astype(dtype)
    b_ih, b_hh = (rng.uniform(-0.3, 0.3, (2, G * H))).astype(dtype)
    h0 = rng.standard_normal((B, P)).astype(dtype) * 0.5
    common = dict(activations=acts, clip=clip, training=False, **kw)
    if family == "rnn":
        y, h, _ = mod.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, **common)
        return y, (h,)
    if family == "gru":
        y, h, _ = mod.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, linear_before_reset=lbr, **common)
        return y, (h,)
    c0 = rng.standard_normal((B, H)).astype(dtype) * 0.5
    w_peep = rng.uniform(-0.5, 0.5, (3, H)).astype(dtype) if peep else None
    w_hr = rng.uniform(-scale, scale, (P, H)).astype(dtype) if proj else None
    y, (h, c), _ = mod.lstm_forward(x, (h0, c0), w_ih, w_hh, b_ih, b_hh, w_peep=w_peep, w_hr=w_hr,
                                    input_forget=input_forget, **common)
    return y, (h, c)


def assert_match(got, want, dtype, what):
    for g, w, name in zip((got[0],) + got[1], (want[0],) + want[1], ("y", "h_n", "c_n")):
        assert g.dtype == dtype and g.shape == w.shape, what
        assert np.isfinite(w).all(), f"{what}: {name}: the problem overflows; make its weights smaller"
        rtol, atol = TOL[dtype]
        scale = max(1.0, float(np.abs(w).max()))
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol * scale, err_msg=f"{what}: {name}")


@pytest.mark.parametrize("name", NAMES)
def test_reference_functions_match_onnx_definitions(name):
    xs = np.concatenate([np.linspace(-6, 6, 97), [-30.0, -1e-9, 0.0, 1e-9, 0.7, 30.0]])
    for alpha, beta in [(0.7, 0.3), (1.3, -0.4)]:
        a = R._validate.activation_set("rnn_tanh", [(name, alpha, beta)], None, False)
        if a is None:                   # tanh: the cell's own, no set
            a = ((1, 1, 1), (0, 0, 0), (0, 0, 0), 0.0, 0)
        fn = R._ACT_FUNCS[a[0][0]]
        got = fn(xs, alpha, beta)
        want = [spec(name, float(v), alpha, beta) for v in xs]
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15, err_msg=name)


CASES = [(fam, k) for fam in SLOTS for k in range(len(NAMES))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("family,k", CASES, ids=[f"{f}-{NAMES[k]}" for f, k in CASES])
def test_kernels_match_reference(family, k, dtype):
    """Each activation in each slot (rotating the others), with and without alpha/beta,
    clip, input_forget, peepholes, projection and both GRU forms."""
    n = SLOTS[family]
    names = [NAMES[(k + 4 * j) % len(NAMES)] for j in range(n)]
    variants = [dict(acts=names),
                dict(acts=[(m, 0.8, 0.35) for m in names], clip=0.9, scale=0.25),
                dict(acts=[(m, 1.2) for m in names], clip=2.5, lbr=False)]
    if family == "lstm":
        variants += [dict(acts=names, input_forget=True, peep=True, scale=0.2),
                     dict(acts=[(m, 0.6, -0.2) for m in names], clip=0.7, peep=True, proj=5, input_forget=True)]
    for v in variants:
        v = dict(v)
        if family != "gru":
            v.pop("lbr", None)
        acts = v.pop("acts")
        want = run(R, family, dtype, acts, **v)
        for threads in (1, 2):
            got = run(F, family, dtype, acts, num_threads=threads, **v)
            assert_match(got, want, dtype, f"{family} {acts} {v} threads={threads}")


@pytest.mark.parametrize("family", list(SLOTS))
def test_thread_counts_bit_identical(family):
    n = SLOTS[family]
    acts = [("hard_sigmoid", 0.3, 0.4), ("softplus",), ("elu", 0.9)][:n]
    kw = dict(T=20, B=48, I=32, H=96, clip=1.5, input_forget=family == "lstm")
    if family != "lstm":
        kw.pop("input_forget")
    base = run(F, family, np.float32, acts, num_threads=1, **kw)
    for t in (2, 3):
        other = run(F, family, np.float32, acts, num_threads=t, **kw)
        for a, b in zip((base[0],) + base[1], (other[0],) + other[1]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("family", list(SLOTS))
def test_cell_defaults_take_the_fast_path_bit_for_bit(family):
    """Naming the cell's own activations (no clip) gives exactly the plain call."""
    defaults = {"rnn": ["tanh"], "gru": ["sigmoid", "tanh"], "lstm": ["Sigmoid", "Tanh", "TANH"]}[family]
    for dtype in (np.float32, np.float64):
        plain = run(F, family, dtype, None)
        named = run(F, family, dtype, defaults)
        for a, b in zip((plain[0],) + plain[1], (named[0],) + named[1]):
            np.testing.assert_array_equal(a, b)


def test_rnn_relu_by_name_is_the_relu_cell():
    a = run(F, "rnn", np.float64, ["relu"])
    b = run(F, "rnn", np.float64, None, nonlinearity="relu")
    np.testing.assert_array_equal(a[0], b[0])


def test_nan_and_inf_propagate_like_the_reference():
    for name in NAMES:
        acts = [name, "softsign", name]
        rng = np.random.default_rng(3)
        x = rng.standard_normal((3, 4, 5)).astype(np.float32)
        x[1, 0, 2] = np.nan
        x[0, 2, 1] = np.inf
        x[2, 3, 0] = -np.inf
        w_ih = rng.uniform(-0.4, 0.4, (4 * 6, 5)).astype(np.float32)
        w_hh = rng.uniform(-0.4, 0.4, (4 * 6, 6)).astype(np.float32)
        got, (gh, gc), _ = F.lstm_forward(x, None, w_ih, w_hh, activations=acts, clip=3.0, training=False)
        want, (wh, wc), _ = R.lstm_forward(x, None, w_ih, w_hh, activations=acts, clip=3.0, training=False)
        for g, w in ((got, want), (gh, wh), (gc, wc)):
            np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=name)
            np.testing.assert_array_equal(np.isinf(g), np.isinf(w), err_msg=name)
            ok = np.isfinite(w)
            np.testing.assert_allclose(g[ok], w[ok], rtol=1e-5, atol=1e-6, err_msg=name)


def test_clip_bounds_every_gate():
    """With a tiny clip every LSTM gate is near f(0): the output is predictable."""
    x = np.full((1, 1, 3), 50.0)
    w_ih = np.ones((8, 3))
    w_hh = np.zeros((8, 2))
    y, (h, c), _ = F.lstm_forward(x, None, w_ih, w_hh, clip=1e-9, training=False)
    i = f = o = 0.5
    g = 0.0
    np.testing.assert_allclose(c, f * 0 + i * g + 0 * f, atol=1e-8)
    np.testing.assert_allclose(h, o * np.tanh(c), atol=1e-8)
    y, (h, c), _ = F.lstm_forward(x, None, w_ih, w_hh, clip=2.0, training=False)
    s2 = 1 / (1 + math.exp(-2.0))
    np.testing.assert_allclose(c, s2 * math.tanh(2.0))
    np.testing.assert_allclose(h, s2 * np.tanh(c))


def test_input_forget_ignores_forget_weights():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 2, 3))
    w_ih = rng.standard_normal((8, 3))
    w_hh = rng.standard_normal((8, 2))
    other = w_ih.copy()
    other[2:4] += 5                                 # forget-gate rows (i, f, g, o order)
    a = F.lstm_forward(x, None, w_ih, w_hh, input_forget=True, training=False)[0]
    b = F.lstm_forward(x, None, other, w_hh, input_forget=True, training=False)[0]
    c = F.lstm_forward(x, None, other, w_hh, training=False)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(activations=["sigmoid", "nope", "tanh"]), ValueError, r"activations\[1\].*'nope'"),
    (dict(activations=["sigmoid", "tanh"]), ValueError, "activations: expected 3 for lstm"),
    (dict(activations="tanh"), TypeError, "activations: expected a list of 3"),
    (dict(activations=["sigmoid", ("elu", "x"), "tanh"]), TypeError, r"activations\[1\]: alpha and beta"),
    (dict(activations=["sigmoid", ("elu", 1, 2, 3), "tanh"]), TypeError, r"activations\[1\]"),
    (dict(activations=["sigmoid", ("elu", float("nan")), "tanh"]), ValueError, "finite"),
    (dict(clip=0), ValueError, "clip: expected a positive number"),
    (dict(clip=-1.5), ValueError, "clip: expected a positive number"),
    (dict(clip=float("nan")), ValueError, "clip"),
    (dict(clip="3"), TypeError, "clip"),
    (dict(input_forget="yes"), TypeError, "input_forget"),
])
def test_bad_arguments_name_themselves(kwargs, exc, match):
    x = np.zeros((2, 1, 3), np.float32)
    w_ih, w_hh = np.zeros((8, 3), np.float32), np.zeros((8, 2), np.float32)
    for mod in (F, R):
        with pytest.raises(exc, match=match):
            mod.lstm_forward(x, None, w_ih, w_hh, training=False, **kwargs)


def test_input_forget_is_lstm_only_and_training_is_refused():
    x = np.zeros((2, 1, 3))
    with pytest.raises(TypeError, match="input_forget"):
        F.gru_forward(x, None, np.zeros((6, 3)), np.zeros((6, 2)), input_forget=True, training=False)
    for kw in (dict(clip=1.0), dict(activations=["relu", "tanh"]), dict(activations=[("sigmoid",), "elu"])):
        for mod in (F, R):
            with pytest.raises(NotImplementedError, match="training=False"):
                mod.gru_forward(x, None, np.zeros((6, 3)), np.zeros((6, 2)), **kw)
    # the cell's own functions, named, still train
    F.gru_forward(x, None, np.zeros((6, 3)), np.zeros((6, 2)), activations=["sigmoid", "tanh"])
