"""Models: the symbolic graph, Sequential/functional construction, eager calls,
weights order, summary, masks, and the model-level backward against central
finite differences in float64 (every weight of every layer, through masks,
dropout with fixed seeds, stateful layers, shared layers and states passed
between layers)."""
import numpy as np
import pytest

import fastrnn as fr
from fastrnn import layers, losses, optimizers, regularizers
from fastrnn.models import graph

F64 = "float64"


# ---------------------------------------------------------------------------
# model-level finite differences

def model_gradcheck(model, x, y, sample_weight=None, prepare=None, eps=1e-6, rtol=1e-6, atol=1e-9):
    """Check the gradient of the model's total training loss (losses, loss weights,
    regularization) w.r.t. every trainable weight against central differences.

    `prepare()` runs before every evaluation (fixed dropout masks, stateful states).
    Returns {layer/weight: relative error}.
    """
    xs = model._standardize_x(x)
    model._ensure_built(xs)
    ys = model._standardize_targets(y)
    sws = model._standardize_weights(sample_weight)

    def total_loss():
        if prepare is not None:
            prepare()
        return model._loss_and_grads(xs, ys, sws, training=True, need_grads=False)[0]

    if prepare is not None:
        prepare()
    model._loss_and_grads(xs, ys, sws, training=True, need_grads=True)
    analytic = {}
    for layer in model.layers:
        for n in layer._trainable_names if layer.trainable else []:
            analytic[(layer, n)] = layer.grads[n].copy()
    assert analytic, "the model has no trainable weights"
    errors = {}
    for (layer, n), g in analytic.items():
        p = layer.params[n]
        fd = np.zeros_like(g)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + eps
            model._weights_changed()
            f_plus = total_loss()
            p[idx] = old - eps
            model._weights_changed()
            f_minus = total_loss()
            p[idx] = old
            model._weights_changed()
            fd[idx] = (f_plus - f_minus) / (2 * eps)
        scale = max(np.linalg.norm(g), np.linalg.norm(fd))
        err = np.linalg.norm(g - fd)
        errors[f"{layer.name}/{n}"] = err / max(scale, 1e-300)
        assert err <= rtol * scale + atol, (f"{layer.name}/{n}: analytic and finite-difference gradients differ: "
                                            f"|diff| {err:.3e}, |grad| {scale:.3e}\nanalytic {g}\nnumeric {fd}")
    return errors


def _ids(rng, B, T, vocab, lengths=None, hole=None):
    """Integer ids in [1, vocab), zero-padded after `lengths`; `hole` (b, t) puts a 0 inside a row."""
    ids = rng.integers(1, vocab, (B, T))
    if lengths is not None:
        for b, n in enumerate(lengths):
            ids[b, n:] = 0
    if hole is not None:
        ids[hole] = 0
    return ids


def test_gradcheck_sequential_embedding_dense():
    rng = np.random.default_rng(0)
    model = fr.Sequential([
        layers.Embedding(6, 3, dtype=F64),
        layers.Flatten(dtype=F64),
        layers.Dense(5, activation="tanh", kernel_regularizer=regularizers.L2(0.01), dtype=F64),
        layers.Dropout(0.4, dtype=F64),
        layers.Dense(3, bias_regularizer=regularizers.L1(0.02), dtype=F64),
    ], seed=1)
    model.compile("sgd", losses.SparseCategoricalCrossentropy(from_logits=True))
    x = _ids(rng, 5, 4, 6)
    y = rng.integers(0, 3, 5)
    model.build((None, 4))
    # the bias starts at zero, where L1's derivative jumps: move it off
    model.layers[-1].params["bias"][:] = rng.uniform(-0.5, 0.5, 3)
    model_gradcheck(model, x, y, sample_weight=rng.uniform(0.5, 2, 5),
                    prepare=lambda: model._seed_masks(7, 0))


def test_gradcheck_lstm_bidirectional_gru_with_masks():
    """Embedding(mask_zero) -> LSTM(return_sequences) -> Bidirectional(GRU) -> Dense:
    right-padded rows (lengths), a row with a hole (general step mask), an empty row."""
    rng = np.random.default_rng(1)
    model = fr.Sequential([
        layers.Embedding(7, 3, mask_zero=True, dtype=F64),
        layers.LSTM(4, return_sequences=True, dtype=F64),
        layers.Bidirectional(layers.GRU(3, dtype=F64), dtype=F64),
        layers.Dense(2, dtype=F64),
    ], seed=2)
    model.compile("adam", losses.SparseCategoricalCrossentropy(from_logits=True))
    x = _ids(rng, 4, 6, 7, lengths=[6, 3, 5, 0])
    x_hole = x.copy()
    x_hole[2, 1] = 0
    y = rng.integers(0, 2, 4)
    model_gradcheck(model, x, y)
    model_gradcheck(model, x_hole, y)


def test_gradcheck_per_step_outputs_with_mask_reach_the_loss():
    """SimpleRNN(go_backwards) and LSTM(peepholes, proj) returning sequences: the
    output mask goes to the loss, so padded steps carry no loss and no gradient."""
    rng = np.random.default_rng(2)
    model = fr.Sequential([
        layers.Embedding(5, 3, mask_zero=True, dtype=F64),
        layers.SimpleRNN(3, return_sequences=True, go_backwards=True, dtype=F64),
        layers.LSTM(4, return_sequences=True, peepholes=True, proj_units=2, dtype=F64),
        layers.TimeDistributed(layers.Dense(3, dtype=F64), dtype=F64),
    ], seed=3)
    model.compile("sgd", losses.SparseCategoricalCrossentropy(from_logits=True))
    x = _ids(rng, 3, 5, 5, lengths=[5, 2, 4])
    y = rng.integers(0, 3, (3, 5))
    y[x == 0] = 99                       # out-of-range labels at padded steps: the mask hides them
    model_gradcheck(model, x, y)


def test_gradcheck_dropout_and_recurrent_dropout_with_fixed_seed():
    rng = np.random.default_rng(3)
    model = fr.Sequential([
        layers.GRU(4, return_sequences=True, reset_after=False, dropout=0.3, recurrent_dropout=0.3, dtype=F64),
        layers.Dropout(0.2, noise_shape=(None, 1, 4), dtype=F64),
        layers.LSTM(3, dropout=0.25, recurrent_dropout=0.4, dtype=F64),
        layers.Dense(2, dtype=F64),
    ], seed=4)
    model.compile("sgd", "mse")
    x = rng.standard_normal((4, 5, 3))
    y = rng.standard_normal((4, 2))
    model.build((None, 5, 3))

    def prepare():
        model._seed_masks(11, 3)

    model_gradcheck(model, x, y, prepare=prepare)
    # the masks really are active: another seed changes the loss
    xs, ys, sws = model._standardize_x(x), model._standardize_targets(y), model._standardize_weights(None)
    model._seed_masks(11, 3)
    a = model._loss_and_grads(xs, ys, sws, need_grads=False)[0]
    model._seed_masks(12, 3)
    b = model._loss_and_grads(xs, ys, sws, need_grads=False)[0]
    assert a != b


def test_gradcheck_stateful():
    """A stateful LSTM: the carried states are constants of the batch (truncated BPTT)."""
    rng = np.random.default_rng(4)
    lstm = layers.LSTM(3, stateful=True, return_sequences=True, dtype=F64)
    model = fr.Sequential([fr.Input((4, 2), batch_size=2), lstm, layers.Dense(1, dtype=F64)], seed=5)
    model.compile("sgd", "mse")
    h0, c0 = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    x = rng.standard_normal((2, 4, 2))
    y = rng.standard_normal((2, 4, 1))
    model_gradcheck(model, x, y, prepare=lambda: lstm.reset_states([h0, c0]))
    # the states are carried: two calls differ, reset_states() makes them equal again
    model.reset_states()
    a = model.predict(x)
    b = model.predict(x)
    model.reset_states()
    c = model.predict(x)
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, c)


def _encoder_decoder(seed=6, dtype=F64):
    """Encoder LSTM -> states -> decoder LSTM (initial_state); a shared Embedding and a shared Dense;
    two outputs (sequence logits, and a regression head on the encoder's h)."""
    enc_in = fr.Input((None,), dtype="int64", name="enc_in")
    dec_in = fr.Input((None,), dtype="int64", name="dec_in")
    embed = layers.Embedding(8, 3, mask_zero=True, dtype=dtype, name="shared_embed")
    enc_out, h, c = layers.LSTM(4, return_state=True, dtype=dtype, name="encoder")(embed(enc_in))
    dec = layers.LSTM(4, return_sequences=True, dtype=dtype, name="decoder")(embed(dec_in), initial_state=[h, c])
    shared = layers.Dense(4, activation="tanh", dtype=dtype, name="shared_dense")
    dec_feat = shared(dec)
    enc_feat = shared(enc_out)
    logits = layers.Dense(5, dtype=dtype, name="logits")(layers.Concatenate(dtype=dtype)([dec_feat, dec]))
    value = layers.Dense(1, dtype=dtype, name="value")(layers.Add(dtype=dtype)([enc_feat, h]))
    return fr.Model([enc_in, dec_in], [logits, value], seed=seed)


def test_gradcheck_functional_encoder_decoder_shared_layers():
    rng = np.random.default_rng(5)
    model = _encoder_decoder()
    model.compile("sgd", [losses.SparseCategoricalCrossentropy(from_logits=True), "mse"], loss_weights=[1.0, 0.5])
    enc = _ids(rng, 3, 5, 8, lengths=[5, 4, 2])
    dec = _ids(rng, 3, 4, 8, lengths=[4, 3, 4])
    y_seq = rng.integers(0, 5, (3, 4))
    y_val = rng.standard_normal((3, 1))
    errors = model_gradcheck(model, [enc, dec], [y_seq, y_val])
    # every layer with weights was checked, the shared ones once
    assert set(errors) >= {"shared_embed/embeddings", "encoder/kernel", "decoder/recurrent_kernel",
                           "shared_dense/kernel", "logits/kernel", "value/bias"}
    # a shared layer appears once in layers and its weights once in the model's weights
    assert [l.name for l in model.layers].count("shared_dense") == 1
    assert sum(w is model.get_layer("shared_dense").params["kernel"] for w in model.weights) == 1


def test_gradcheck_return_state_outputs_and_sample_weight():
    """A model output that is a state (return_state) and per-step sample weights."""
    rng = np.random.default_rng(6)
    inp = fr.Input((4, 2))
    seq, h = layers.GRU(3, return_sequences=True, return_state=True, dtype=F64)(inp)
    out = layers.Dense(2, dtype=F64)(seq)
    model = fr.Model(inp, [out, h])
    model.compile("sgd", ["mse", "mae"], loss_weights=[1.0, 0.3])
    x = rng.standard_normal((3, 4, 2))
    model_gradcheck(model, x, [rng.standard_normal((3, 4, 2)), rng.standard_normal((3, 3))],
                    sample_weight=[rng.uniform(0, 2, (3, 4)), None])


def test_gradcheck_can_fail():
    """The checker catches a wrong backward (a layer whose gradient is off by 1%)."""

    class Wrong(layers.Dense):
        def backward(self, ctx, d_outputs):
            dx = super().backward(ctx, d_outputs)
            self.grads["kernel"] *= 1.01
            return dx

    rng = np.random.default_rng(7)
    model = fr.Sequential([Wrong(2, dtype=F64)])
    model.compile("sgd", "mse")
    with pytest.raises(AssertionError, match="differ"):
        model_gradcheck(model, rng.standard_normal((3, 2)), rng.standard_normal((3, 2)))


# ---------------------------------------------------------------------------
# symbolic graph

def test_input_and_symbolic_shapes():
    x = fr.Input((None, 8), name="seq")
    assert isinstance(x, graph.SymbolicTensor) and x.shape == (None, None, 8) and x.dtype == np.float32
    y, h, c = layers.LSTM(5, return_sequences=True, return_state=True)(x)
    assert y.shape == (None, None, 5) and h.shape == (None, 5) and c.shape == (None, 5)
    z = layers.Dense(3)(y)
    assert z.shape == (None, None, 3) and z.node.layer.built
    b = fr.Input((4,), batch_size=7)
    assert b.shape == (7, 4)
    with pytest.raises(TypeError, match="symbolic"):
        np.asarray(x)


def test_call_layer_errors():
    x = fr.Input((3,))
    with pytest.raises(TypeError, match="mix"):
        layers.Concatenate()([x, np.zeros((2, 3))])
    with pytest.raises(TypeError, match="unexpected keyword"):
        layers.Dense(2)(x, foo=1)
    d = layers.Dense(2)
    d(x)
    with pytest.raises(ValueError, match="built for input shape"):
        d(fr.Input((4,)))
    with pytest.raises(ValueError, match="not both"):
        layers.LSTM(2)([fr.Input((3, 1)), fr.Input((2,))], initial_state=[fr.Input((2,))])


def test_model_construction_errors():
    a, b = fr.Input((3,)), fr.Input((3,))
    out = layers.Add()([a, b])
    with pytest.raises(ValueError, match="disconnected"):
        fr.Model(a, out)
    with pytest.raises(TypeError, match="fastrnn.Input"):
        fr.Model(layers.Dense(2)(a), out)
    with pytest.raises(TypeError, match="required"):
        fr.Model()
    d1, d2 = layers.Dense(2, name="same_name_x"), layers.Dense(2, name="same_name_x")
    with pytest.raises(ValueError, match="unique"):
        fr.Model(a, [d1(a), d2(a)])


def test_functional_model_runs_like_its_layers():
    rng = np.random.default_rng(8)
    inp = fr.Input((5, 3))
    lstm, dense = layers.LSTM(4, return_sequences=True), layers.Dense(2)
    model = fr.Model(inp, dense(lstm(inp)))
    x = rng.standard_normal((6, 5, 3)).astype(np.float32)
    expected = dense(lstm(x))
    np.testing.assert_array_equal(model(x), expected)
    np.testing.assert_array_equal(model.predict(x, batch_size=4), expected)
    np.testing.assert_array_equal(model.predict_on_batch(x), expected)
    with pytest.raises(ValueError, match="expected shape"):
        model(x[:, :, :2])


def test_topological_order_and_layers():
    a = fr.Input((2,), name="in_a")
    d1, d2, d3 = layers.Dense(2, name="t_d1"), layers.Dense(2, name="t_d2"), layers.Dense(2, name="t_d3")
    h1 = d1(a)
    h2 = d2(h1)
    out = d3(layers.Add(name="t_add")([h1, h2]))
    model = fr.Model(a, out)
    names = [l.name for l in model.layers]
    assert names == ["in_a", "t_d1", "t_d2", "t_add", "t_d3"]
    assert model.get_layer("t_d2") is d2 and model.get_layer(index=1) is d1
    with pytest.raises(ValueError, match="no layer named"):
        model.get_layer("nope")


# ---------------------------------------------------------------------------
# Sequential

def test_sequential_builds_lazily_from_data():
    model = fr.Sequential([layers.LSTM(3), layers.Dense(2)])
    assert not model.built and model.weights == []
    with pytest.raises(ValueError, match="not built"):
        model.summary()
    x = np.zeros((4, 6, 5), np.float32)
    assert model(x).shape == (4, 2)
    assert model.built and model.input_shape == (None, 6, 5) and model.output_shape == (None, 2)
    assert [w.shape for w in model.get_weights()] == [(5, 12), (3, 12), (12,), (3, 2), (2,)]


def test_sequential_input_shape_and_input_first():
    m1 = fr.Sequential([layers.Dense(4, input_shape=(3,)), layers.Dense(1)])
    assert m1.built and m1.count_params() == 3 * 4 + 4 + 4 + 1
    m2 = fr.Sequential()
    m2.add(fr.Input((None, 3)))
    m2.add(layers.GRU(2))
    assert m2.built and m2.output_shape == (None, 2)
    m2.add(layers.Dense(1))
    assert m2.output_shape == (None, 1)
    assert m2.pop().units == 1 and m2.output_shape == (None, 2)
    m3 = fr.Sequential()
    m3.build((None, 7))                  # no layers yet
    m3.add(layers.Dense(2))
    assert m3.output_shape == (None, 2)


def test_sequential_errors():
    d = layers.Dense(2)
    with pytest.raises(ValueError, match="already"):
        fr.Sequential([d, d])
    with pytest.raises(ValueError, match="exactly one"):
        fr.Sequential([fr.Input((3, 2)), layers.LSTM(2, return_state=True)])
    with pytest.raises(TypeError, match="Layer"):
        fr.Sequential([object()])
    with pytest.raises(ValueError, match="first"):
        fr.Sequential([layers.Dense(2), fr.Input((3,))])


# ---------------------------------------------------------------------------
# weights

def test_get_set_weights_keras_order():
    model = fr.Sequential([layers.Embedding(10, 4), layers.Bidirectional(layers.LSTM(3)), layers.Dense(2)])
    model.build((None, 5))
    expected = []
    for layer in model.layers:
        expected += layer.get_weights()
    got = model.get_weights()
    assert [w.shape for w in got] == [(10, 4), (4, 12), (3, 12), (12,), (4, 12), (3, 12), (12,), (6, 2), (2,)]
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    assert model.count_params() == sum(w.size for w in got)
    assert len(model.trainable_weights) == len(got)
    new = [np.full_like(w, i) for i, w in enumerate(got)]
    model.set_weights(new)
    for a, b in zip(model.get_weights(), new):
        np.testing.assert_array_equal(a, b)
    assert model.get_weights()[0] is not model.layers[0].params["embeddings"]    # copies
    with pytest.raises(ValueError, match="expected 9 arrays"):
        model.set_weights(new[:-1])
    bad = list(new)
    bad[3] = np.zeros(5)
    with pytest.raises(ValueError, match="weights\\[3\\]"):
        model.set_weights(bad)
    for a, b in zip(model.get_weights(), new):           # nothing changed
        np.testing.assert_array_equal(a, b)


def test_non_trainable_layer_is_not_updated():
    rng = np.random.default_rng(9)
    frozen = layers.Dense(3, trainable=False)
    model = fr.Sequential([frozen, layers.Dense(1)])
    model.compile(optimizers.SGD(0.1), "mse")
    x, y = rng.standard_normal((8, 2)).astype(np.float32), rng.standard_normal((8, 1)).astype(np.float32)
    model.build((None, 2))
    before = frozen.get_weights()
    model.fit(x, y, epochs=2, verbose=0)
    for a, b in zip(frozen.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) == 2


# ---------------------------------------------------------------------------
# masks

def test_output_mask_reaches_loss_and_metrics():
    rng = np.random.default_rng(10)
    model = fr.Sequential([layers.Embedding(6, 3, mask_zero=True), layers.LSTM(4, return_sequences=True),
                           layers.Dense(3)])
    model.compile("sgd", losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    x = _ids(rng, 4, 5, 6, lengths=[5, 2, 3, 1])
    y = rng.integers(0, 3, (4, 5))
    loss, acc = model.evaluate(x, y, verbose=0)
    logits = model.predict(x)
    keep = x != 0
    ref = losses.SparseCategoricalCrossentropy(from_logits=True)(y[keep], logits[keep])
    np.testing.assert_allclose(loss, ref, rtol=1e-6)
    np.testing.assert_allclose(acc, np.mean(np.argmax(logits, -1)[keep] == y[keep]))
    y2 = y.copy()
    y2[~keep] = 77                       # garbage at masked steps changes nothing
    assert model.evaluate(x, y2, verbose=0) == [loss, acc]


def test_masks_through_merge_layers():
    """Concatenate of two masked sequences keeps the (OR) mask to the output."""
    ids = fr.Input((4,), dtype="int64")
    e1 = layers.Embedding(5, 2, mask_zero=True)(ids)
    e2 = layers.Embedding(5, 3, mask_zero=True)(ids)
    out = layers.Dense(1)(layers.Concatenate()([e1, e2]))
    model = fr.Model(ids, out)
    x = np.array([[1, 2, 0, 0], [3, 0, 0, 0]])
    _, masks, _ = model._forward(model._standardize_x(x))
    np.testing.assert_array_equal(masks[0], x != 0)


# ---------------------------------------------------------------------------
# summary

def test_summary_sequential(capsys):
    model = fr.Sequential([layers.Embedding(100, 16, name="emb"), layers.LSTM(32, name="rnn"),
                           layers.Dense(10, name="out")], name="clf")
    model.build((None, 20))
    model.summary()
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == 'Model: "clf"'
    assert "Layer (type)" in text and "Output Shape" in text and "Param #" in text
    for name, kind, shape, params in (("emb", "Embedding", "(None, 20, 16)", "1,600"),
                                      ("rnn", "LSTM", "(None, 32)", f"{4 * 32 * (16 + 32 + 1):,}"),
                                      ("out", "Dense", "(None, 10)", "330")):
        row = next(l for l in lines if l.startswith(f" {name} ({kind})"))
        assert shape in row and row.rstrip().endswith(params), row
    total = 1600 + 4 * 32 * 49 + 330
    assert f"Total params: {total:,}" in text and f"Trainable params: {total:,}" in text
    assert "Non-trainable params: 0" in text
    got = []
    model.summary(print_fn=got.append)
    assert got == [text.rstrip("\n")]


def test_summary_functional_connected_to():
    model = _encoder_decoder(dtype="float32")
    text = []
    model.summary(print_fn=text.append)
    text = text[0]
    assert "Connected to" in text
    assert "enc_in (InputLayer)" in text and "encoder (LSTM)" in text
    assert "encoder[0][1]" in text and "encoder[0][2]" in text      # the states passed to the decoder
    assert "shared_dense[0][0]" in text and "shared_dense[1][0]" in text
    assert f"Total params: {model.count_params():,}" in text


def test_get_config_from_config_round_trip():
    model = _encoder_decoder(dtype="float32")
    cfg = model.get_config()
    import json
    clone = fr.Model.from_config(json.loads(json.dumps(cfg)))
    assert [l.name for l in clone.layers] == [l.name for l in model.layers]
    assert [w.shape for w in clone.get_weights()] == [w.shape for w in model.get_weights()]
    clone.set_weights(model.get_weights())
    rng = np.random.default_rng(0)
    x = [rng.integers(0, 8, (2, 5)), rng.integers(0, 8, (2, 3))]
    for a, b in zip(clone.predict(x), model.predict(x)):
        np.testing.assert_array_equal(a, b)
    seq = fr.Sequential([layers.GRU(3), layers.Dense(1)])
    seq.build((None, 4, 2))
    again = fr.Sequential.from_config(seq.get_config())
    assert again.built and again.input_shape == (None, 4, 2) and again.count_params() == seq.count_params()


def test_sequential_add_that_fails_leaves_the_model_unchanged():
    model = fr.Sequential([fr.Input((3,)), layers.Dense(2)])
    with pytest.raises(ValueError):
        model.add(layers.LSTM(4))                  # needs (batch, time, features)
    assert len(model.layers) == 1 and model.output_shape == (None, 2)
    model.add(layers.Dense(1))
    assert model.output_shape == (None, 1)
