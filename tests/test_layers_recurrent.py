"""Recurrent layers (SimpleRNN, GRU, LSTM, Bidirectional): finite differences in
float64 for every option, Keras 3 and PyTorch parity (each skipped when absent),
stateful carry, inference caching, validation and configs."""
import json

import numpy as np
import pytest

import fastrnn.functional as F
from fastrnn import layers
from fastrnn.layers import recurrent as R

# ---------------------------------------------------------------------------
# helpers

CELLS = {
    "rnn_tanh": lambda **kw: layers.SimpleRNN(4, **kw),
    "rnn_relu": lambda **kw: layers.SimpleRNN(4, activation="relu", **kw),
    "gru": lambda **kw: layers.GRU(4, **kw),
    "gru_orig": lambda **kw: layers.GRU(4, reset_after=False, **kw),
    "lstm": lambda **kw: layers.LSTM(4, **kw),
    "lstm_peep": lambda **kw: layers.LSTM(4, peepholes=True, **kw),
    "lstm_proj": lambda **kw: layers.LSTM(4, proj_units=3, **kw),
    "lstm_peep_proj": lambda **kw: layers.LSTM(4, peepholes=True, proj_units=3, **kw),
}

B, T, I = 3, 5, 3
RIGHT_PADDED = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], bool)
GENERAL = np.array([[1, 0, 1, 1, 0], [0, 0, 1, 0, 1], [0, 0, 0, 0, 0]], bool)   # gaps, a leading gap, an empty row


def _as_list(v):
    return list(v) if isinstance(v, (list, tuple)) else [v]


def make(cell, dtype="float64", wseed=0, build=True, **kw):
    """A built layer with random weights (biases too), O(1) outputs."""
    layer = CELLS[cell](dtype=dtype, **kw)
    if build:
        layer.maybe_build((None, T, I))
        randomize(layer, wseed)
    return layer


def randomize(layer, seed, scale=0.6):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.uniform(-scale, scale, w.shape) for w in layer.get_weights()])


def rel_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300)


def gradcheck(layer, inputs, *, mask=None, training=False, rng_seed=None, eps=1e-6, tol=1e-6, seed=0):
    """layer.backward against central differences of L = sum(out_k * W_k), for every
    float input (x, initial states) and every weight. `rng_seed` re-seeds the
    layer's dropout generator before every forward (the same masks each time).
    Returns the analytic input gradients."""
    is_list = isinstance(inputs, list)
    xs = [None if v is None else np.array(v, np.float64) for v in _as_list(inputs)]

    def run(vals):
        if rng_seed is not None:
            layer.set_rng(rng_seed)
        return layer.forward(vals if is_list else vals[0], training=training, mask=mask)

    out, ctx = run(xs)
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal(np.shape(o)) for o in _as_list(out)]

    def loss():
        o, _ = run(xs)
        return sum(float(np.sum(a * w)) for a, w in zip(_as_list(o), ws))

    layer.zero_grads()
    d = layer.backward(ctx, ws if isinstance(out, list) else ws[0])
    ds = _as_list(d) if is_list else [d]
    assert len(ds) == len(xs)

    def numeric(arr, after=None):
        g = np.zeros(arr.shape)
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + eps
            if after:
                after()
            lp = loss()
            arr[idx] = old - eps
            if after:
                after()
            lm = loss()
            arr[idx] = old
            g[idx] = (lp - lm) / (2 * eps)
        if after:
            after()
        return g

    for i, (x, dx) in enumerate(zip(xs, ds)):
        if x is None:
            assert dx is None, f"input {i} was None: no gradient expected"
            continue
        assert dx is not None and dx.shape == x.shape, f"d inputs[{i}] shape"
        err = rel_error(dx, numeric(x))
        assert err < tol, f"d inputs[{i}]: relative error {err}"
    grads = {n: g.copy() for n, g in layer.grads.items()}
    assert set(grads) == set(layer.weight_names())
    for name in layer.weight_names():
        err = rel_error(grads[name], numeric(layer.params[name], layer.weights_changed))
        assert err < tol, f"d {name}: relative error {err}"
    return ds


def x_data(seed=1, shape=(B, T, I), dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def states_for(layer, seed=2, batch=B):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batch, n)) * 0.5 for n in layer.state_size]


# ---------------------------------------------------------------------------
# finite differences, every cell and option

OPTIONS = {
    "last": {},
    "sequences": {"return_sequences": True},
    "state": {"return_state": True},
    "sequences_state": {"return_sequences": True, "return_state": True},
    "backwards": {"go_backwards": True, "return_sequences": True},
    "backwards_last_state": {"go_backwards": True, "return_state": True},
    "no_bias": {"use_bias": False, "return_sequences": True},
    "zero_output": {"zero_output_for_mask": True, "return_sequences": True},
}


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("mask", [None, "right", "general"])
def test_finite_differences(cell, option, mask):
    layer = make(cell, wseed=len(option), **OPTIONS[option])
    m = {None: None, "right": RIGHT_PADDED, "general": GENERAL}[mask]
    gradcheck(layer, x_data(), mask=m, training=True)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("mask", [None, "right", "general"])
def test_finite_differences_initial_states(cell, go_backwards, mask):
    layer = make(cell, return_sequences=True, return_state=True, go_backwards=go_backwards)
    m = {None: None, "right": RIGHT_PADDED, "general": GENERAL}[mask]
    ds = gradcheck(layer, [x_data()] + states_for(layer), mask=m, training=True)
    assert len(ds) == 1 + len(layer.state_size)


def test_finite_differences_some_initial_states_none():
    layer = make("lstm", return_sequences=True)
    h0 = states_for(layer)[0]
    ds = gradcheck(layer, [x_data(), h0, None], training=True)
    assert ds[2] is None


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("mask", [None, "general"])
def test_finite_differences_dropout_fixed_seed(cell, mask):
    layer = make(cell, dropout=0.3, recurrent_dropout=0.4, return_sequences=True)
    m = None if mask is None else GENERAL
    gradcheck(layer, x_data(), mask=m, training=True, rng_seed=7)
    # the masks really drop something: training output differs from inference
    layer.set_rng(7)
    y_train = layer.forward(x_data(), training=True)[0]
    assert not np.allclose(y_train, layer.forward(x_data())[0])


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("cell", ["gru", "lstm_proj"])
@pytest.mark.parametrize("mask", [None, "right", "general"])
def test_finite_differences_bidirectional(merge_mode, cell, mask):
    inner = CELLS[cell](dtype="float64", return_sequences=True)
    layer = layers.Bidirectional(inner, merge_mode=merge_mode)
    layer.maybe_build((None, T, I))
    randomize(layer, 3)
    m = {None: None, "right": RIGHT_PADDED, "general": GENERAL}[mask]
    gradcheck(layer, x_data(), mask=m, training=True)


@pytest.mark.parametrize("merge_mode", ["concat", None])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_finite_differences_bidirectional_states_and_dropout(merge_mode, return_sequences):
    inner = layers.LSTM(4, dtype="float64", return_sequences=return_sequences, return_state=True,
                        dropout=0.2, recurrent_dropout=0.3)
    layer = layers.Bidirectional(inner, merge_mode=merge_mode)
    layer.maybe_build((None, T, I))
    randomize(layer, 4)
    rng = np.random.default_rng(5)
    states = [rng.standard_normal((B, 4)) * 0.5 for _ in range(4)]
    ds = gradcheck(layer, [x_data()] + states, mask=GENERAL, training=True, rng_seed=11)
    assert len(ds) == 5


def test_backward_after_inference_forward_recomputes():
    layer = make("lstm_peep_proj", return_sequences=True, return_state=True)
    x, st = x_data(), states_for(layer)
    dys = [np.random.default_rng(9).standard_normal(s.shape) for s in layer.forward([x] + st)[0]]
    grads = []
    for training in (True, False):
        layer.zero_grads()
        out, ctx = layer.forward([x] + st, training=training, mask=GENERAL)
        d = layer.backward(ctx, dys)
        grads.append((d, {n: g.copy() for n, g in layer.grads.items()}))
    for a, b in zip(grads[0][0], grads[1][0]):
        np.testing.assert_array_equal(a, b)
    for n in grads[0][1]:
        np.testing.assert_array_equal(grads[0][1][n], grads[1][1][n])


def test_grads_accumulate_and_trainable_false():
    layer = make("gru", return_sequences=True)
    x = x_data()
    dy = np.ones((B, T, 4))
    layer.zero_grads()
    y, ctx = layer.forward(x, training=True)
    layer.backward(ctx, dy)
    once = {n: g.copy() for n, g in layer.grads.items()}
    y, ctx = layer.forward(x, training=True)
    layer.backward(ctx, dy)
    for n in once:
        np.testing.assert_allclose(layer.grads[n], 2 * once[n], rtol=1e-12)
    layer.zero_grads()
    layer.trainable = False
    y, ctx = layer.forward(x, training=True)
    dx = layer.backward(ctx, dy)
    assert dx.shape == x.shape
    assert all(not g.any() for g in layer.grads.values())
    assert layer.trainable_weights == []


def test_no_gradient_returns_none():
    layer = make("lstm", return_state=True)
    out, ctx = layer.forward(x_data(), training=True)
    assert layer.backward(ctx, [None, None, None]) is None
    out, ctx = layer.forward([x_data()] + states_for(layer), training=True)
    assert layer.backward(ctx, [None, None, None]) == [None, None, None]


# ---------------------------------------------------------------------------
# semantics without outside references

def _keras_loop(layer, x, mask, h0s=None):
    """A slow loop with Keras's masking rules, on the engine's reference cells:
    one step at a time; masked steps keep the states and repeat the last output."""
    import fastrnn.reference as ref
    fw = layer.engine_weights()
    B_, T_ = x.shape[:2]
    states = [np.zeros((B_, n)) if h0s is None else h0s[i] for i, n in enumerate(layer.state_size)]
    prev = np.zeros((B_, layer.output_units))
    outs = []
    order = range(T_ - 1, -1, -1) if layer.go_backwards else range(T_)
    for t in order:
        xt = x[:, t:t + 1]
        kw = dict(batch_first=True, training=False, **layer._engine_options())
        if layer._family == "lstm":
            y, (h, c), _ = ref.lstm_forward(xt, tuple(states), fw["w_ih"], fw["w_hh"], fw["b_ih"], fw["b_hh"],
                                            w_peep=fw["w_peep"], w_hr=fw["w_hr"], **kw)
            new = [h, c]
        else:
            fn = ref.rnn_forward if layer._family == "rnn" else ref.gru_forward
            y, h, _ = fn(xt, states[0], fw["w_ih"], fw["w_hh"], fw["b_ih"], fw["b_hh"], **kw)
            new = [h]
        m = np.ones(B_, bool) if mask is None else mask[:, t]
        states = [np.where(m[:, None], n, s) for n, s in zip(new, states)]
        prev = np.where(m[:, None], y[:, 0], prev)
        outs.append(prev)
    return np.stack(outs, axis=1), outs[-1], states


@pytest.mark.parametrize("cell", ["rnn_tanh", "gru", "gru_orig", "lstm", "lstm_peep_proj"])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("mask", [None, "right", "general"])
def test_masked_steps_carry_the_last_output(cell, go_backwards, mask):
    m = {None: None, "right": RIGHT_PADDED, "general": GENERAL}[mask]
    layer = make(cell, return_sequences=True, return_state=True, go_backwards=go_backwards)
    x = x_data()
    h0s = states_for(layer)
    seq, last, states = _keras_loop(layer, x, m, h0s)
    out = layer.forward([x] + h0s, mask=m)[0]
    np.testing.assert_allclose(out[0], seq, rtol=1e-12, atol=1e-12)
    for a, b in zip(out[1:], states):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    last_layer = make(cell, return_state=False, go_backwards=go_backwards)
    last_layer.set_weights(layer.get_weights())
    np.testing.assert_allclose(last_layer.forward([x] + h0s, mask=m)[0], last, rtol=1e-12, atol=1e-12)
    if m is not None:                    # the empty row: zero outputs, its state is h0
        if mask == "general":
            assert not last_layer.forward([x] + h0s, mask=m)[0][2].any()
            np.testing.assert_array_equal(out[1][2], h0s[0][2])


def test_zero_output_for_mask_gives_zeros():
    layer = make("lstm", return_sequences=True, zero_output_for_mask=True)
    y = layer.forward(x_data(), mask=GENERAL)[0]
    assert not y[~GENERAL].any()
    assert np.all(np.abs(y[GENERAL]).sum(-1) > 0)


def test_mask_all_true_is_no_mask_and_lengths_path():
    layer = make("gru", return_sequences=True)
    x = x_data()
    np.testing.assert_array_equal(layer.forward(x, mask=np.ones((B, T), bool))[0], layer.forward(x)[0])
    # a right-padded mask and the same mask handed over as a general step mask agree
    y_lengths = layer.forward(x, mask=RIGHT_PADDED)[0]
    fw = layer.engine_weights()
    y_engine, _, _ = F.gru_forward(x, None, fw["w_ih"], fw["w_hh"], fw["b_ih"], fw["b_hh"],
                                   step_mask=RIGHT_PADDED, batch_first=True, training=False)
    np.testing.assert_allclose(y_lengths[RIGHT_PADDED], y_engine[RIGHT_PADDED], rtol=1e-12)
    # masks given as a list (the graph passes [mask, None, None] for [x, h0, c0])
    np.testing.assert_array_equal(layer.forward(x, mask=[RIGHT_PADDED, None])[0], y_lengths)


def test_go_backwards_reverses_the_sequence():
    fwd = make("lstm", return_sequences=True)
    bwd = make("lstm", return_sequences=True, go_backwards=True)
    bwd.set_weights(fwd.get_weights())
    x = x_data()
    np.testing.assert_allclose(bwd.forward(x)[0], fwd.forward(x[:, ::-1])[0], rtol=1e-12)
    # with a right-padded mask: the valid steps run from the last to the first
    y = bwd.forward(x, mask=RIGHT_PADDED)[0]
    for b, n in enumerate(RIGHT_PADDED.sum(1)):
        ref = fwd.forward(x[b:b + 1, :n][:, ::-1])[0][0]
        np.testing.assert_allclose(y[b, T - n:], ref, rtol=1e-12)
        assert not y[b, :T - n].any()


def test_dropout_masks_one_per_sequence():
    p, q, seed = 0.3, 0.4, 5
    layer = make("lstm", dropout=p, recurrent_dropout=q, return_sequences=True)
    x = x_data()
    layer.set_rng(seed)
    y = layer.forward(x, training=True)[0]
    rng = np.random.default_rng(seed)                  # the documented draws: inputs, then h
    dmask = (rng.random((B, I)) >= p) / (1 - p)
    rmask = (rng.random((B, 4)) >= q) / (1 - q)
    fw = layer.engine_weights()
    y_ref, _, _ = F.lstm_forward(x * dmask[:, None, :], None, fw["w_ih"], fw["w_hh"], fw["b_ih"], fw["b_hh"],
                                 recurrent_mask=rmask, batch_first=True, training=False)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12)
    # inference ignores dropout; the same seed gives the same training outputs
    np.testing.assert_array_equal(layer.forward(x)[0], make("lstm", return_sequences=True).forward(x)[0])
    layer.set_rng(seed)
    np.testing.assert_array_equal(layer.forward(x, training=True)[0], y)
    seeded = make("lstm", dropout=p, recurrent_dropout=q, return_sequences=True, seed=seed)
    np.testing.assert_array_equal(seeded.forward(x, training=True)[0], y)


def test_unit_forget_bias_and_initializers():
    layer = layers.LSTM(5)
    layer.maybe_build((None, 4, 3))
    bias = layer.params["bias"]
    np.testing.assert_array_equal(bias, np.r_[np.zeros(5), np.ones(5), np.zeros(10)])
    rk = layer.params["recurrent_kernel"].astype(np.float64)          # orthogonal rows
    np.testing.assert_allclose(rk @ rk.T, np.eye(5), atol=1e-5)
    assert layer.params["kernel"].dtype == np.float32
    no = layers.LSTM(5, unit_forget_bias=False)
    no.maybe_build((None, 4, 3))
    assert not no.params["bias"].any()
    torch_init = layers.GRU(16, kernel_initializer="torch_uniform", recurrent_initializer="torch_uniform",
                            bias_initializer="torch_uniform")
    torch_init.maybe_build((None, 4, 3))
    for w in torch_init.get_weights():
        assert np.abs(w).max() <= 0.25 and np.abs(w).max() > 0.15      # U(+-1/sqrt(16))
    seeded = [layers.SimpleRNN(3, kernel_initializer="glorot_uniform") for _ in range(2)]
    for s in seeded:
        s.init_rng = np.random.default_rng(3)
        s.maybe_build((None, 2, 2))
    np.testing.assert_array_equal(seeded[0].get_weights()[0], seeded[1].get_weights()[0])


def test_regularizers():
    layer = layers.GRU(3, kernel_regularizer="l2", recurrent_regularizer={"class_name": "L1", "config": {"l1": 0.1}},
                       bias_regularizer="l2", dtype="float64")
    layer.maybe_build((None, 2, 2))
    randomize(layer, 0)
    p = layer.params
    expected = 0.01 * np.sum(p["kernel"] ** 2) + 0.1 * np.sum(np.abs(p["recurrent_kernel"])) \
        + 0.01 * np.sum(p["bias"] ** 2)
    assert layer.regularization_loss() == pytest.approx(expected)
    layer.zero_grads()
    layer.add_regularization_grads()
    np.testing.assert_allclose(layer.grads["kernel"], 0.02 * p["kernel"])


def test_shapes_masks_and_weight_layout():
    for cell, P in (("rnn_tanh", 4), ("gru", 4), ("lstm", 4), ("lstm_proj", 3)):
        for rs in (False, True):
            for st in (False, True):
                layer = make(cell, dtype="float32", return_sequences=rs, return_state=st)
                shape = layer.compute_output_shape((None, T, I))
                out = layer.forward(x_data(dtype=np.float32), mask=RIGHT_PADDED)[0]
                outs = _as_list(out)
                shapes = shape if st else [shape]
                assert [tuple(o.shape) for o in outs] == [(B,) + tuple(s[1:]) for s in shapes]
                assert all(o.dtype == np.float32 for o in outs)
                assert outs[0].shape[-1] == P
                m = layer.compute_mask(None, RIGHT_PADDED)
                expect = RIGHT_PADDED if rs else None
                if st:
                    assert m[0] is expect and m[1:] == [None] * len(layer.state_size)
                else:
                    assert m is expect
    lstm = make("lstm_peep_proj")
    assert lstm.weight_names() == ["kernel", "recurrent_kernel", "bias", "peephole_kernel", "projection_kernel"]
    assert [w.shape for w in lstm.get_weights()] == [(I, 16), (3, 16), (16,), (3, 4), (4, 3)]
    assert make("gru").params["bias"].shape == (2, 12)
    assert make("gru_orig").params["bias"].shape == (12,)
    bi = layers.Bidirectional(layers.LSTM(4, return_sequences=True, return_state=True), merge_mode=None)
    assert bi.compute_output_shape((None, T, I)) == [(None, T, 4), (None, T, 4)] + [(None, 4)] * 4
    assert bi.compute_mask(None, RIGHT_PADDED)[:2] == [RIGHT_PADDED, RIGHT_PADDED]
    bi2 = layers.Bidirectional(layers.GRU(4))
    assert bi2.compute_output_shape((None, T, I)) == (None, 8)
    assert bi2.compute_mask(None, RIGHT_PADDED) is None


def test_engine_gate_order_matches_keras_layout():
    """The GRU permutation: Keras z, r, h columns become engine rows r, z, n (and back)."""
    layer = make("gru")
    fw = layer.engine_weights()
    k = layer.params["kernel"]
    np.testing.assert_array_equal(fw["w_ih"][:4], k[:, 4:8].T)       # r
    np.testing.assert_array_equal(fw["w_ih"][4:8], k[:, :4].T)       # z
    np.testing.assert_array_equal(fw["w_ih"][8:], k[:, 8:].T)        # n / h
    np.testing.assert_array_equal(fw["b_hh"][:4], layer.params["bias"][1, 4:8])
    g = np.arange(12 * I, dtype=np.float64).reshape(12, I)
    np.testing.assert_array_equal(layer._gates_to_engine(layer._gates_from_engine(g).copy()), g)


# ---------------------------------------------------------------------------
# stateful, caching, threads


@pytest.mark.parametrize("cell", ["rnn_tanh", "gru", "lstm_proj"])
def test_stateful_carries_and_resets(cell):
    whole = make(cell, return_sequences=True)
    st = make(cell, return_sequences=True, stateful=True)
    st.set_weights(whole.get_weights())
    x = x_data(shape=(B, 8, I))
    y_whole = whole.forward(x)[0]
    y1 = st.forward(x[:, :5])[0]
    y2 = st.forward(x[:, 5:])[0]
    np.testing.assert_allclose(np.concatenate([y1, y2], 1), y_whole, rtol=1e-12)
    st.reset_states()
    assert all(not s.any() for s in st.states)
    np.testing.assert_array_equal(st.forward(x[:, :5])[0], y1)
    with pytest.raises(ValueError, match="batch size 3 .* got shape \\(2, 5, 3\\)"):
        st.forward(x[:2, :5])
    # set states explicitly (changes the batch size too)
    h = [s[:2] for s in states_for(st)]
    st.reset_states(h)
    ref = whole.forward([x[:2, :5]] + h)[0]
    np.testing.assert_allclose(st.forward(x[:2, :5])[0], ref, rtol=1e-12)


def test_stateful_gradients_stop_at_the_batch_boundary():
    st = make("lstm", return_sequences=True, stateful=True)
    plain = make("lstm", return_sequences=True)
    plain.set_weights(st.get_weights())
    x = x_data(shape=(B, 8, I))
    st.forward(x[:, :4], training=True)
    carried = [s.copy() for s in st.states]
    st.zero_grads()
    y, ctx = st.forward(x[:, 4:], training=True)
    dy = np.ones_like(y)
    dx = st.backward(ctx, dy)
    plain.zero_grads()
    y2, ctx2 = plain.forward([x[:, 4:]] + carried, training=True)
    d2 = plain.backward(ctx2, dy)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(dx, d2[0])
    for n in st.grads:
        np.testing.assert_array_equal(st.grads[n], plain.grads[n])


def test_stateful_bidirectional():
    bi = layers.Bidirectional(layers.GRU(4, dtype="float64", return_sequences=True, stateful=True))
    bi.maybe_build((None, T, I))
    x = x_data()
    y1 = bi.forward(x)[0]
    assert len(bi.states) == 2
    assert not np.allclose(bi.forward(x)[0], y1)
    bi.reset_states()
    np.testing.assert_array_equal(bi.forward(x)[0], y1)


def test_inference_cache_and_weights_changed():
    layer = make("gru", dtype="float32", return_sequences=True)
    x = x_data(dtype=np.float32)
    y0 = layer.forward(x)[0]
    fw, packed = layer._engine_weights, layer._packed
    assert fw is not None and packed is not None
    layer.forward(x)
    assert layer._engine_weights is fw and layer._packed is packed        # no conversion, no packing
    new = [w * 0.5 for w in layer.get_weights()]
    layer.set_weights(new)                                                 # calls weights_changed()
    y1 = layer.forward(x)[0]
    fresh = make("gru", dtype="float32", return_sequences=True)
    fresh.set_weights(new)
    np.testing.assert_array_equal(y1, fresh.forward(x)[0])
    assert not np.allclose(y0, y1)
    # an in-place change (as an optimizer does) shows once weights_changed() is called
    layer.params["kernel"] += 0.1
    np.testing.assert_array_equal(layer.forward(x)[0], y1)                # the cache is still in use
    layer.weights_changed()
    assert not np.array_equal(layer.forward(x)[0], y1)


def test_bidirectional_weights_are_the_sublayers():
    bi = layers.Bidirectional(layers.LSTM(4, dtype="float64", return_sequences=True))
    bi.maybe_build((None, T, I))
    assert bi.weight_names() == ["forward/kernel", "forward/recurrent_kernel", "forward/bias",
                                 "backward/kernel", "backward/recurrent_kernel", "backward/bias"]
    assert bi.forward_layer.name.startswith("forward_") and bi.backward_layer.go_backwards
    assert bi.params["forward/kernel"] is bi.forward_layer.params["kernel"]
    assert bi.grads["backward/bias"] is bi.backward_layer.grads["bias"]
    x = x_data()
    y0 = bi.forward(x)[0]
    bi.set_weights([w * 0.5 for w in bi.get_weights()])
    assert not np.allclose(bi.forward(x)[0], y0)
    fwd = layers.LSTM(4, dtype="float64", return_sequences=True)
    fwd.maybe_build((None, T, I))
    fwd.set_weights(bi.get_weights()[:3])
    np.testing.assert_allclose(bi.forward(x)[0][..., :4], fwd.forward(x)[0], rtol=1e-12)
    bi.trainable = False
    assert not bi.forward_layer.trainable and bi.trainable_weights == []


@pytest.mark.parametrize("training", [False, True])
def test_bidirectional_concurrent_equals_sequential(monkeypatch, training):
    import fastrnn
    bi = layers.Bidirectional(layers.LSTM(16, return_sequences=True, dropout=0.2, recurrent_dropout=0.2))
    bi.maybe_build((None, 12, 8))
    x = np.random.default_rng(0).standard_normal((6, 12, 8)).astype(np.float32)
    results = []
    for conc in (False, True):
        monkeypatch.setattr(R, "_CONCURRENT_MIN_WORK", 0 if conc else float("inf"))
        monkeypatch.setattr(R, "_CONCURRENT_MAX_STEP_WORK", float("inf"))
        bi.set_rng(3)
        bi.zero_grads()
        with fastrnn.num_threads(2):
            y, ctx = bi.forward(x, training=training)
            assert ctx[-1] is conc
            dx = bi.backward(ctx, np.ones_like(y))
        results.append((y, dx, {n: g.copy() for n, g in bi.grads.items()}))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    for n in results[0][2]:
        np.testing.assert_array_equal(results[0][2][n], results[1][2][n])


def test_bidirectional_concurrency_rule():
    """The rule measured on a 2-core machine (see recurrent.py): one direction after the
    other for large per-step products, two threads for mid-sized ones, none for tiny calls."""
    import fastrnn

    def decide(cell, B, T, H, training, threads=2):
        bi = layers.Bidirectional(cell(H))
        bi.maybe_build((None, T, H))
        c = R._Call()
        c.B, c.T, c.training, c.x = B, T, training, np.zeros((B, 1, H), np.float32)
        with fastrnn.num_threads(threads):
            return bi._concurrent(c)

    assert not decide(layers.LSTM, 32, 100, 256, False)     # B=32 T=100 H=256: sequential
    assert not decide(layers.LSTM, 32, 100, 256, True)
    assert not decide(layers.GRU, 32, 100, 256, True)
    assert decide(layers.LSTM, 32, 100, 128, False)         # mid-sized: concurrent
    assert decide(layers.GRU, 32, 100, 64, True)
    assert decide(layers.LSTM, 1, 100, 256, True)           # B=1: only training gains
    assert not decide(layers.LSTM, 1, 100, 256, False)
    assert not decide(layers.LSTM, 8, 50, 32, True)         # too little work for a thread start
    assert not decide(layers.LSTM, 32, 100, 128, False, threads=1)


def test_eager_call_with_initial_state():
    layer = layers.LSTM(4, return_sequences=True, dtype="float64")
    x = x_data()
    h0, c0 = np.full((B, 4), 0.1), np.full((B, 4), -0.2)
    y = layer(x, initial_state=[h0, c0])
    assert layer.built and y.shape == (B, T, 4)
    np.testing.assert_array_equal(y, layer.forward([x, h0, c0])[0])
    assert not np.allclose(y, layer(x))
    with pytest.raises(ValueError, match="either in the inputs list or as initial_state"):
        layer([x, h0, c0], initial_state=[h0, c0])
    bi = layers.Bidirectional(layers.GRU(3, dtype="float64"))
    out = bi(x, initial_state=[np.zeros((B, 3)), np.ones((B, 3))])
    assert out.shape == (B, 6)
    with pytest.raises(ValueError, match="initial_state expected 2 arrays"):
        bi(x, initial_state=[np.zeros((B, 3))])


# ---------------------------------------------------------------------------
# validation and configs


def test_bad_constructor_arguments():
    cases = [
        (lambda: layers.LSTM(0), ValueError, "units expected a positive int, got 0"),
        (lambda: layers.GRU("8"), ValueError, "units expected a positive int, got '8'"),
        (lambda: layers.SimpleRNN(3, activation="sigmoid"), ValueError,
         "activation expected 'tanh' or 'relu' .*got 'sigmoid'"),
        (lambda: layers.GRU(3, recurrent_activation="hard_sigmoid"), ValueError,
         "recurrent_activation expected 'sigmoid'.*got 'hard_sigmoid'"),
        (lambda: layers.LSTM(3, dropout=1.0), ValueError, r"dropout expected a number in \[0, 1\), got 1.0"),
        (lambda: layers.LSTM(3, recurrent_dropout=-0.1), ValueError, "recurrent_dropout expected .*got -0.1"),
        (lambda: layers.LSTM(3, proj_units=0), ValueError, "proj_units expected a positive int, got 0"),
        (lambda: layers.LSTM(3, peepholes="yes"), TypeError, "peepholes expected a bool, got 'yes'"),
        (lambda: layers.GRU(3, return_sequences=1), TypeError, "return_sequences expected a bool, got 1"),
        (lambda: layers.GRU(3, seed=-1), ValueError, "seed expected a non-negative int or None, got -1"),
        (lambda: layers.LSTM(3, kernel_initializer="nope"), ValueError, "kernel_initializer"),
        (lambda: layers.Bidirectional(layers.Dense(3)), TypeError,
         "layer expected a fastrnn recurrent layer .*got Dense"),
        (lambda: layers.Bidirectional(layers.LSTM(3), merge_mode="max"), ValueError,
         "merge_mode expected .*got 'max'"),
        (lambda: layers.Bidirectional(layers.LSTM(3), backward_layer=layers.LSTM(3)), ValueError,
         "backward_layer expected go_backwards=True .*got False"),
        (lambda: layers.Bidirectional(layers.LSTM(3), backward_layer=layers.LSTM(3, go_backwards=True,
                                                                                  return_sequences=True)),
         ValueError, "backward_layer expected return_sequences=False .*got True"),
    ]
    for make_layer, exc, pattern in cases:
        with pytest.raises(exc, match=pattern):
            make_layer()


def test_bad_inputs():
    layer = make("lstm", return_sequences=True)
    x = x_data()
    cases = [
        (lambda: layer.forward(x[0]), ValueError, r"inputs expected 3 dimensions .*got shape \(5, 3\)"),
        (lambda: layer.forward(x[..., :2]), ValueError, r"inputs expected 3 features .*got shape \(3, 5, 2\)"),
        (lambda: layer.forward(x.astype(str)), TypeError, "inputs expected a real-valued array"),
        (lambda: layer.forward([x, np.zeros((B, 4))]), ValueError, r"initial_state expected 2 arrays \(h, c\), got 1"),
        (lambda: layer.forward([x, np.zeros((B, 5)), np.zeros((B, 4))]), ValueError,
         r"initial_state\[0\] \(h\) expected shape \(3, 4\), got \(3, 5\)"),
        (lambda: layer.forward(x, mask=np.ones((B, T + 1), bool)), ValueError,
         r"mask expected shape \(3, 5\), got \(3, 6\)"),
        (lambda: layer.forward(x, mask=np.ones((B, T), np.float32)), TypeError, "mask expected a bool array"),
        (lambda: layer.backward(layer.forward(x, training=True)[1], np.ones((B, T, 5))), ValueError,
         r"d_outputs expected shape \(3, 5, 4\), got \(3, 5, 5\)"),
        (lambda: layers.GRU(3).forward(x), ValueError, "not built"),
        (lambda: layers.GRU(3).maybe_build((None, 5)), ValueError, "input_shape expected 3 dimensions"),
        (lambda: layers.GRU(3).maybe_build((None, 5, None)), ValueError, "features.* must be known"),
        (lambda: make("gru").reset_states([np.zeros((2, 4))]), ValueError, "needs stateful=True"),
        (lambda: make("lstm", stateful=True).reset_states([np.zeros((2, 4))]), ValueError,
         r"states expected 2 arrays \(h, c\), got 1"),
        (lambda: make("lstm", stateful=True).reset_states([np.zeros((2, 4)), np.zeros((2, 5))]), ValueError,
         r"states\[1\] \(c\) expected shape \(2, 4\), got \(2, 5\)"),
    ]
    for fn, exc, pattern in cases:
        with pytest.raises(exc, match=pattern):
            fn()
    layer.set_rng(np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng expected a numpy.random.Generator or an int seed, got str"):
        layer.set_rng("x")


LAYER_MAKERS = [
    lambda: layers.SimpleRNN(3, activation="relu", return_sequences=True, go_backwards=True, seed=4,
                             dropout=0.1, kernel_regularizer="l2"),
    lambda: layers.GRU(3, reset_after=False, return_state=True, stateful=True, use_bias=False),
    lambda: layers.LSTM(5, peepholes=True, proj_units=2, unit_forget_bias=False, recurrent_dropout=0.2,
                        bias_initializer="ones", dtype="float64"),
    lambda: layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode="ave"),
    lambda: layers.Bidirectional(layers.GRU(3, return_state=True), merge_mode=None,
                                 backward_layer=layers.GRU(3, return_state=True, go_backwards=True, name="back")),
]


@pytest.mark.parametrize("make_layer", LAYER_MAKERS)
def test_config_roundtrip(make_layer):
    layer = make_layer()
    layer.maybe_build((None, T, I))
    cfg = json.loads(json.dumps(layers.serialize(layer)))
    same = layers.deserialize(cfg)
    assert type(same) is type(layer)
    assert same.get_config() == layer.get_config()
    same.maybe_build((None, T, I))
    same.set_weights(layer.get_weights())
    x = x_data(dtype=layer.dtype)
    for a, b in zip(_as_list(layer.forward(x)[0]), _as_list(same.forward(x)[0])):
        np.testing.assert_array_equal(a, b)


def test_registry_names():
    for n in ("SimpleRNN", "GRU", "LSTM", "Bidirectional"):
        assert n in layers.registered_names()
        assert getattr(layers, n) is layers.get(n)


# ---------------------------------------------------------------------------
# Keras parity (skipped when keras is not importable)


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def _np(t):
    import keras as k
    return np.asarray(k.ops.convert_to_numpy(t))


KERAS_CELLS = [("SimpleRNN", {}), ("SimpleRNN", {"activation": "relu"}), ("GRU", {}),
               ("GRU", {"reset_after": False}), ("LSTM", {})]
MASKS32 = {"none": None, "right": RIGHT_PADDED, "general": GENERAL}


def _keras_pair(keras, name, kw, seed=0, **opts):
    ours = getattr(layers, name)(5, bias_initializer="random_normal", **kw, **opts)
    ours.init_rng = np.random.default_rng(seed)
    ours.maybe_build((None, T, I))
    theirs = getattr(keras.layers, name)(5, **kw, **opts)
    theirs.build((None, T, I))
    assert [tuple(w.shape) for w in theirs.get_weights()] == [w.shape for w in ours.get_weights()]
    assert [w.path.split("/")[-1] for w in theirs.weights] == ours.weight_names()
    theirs.set_weights(ours.get_weights())
    return ours, theirs


@pytest.mark.parametrize("name,kw", KERAS_CELLS)
@pytest.mark.parametrize("mask", list(MASKS32))
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_keras_outputs_and_states(keras, name, kw, mask, return_sequences, go_backwards):
    ours, theirs = _keras_pair(keras, name, kw, return_sequences=return_sequences, return_state=True,
                               go_backwards=go_backwards)
    x = x_data(dtype=np.float32)
    m = MASKS32[mask]
    got = ours.forward(x, mask=m)[0]
    want = [_np(t) for t in theirs(x, mask=m)]
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    km = theirs.compute_mask(x, m)
    om = ours.compute_mask(x, m)
    assert len(km) == len(om)
    for a, b in zip(om, km):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a, _np(b))


@pytest.mark.parametrize("name,kw", KERAS_CELLS)
def test_keras_initial_state(keras, name, kw):
    ours, theirs = _keras_pair(keras, name, kw, seed=1, return_sequences=True)
    x = x_data(dtype=np.float32)
    states = [s.astype(np.float32) for s in states_for(ours, batch=B)]
    got = ours(x, initial_state=states)
    want = _np(theirs(x, initial_state=states))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_keras_default_weights_load(keras):
    """Keras's own initial weights (orthogonal, unit forget bias) load and give the same outputs."""
    theirs = keras.layers.LSTM(6, return_sequences=True)
    theirs.build((None, T, I))
    ours = layers.LSTM(6, return_sequences=True)
    ours.maybe_build((None, T, I))
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours.params["bias"], theirs.get_weights()[2])
    x = x_data(dtype=np.float32)
    np.testing.assert_allclose(ours(x), _np(theirs(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("name", ["LSTM", "GRU", "SimpleRNN"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_keras_bidirectional(keras, merge_mode, name, return_sequences):
    inner = getattr(layers, name)(4, return_sequences=return_sequences, return_state=True,
                                  bias_initializer="random_normal")
    ours = layers.Bidirectional(inner, merge_mode=merge_mode)
    ours.init_rng = np.random.default_rng(2)
    ours.maybe_build((None, T, I))
    theirs = keras.layers.Bidirectional(getattr(keras.layers, name)(4, return_sequences=return_sequences,
                                                                     return_state=True), merge_mode=merge_mode)
    theirs.build((None, T, I))
    assert [tuple(w.shape) for w in theirs.get_weights()] == [w.shape for w in ours.get_weights()]
    paths = [w.path.split("/") for w in theirs.weights]      # .../forward_lstm_3/lstm_cell/kernel
    assert [p[-3].split("_")[0] + "/" + p[-1] for p in paths] == ours.weight_names()
    theirs.set_weights(ours.get_weights())
    x = x_data(dtype=np.float32)
    for m in (None, RIGHT_PADDED, GENERAL):
        got = ours.forward(x, mask=m)[0]
        want = [_np(t) for t in theirs(x, mask=m)]
        assert len(got) == len(want)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    n = len(ours.forward_layer.state_size)
    states = [np.random.default_rng(k).standard_normal((B, 4)).astype(np.float32) for k in range(2 * n)]
    got = ours(x, initial_state=states)
    want = [_np(t) for t in theirs(x, initial_state=states)]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# PyTorch parity (skipped when torch is not importable)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _torch_pair(torch, kind, H=5, P=None, bidirectional=False, seed=0):
    """A torch module and the fastrnn layer with the same weights (float64)."""
    torch.manual_seed(seed)
    if kind == "lstm":
        mod = torch.nn.LSTM(I, H, batch_first=True, proj_size=P or 0, bidirectional=bidirectional).double()
        inner = layers.LSTM(H, proj_units=P, return_sequences=True, return_state=True, dtype="float64")
    elif kind == "gru":
        mod = torch.nn.GRU(I, H, batch_first=True, bidirectional=bidirectional).double()
        inner = layers.GRU(H, return_sequences=True, return_state=True, dtype="float64")
    else:
        mod = torch.nn.RNN(I, H, nonlinearity=kind.split("_")[1], batch_first=True,
                           bidirectional=bidirectional).double()
        inner = layers.SimpleRNN(H, activation=kind.split("_")[1], return_sequences=True,
                                 return_state=True, dtype="float64")
    layer = layers.Bidirectional(inner) if bidirectional else inner
    layer.maybe_build((None, T, I))
    suffixes = ["", "_reverse"] if bidirectional else [""]
    weights = []
    for sfx in suffixes:
        weights += _keras_from_torch(mod, kind, sfx, H)
    layer.set_weights(weights)
    return mod, layer


def _gru_perm(a, H):
    """torch GRU r, z, n blocks (first axis) -> Keras z, r, h."""
    return np.concatenate([a[H:2 * H], a[:H], a[2 * H:]])


def _keras_from_torch(mod, kind, sfx, H):
    p = {n: getattr(mod, n + "_l0" + sfx).detach().numpy() for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    if kind == "gru":
        return [_gru_perm(p["weight_ih"], H).T, _gru_perm(p["weight_hh"], H).T,
                np.stack([_gru_perm(p["bias_ih"], H), _gru_perm(p["bias_hh"], H)])]
    out = [p["weight_ih"].T, p["weight_hh"].T, p["bias_ih"] + p["bias_hh"]]
    if kind == "lstm" and mod.proj_size:
        out.append(getattr(mod, "weight_hr_l0" + sfx).detach().numpy().T)
    return out


def _torch_grads_as_keras(mod, kind, sfx, H):
    g = {n: getattr(mod, n + "_l0" + sfx).grad.numpy() for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    if kind == "gru":
        return [_gru_perm(g["weight_ih"], H).T, _gru_perm(g["weight_hh"], H).T,
                np.stack([_gru_perm(g["bias_ih"], H), _gru_perm(g["bias_hh"], H)])]
    out = [g["weight_ih"].T, g["weight_hh"].T, g["bias_ih"]]
    if kind == "lstm" and mod.proj_size:
        out.append(getattr(mod, "weight_hr_l0" + sfx).grad.numpy().T)
    return out


@pytest.mark.parametrize("kind,P", [("rnn_tanh", None), ("rnn_relu", None), ("gru", None), ("lstm", None),
                                    ("lstm", 3)])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_torch_outputs_and_weight_gradients(torch, kind, P, bidirectional):
    H = 5
    mod, layer = _torch_pair(torch, kind, H, P, bidirectional)
    x = x_data()
    out, ctx = layer.forward(x, training=True)
    y = out[0]
    xt = torch.tensor(x)
    yt, hn = mod(xt)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    h_torch = (hn[0] if kind == "lstm" else hn).detach().numpy()
    per_dir = 2 if kind == "lstm" else 1
    for d in range(2 if bidirectional else 1):
        np.testing.assert_allclose(out[1 + d * per_dir], h_torch[d], rtol=1e-10, atol=1e-12)
    wy = np.random.default_rng(3).standard_normal(y.shape)
    (yt * torch.tensor(wy)).sum().backward()
    layer.zero_grads()
    d_outputs = [wy] + [None] * (len(out) - 1)
    layer.backward(ctx, d_outputs)
    want = []
    for sfx in (["", "_reverse"] if bidirectional else [""]):
        want += _torch_grads_as_keras(mod, kind, sfx, H)
    got = [layer.grads[n] for n in layer.weight_names()]
    assert len(got) == len(want)
    for name, a, b in zip(layer.weight_names(), got, want):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11, err_msg=name)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_torch_packed_sequences_match_a_right_padded_mask(torch, kind):
    mod, layer = _torch_pair(torch, kind, bidirectional=True, seed=4)
    x = x_data()
    lengths = RIGHT_PADDED.sum(1)
    out = layer.forward(x, mask=RIGHT_PADDED)[0]
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.tensor(x), torch.tensor(lengths), batch_first=True,
                                                     enforce_sorted=False)
    yp, hn = mod(packed)
    yt, _ = torch.nn.utils.rnn.pad_packed_sequence(yp, batch_first=True, total_length=T)
    np.testing.assert_allclose(out[0], yt.detach().numpy(), rtol=1e-10, atol=1e-12)   # zeros at padding
    h_torch = (hn[0] if kind == "lstm" else hn).detach().numpy()
    per_dir = 2 if kind == "lstm" else 1
    np.testing.assert_allclose(out[1], h_torch[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out[1 + per_dir], h_torch[1], rtol=1e-10, atol=1e-12)
