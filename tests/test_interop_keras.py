"""fastrnn.interop.keras: Keras 3 models -> fastrnn (same predictions), weights back to
Keras, and Keras .weights.h5 files. Runs on Keras's TensorFlow or torch backend."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")

import fastrnn as fr  # noqa: E402
from fastrnn import layers  # noqa: E402
from fastrnn.interop.keras import from_keras, load_keras_weights_h5, to_keras_weights  # noqa: E402

L = keras.layers
B, T, F, V = 4, 6, 3, 9
TOL32 = 1e-5
# Keras's torch backend rounds parts of a float64 model (Dense's matmul, masked recurrences)
# through float32 (differences ~1e-8 measured); TensorFlow's stays in float64.
TOL64 = 1e-10 if keras.backend.backend() == "tensorflow" else 1e-6


def _np(t):
    return np.asarray(keras.ops.convert_to_numpy(t))


def randomize(kmodel, seed=0, scale=0.5):
    """Random weights (biases included, so they matter) in the Keras model."""
    rng = np.random.default_rng(seed)
    kmodel.set_weights([(scale * rng.standard_normal(w.shape)).astype(w.dtype) for w in kmodel.get_weights()])


def keras_out(kmodel, x):
    out = kmodel(x, training=False)
    return [_np(o) for o in out] if isinstance(out, (list, tuple)) else _np(out)


def assert_same(got, want, tol=TOL32):
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want)
        for a, b in zip(got, want):
            assert_same(a, b, tol)
        return
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)


def x_float(dtype="float32", seed=1):
    return np.random.default_rng(seed).standard_normal((B, T, F)).astype(dtype)


def ids(padding, seed=2):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, V, (B, T))
    if padding == "right":
        for b, n in enumerate([T, 3, 1, 5]):
            x[b, n:] = 0
    elif padding == "general":
        x[0, 1] = x[1, 0] = x[1, 4] = x[2, 2:4] = 0
        x[3, :] = 0                      # a row with no valid step
    return x.astype("int32")


def convert_and_check(kmodel, x, tol=TOL32, seed=0):
    randomize(kmodel, seed)
    model = from_keras(kmodel)
    want = keras_out(kmodel, x)
    got = model.predict(x, verbose=0) if not isinstance(want, list) else model(x)
    assert_same(got, want, tol)
    return model


CELLS = [("SimpleRNN", {}), ("SimpleRNN", {"activation": "relu"}), ("GRU", {}), ("GRU", {"reset_after": False}),
         ("LSTM", {})]
CELL_IDS = ["rnn_tanh", "rnn_relu", "gru", "gru_v1", "lstm"]


# ---------------------------------------------------------------------------
# Sequential models, each recurrent layer and option

@pytest.mark.parametrize("name,kw", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("opts", [{}, {"return_sequences": True, "go_backwards": True}, {"use_bias": False}],
                         ids=["last", "seq_backwards", "no_bias"])
def test_sequential_cells(name, kw, opts):
    kmodel = keras.Sequential([keras.Input((T, F)), getattr(L, name)(5, **kw, **opts), L.Dense(2)])
    model = convert_and_check(kmodel, x_float())
    assert isinstance(model, fr.Sequential)
    rec = model.layers[0]
    assert type(rec).__name__ == name and rec.use_bias == opts.get("use_bias", True)
    assert rec.activation == kw.get("activation", "tanh")
    if name == "GRU":
        assert rec.reset_after == kw.get("reset_after", True)


@pytest.mark.parametrize("name,kw", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("padding", ["right", "general"])
def test_embedding_mask_zero(name, kw, padding):
    kmodel = keras.Sequential([keras.Input((T,), dtype="int32"), L.Embedding(V, 3, mask_zero=True),
                               getattr(L, name)(4, return_sequences=True, **kw),
                               getattr(L, name)(3, go_backwards=True, **kw), L.Dense(2, activation="tanh")])
    convert_and_check(kmodel, ids(padding))


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_bidirectional_masking_timedistributed(merge_mode, name):
    x = x_float()
    x[1, 4:] = 0.0                 # masked steps
    x[2, 1] = 0.0
    kmodel = keras.Sequential([keras.Input((T, F)), L.Masking(0.0),
                               L.Bidirectional(getattr(L, name)(4, return_sequences=True), merge_mode=merge_mode),
                               L.Dropout(0.3), L.TimeDistributed(L.Dense(3, activation="relu")),
                               L.Bidirectional(L.SimpleRNN(2), merge_mode=merge_mode), L.Dense(1)])
    model = convert_and_check(kmodel, x)
    assert [type(l).__name__ for l in model.layers] == ["Masking", "Bidirectional", "Dropout", "TimeDistributed",
                                                         "Bidirectional", "Dense"]
    assert model.layers[1].merge_mode == merge_mode


def test_float64():
    kmodel = keras.Sequential([keras.Input((T, F), dtype="float64"), L.Masking(dtype="float64"),
                               L.GRU(4, return_sequences=True, reset_after=False, dtype="float64"),
                               L.Bidirectional(L.SimpleRNN(3, return_sequences=True, dtype="float64"),
                                               dtype="float64"),
                               L.LSTM(3, dtype="float64"), L.Dense(2, dtype="float64")])
    x = x_float("float64")
    x[1, 3:] = 0.0
    model = convert_and_check(kmodel, x, tol=TOL64)
    assert all(l.dtype == np.float64 for l in model.layers)


# ---------------------------------------------------------------------------
# functional models

def test_functional_states_and_shared_layers():
    a = keras.Input((T, F), name="a")
    b = keras.Input((T, F), name="b")
    enc = L.LSTM(4, return_sequences=True, return_state=True)
    seq, h, c = enc(a)
    dec = L.LSTM(4, return_sequences=True, go_backwards=True)(b, initial_state=[h, c])
    shared = L.Dense(3, activation="tanh")
    gru_out, gh = L.GRU(3, return_state=True, reset_after=False)(shared(seq))
    merged = L.Concatenate()([shared(dec), L.Add()([shared(seq), seq[:, :, :3]])])
    out = L.Dense(2)(merged)
    kmodel = keras.Model([a, b], [out, gru_out, c])
    x = [x_float(seed=3), x_float(seed=4)]
    randomize(kmodel, 5)
    with pytest.raises(ValueError, match="not a layer"):     # seq[:, :, :3] is a Keras op
        from_keras(kmodel)
    out = L.Dense(2)(L.Concatenate()([shared(dec), L.Add()([shared(seq), L.Dense(3)(seq)])]))
    kmodel = keras.Model([a, b], [out, gru_out, c])
    randomize(kmodel, 5)
    model = from_keras(kmodel)
    assert isinstance(model, fr.Model) and not isinstance(model, fr.Sequential)
    assert_same(model(x), keras_out(kmodel, x))
    assert [l.name for l in model.layers] == [l.name for l in kmodel.layers]


@pytest.mark.parametrize("merge_mode", ["concat", None])
@pytest.mark.parametrize("name", ["SimpleRNN", "GRU", "LSTM"])
def test_functional_bidirectional_return_state(merge_mode, name):
    i = keras.Input((T,), dtype="int32")
    e = L.Embedding(V, 3, mask_zero=True)(i)
    outs = L.Bidirectional(getattr(L, name)(4, return_sequences=True, return_state=True),
                           merge_mode=merge_mode)(e)
    kmodel = keras.Model(i, list(outs))
    randomize(kmodel, 6)
    model = from_keras(kmodel)
    x = ids("general")
    assert_same(model(x), keras_out(kmodel, x))


def test_functional_single_io_predict():
    i = keras.Input((None, F))
    y = L.Dense(1)(L.LSTM(4)(L.Masking()(i)))
    kmodel = keras.Model(i, y)
    model = convert_and_check(kmodel, x_float())
    assert model.input_shape == (None, None, F)


# ---------------------------------------------------------------------------
# back to Keras

def test_to_keras_weights_round_trip_after_training():
    kmodel = keras.Sequential([keras.Input((T,), dtype="int32"), L.Embedding(V, 3, mask_zero=True),
                               L.Bidirectional(L.GRU(4, return_sequences=True)), L.GRU(3, reset_after=False),
                               L.Dense(1)])
    randomize(kmodel, 7)
    model = from_keras(kmodel)
    x = ids("right")
    y = np.random.default_rng(0).standard_normal((B, 1)).astype("float32")
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=2, batch_size=B, verbose=0, seed=0)         # the weights move
    weights = to_keras_weights(model)
    assert not all(np.array_equal(a, b) for a, b in zip(weights, kmodel.get_weights()))
    twin = keras.models.clone_model(kmodel)
    twin.set_weights(weights)
    assert_same(model.predict(x, verbose=0), keras_out(twin, x))
    assert [w.shape for w in weights] == [tuple(w.shape) for w in twin.weights]


def test_to_keras_weights_of_a_fastrnn_model():
    """A model built in fastrnn (Keras's layer order and shapes: GRU z, r, h and its (2, 3H)
    bias, Bidirectional forward then backward) loads into its Keras twin."""
    model = fr.Sequential([fr.Input((T, F)), layers.Bidirectional(layers.GRU(4, return_sequences=True,
                                                                             bias_initializer="random_normal")),
                           layers.LSTM(3, bias_initializer="random_normal"), layers.Dense(2)], seed=3)
    kmodel = keras.Sequential([keras.Input((T, F)), L.Bidirectional(L.GRU(4, return_sequences=True)),
                               L.LSTM(3), L.Dense(2)])
    kmodel.set_weights(to_keras_weights(model))
    x = x_float()
    assert_same(model.predict(x, verbose=0), keras_out(kmodel, x))
    by_name = to_keras_weights(from_keras(kmodel), keras_model=kmodel)
    for a, b in zip(by_name, kmodel.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_to_keras_weights_refuses_fastrnn_only_weights():
    model = fr.Sequential([fr.Input((T, F)), layers.LSTM(3, peepholes=True)])
    with pytest.raises(ValueError, match="peepholes"):
        to_keras_weights(model)


# ---------------------------------------------------------------------------
# .weights.h5

def _h5_models():
    seq = keras.Sequential([keras.Input((T,), dtype="int32"), L.Embedding(V, 3, mask_zero=True),
                            L.Bidirectional(L.LSTM(4, return_sequences=True), merge_mode="sum"),
                            L.TimeDistributed(L.Dense(3)), L.GRU(3, return_sequences=True),
                            L.GRU(2, reset_after=False), L.Dense(2), L.Dense(1)])
    i = keras.Input((T,), dtype="int32")
    s, h = L.SimpleRNN(4, return_sequences=True, return_state=True)(L.Embedding(V, 3, mask_zero=True)(i))
    y = L.Dense(1)(L.SimpleRNN(4)(s, initial_state=[h]))
    func = keras.Model(i, y)
    return {"sequential": seq, "functional": func}


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_load_keras_weights_h5(kind, tmp_path):
    pytest.importorskip("h5py")
    kmodel = _h5_models()[kind]
    model = from_keras(kmodel)              # the architecture, with Keras's initial weights
    randomize(kmodel, 8)                     # then other weights, saved by Keras
    path = str(tmp_path / "m.weights.h5")
    kmodel.save_weights(path)
    x = ids("general")
    with pytest.raises(AssertionError):
        assert_same(model.predict(x, verbose=0), keras_out(kmodel, x))
    load_keras_weights_h5(model, path)
    assert_same(model.predict(x, verbose=0), keras_out(kmodel, x))
    for a, b in zip(model.get_weights(), kmodel.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_load_keras_weights_h5_into_a_hand_built_model(tmp_path):
    pytest.importorskip("h5py")
    kmodel = keras.Sequential([keras.Input((T, F)), L.LSTM(4, return_sequences=True), L.LSTM(3), L.Dense(2)])
    randomize(kmodel, 9)
    path = str(tmp_path / "m.weights.h5")
    kmodel.save_weights(path)
    model = fr.Sequential([fr.Input((T, F)), layers.LSTM(4, return_sequences=True), layers.LSTM(3),
                           layers.Dense(2)])
    load_keras_weights_h5(model, path)
    assert_same(model.predict(x_float(), verbose=0), keras_out(kmodel, x_float()))
    wrong = fr.Sequential([fr.Input((T, F)), layers.LSTM(5, return_sequences=True), layers.LSTM(3),
                           layers.Dense(2)])
    before = wrong.get_weights()
    with pytest.raises(ValueError, match="shape"):
        load_keras_weights_h5(wrong, path)
    for a, b in zip(before, wrong.get_weights()):          # nothing changed
        np.testing.assert_array_equal(a, b)
    fewer = fr.Sequential([fr.Input((T, F)), layers.LSTM(4, return_sequences=True), layers.LSTM(3)])
    with pytest.raises(ValueError, match="lacks"):
        load_keras_weights_h5(fewer, path)


# ---------------------------------------------------------------------------
# what is refused

@pytest.mark.parametrize("make,match", [
    (lambda: L.Conv1D(2, 3), "Conv1D"),
    (lambda: L.GRU(3, recurrent_activation="hard_sigmoid"), "recurrent_activation"),
    (lambda: L.LSTM(3, activation="relu"), "activation"),
    (lambda: L.LSTM(3, kernel_constraint="non_neg"), "kernel_constraint"),
    (lambda: L.Dense(3, activity_regularizer="l2"), "activity_regularizer"),
    (lambda: L.Bidirectional(L.LSTM(3), dtype="mixed_float16"), "dtype"),
], ids=["layer", "recurrent_activation", "activation", "constraint", "activity_regularizer", "mixed"])
def test_unsupported_layers_and_options(make, match):
    kmodel = keras.Sequential([keras.Input((T, F)), make()])
    with pytest.raises(ValueError, match=match):
        from_keras(kmodel)


def test_nested_model_refused():
    inner = keras.Sequential([keras.Input((T, F)), L.LSTM(3)])
    i = keras.Input((T, F))
    kmodel = keras.Model(i, L.Dense(1)(inner(i)))
    with pytest.raises(ValueError, match="nested"):
        from_keras(kmodel)


def test_regularizers_are_mapped():
    kmodel = keras.Sequential([keras.Input((T, F)), L.LSTM(3, kernel_regularizer=keras.regularizers.L2(0.01)),
                               L.Dense(1, bias_regularizer=keras.regularizers.L1L2(0.1, 0.2))])
    model = from_keras(kmodel)
    lstm, dense = model.layers
    assert lstm.kernel_regularizer.l2 == pytest.approx(0.01) and lstm.kernel_regularizer.l1 == 0
    assert dense.bias_regularizer.l1 == pytest.approx(0.1) and dense.bias_regularizer.l2 == pytest.approx(0.2)


@pytest.mark.parametrize("padding", ["right", "general"])
def test_encoder_decoder_masks_with_initial_state(padding):
    """Keras does not pass the mask to a layer called with initial_state= tensors (it has
    several tensor arguments), but its output still carries the input's mask: reproduced."""
    src = keras.Input((T,), dtype="int32")
    tgt = keras.Input((T,), dtype="int32")
    _, h, c = L.LSTM(4, return_state=True)(L.Embedding(V, 3, mask_zero=True)(src))
    dec = L.LSTM(4, return_sequences=True)(L.Embedding(V, 3, mask_zero=True)(tgt), initial_state=[h, c])
    out = L.TimeDistributed(L.Dense(2))(L.GRU(3, return_sequences=True)(dec))
    kmodel = keras.Model([src, tgt], [out, L.SimpleRNN(2)(dec)])
    randomize(kmodel, 11)
    model = from_keras(kmodel)
    x = [ids(padding, seed=12), ids(padding, seed=13)]
    assert_same(model(x), keras_out(kmodel, x))


def test_stateful_carries_states_like_keras():
    kmodel = keras.Sequential([keras.Input((T, F), batch_size=B), L.GRU(4, stateful=True, return_sequences=True),
                               L.LSTM(3, stateful=True), L.Dense(1)])
    randomize(kmodel, 14)
    model = from_keras(kmodel)
    assert model.layers[0].stateful
    for seed in (1, 2, 3):                   # the second and third calls start from the carried states
        x = x_float(seed=seed)
        assert_same(model.predict(x, batch_size=B, verbose=0), keras_out(kmodel, x))


def test_h5py_missing_is_a_clear_error(monkeypatch, tmp_path):
    import sys
    monkeypatch.setitem(sys.modules, "h5py", None)
    model = fr.Sequential([fr.Input((T, F)), layers.Dense(1)])
    with pytest.raises(ImportError, match="h5py"):
        load_keras_weights_h5(model, str(tmp_path / "m.weights.h5"))


def test_not_a_keras_model():
    with pytest.raises(TypeError, match="Keras"):
        from_keras(fr.Sequential([fr.Input((T, F)), layers.Dense(1)]))


DENSE_ACTIVATIONS = ["linear", "relu", "tanh", "sigmoid", "softmax", "elu", "selu", "softplus", "softsign",
                     "swish", "gelu", "hard_sigmoid", "hard_silu", "log_softmax", "leaky_relu", "relu6"]


def test_dense_activations():
    x = x_float()
    for name in DENSE_ACTIVATIONS:
        kmodel = keras.Sequential([keras.Input((T, F)), L.Dense(4, activation=name)])
        convert_and_check(kmodel, x)
    kmodel = keras.Sequential([keras.Input((T, F)), L.Dense(4, activation="mish")])
    with pytest.raises(ValueError, match="activation='mish'"):
        from_keras(kmodel)


@pytest.mark.parametrize("merge", ["Concatenate", "Add"])
def test_merge_layers_with_masks(merge):
    """Masked and unmasked branches merged: the merged mask (Keras's rule) reaches the next LSTM."""
    i = keras.Input((T,), dtype="int32")
    f = keras.Input((T, 3))
    e = L.Embedding(V, 3, mask_zero=True)(i)
    e2 = L.Masking(0.0)(f)
    both = getattr(L, merge)()([L.GRU(3, return_sequences=True)(e), e2])
    kmodel = keras.Model([i, f], L.LSTM(2)(both))
    randomize(kmodel, 15)
    model = from_keras(kmodel)
    xf = x_float(seed=16)
    xf[0, 2:] = 0.0
    xf[3, :] = 0.0
    x = [ids("general"), xf]
    assert_same(model(x), keras_out(kmodel, x))


def test_saved_keras_file_and_sequential_built_without_input(tmp_path):
    pytest.importorskip("h5py")
    kmodel = keras.Sequential([L.Masking(), L.LSTM(3, return_sequences=True), L.TimeDistributed(L.Dense(2))])
    kmodel.build((None, T, F))
    randomize(kmodel, 17)
    path = str(tmp_path / "m.keras")
    kmodel.save(path)
    loaded = keras.models.load_model(path)
    x = x_float()
    x[2, 3:] = 0.0
    for km in (kmodel, loaded):
        assert_same(from_keras(km).predict(x, verbose=0), keras_out(kmodel, x))
