"""fastrnn.interop.onnx.export: fastrnn models written as ONNX give model.predict's
outputs in onnxruntime and in fastrnn's own InferenceSession (float32, 1e-5)."""
import io

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import fastrnn as fr  # noqa: E402
from fastrnn import layers  # noqa: E402
from fastrnn.interop.onnx import InferenceSession, export  # noqa: E402

B, T, I, H = 3, 7, 4, 5
TOL = 1e-5


def _randomize(model, seed=0):
    """Random weights everywhere (biases and peepholes too, not only the zeros they start at)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(w.dtype) for w in model.get_weights()])


def _check(model, x, tmp_path=None, opset=17):
    _randomize(model)
    want = model.predict(x, verbose=0)
    if tmp_path is not None:
        path = tmp_path / "model.onnx"
        proto = export(model, path, opset=opset)
        src = str(path)
    else:
        buf = io.BytesIO()
        proto = export(model, buf, opset=opset)
        src = buf.getvalue()
    onnx.checker.check_model(proto)
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    got = sess.run(None, {name: x})[0]
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)
    mine = InferenceSession(src)
    assert [a.name for a in mine.get_inputs()] == [name]
    got2 = mine.run(None, {name: x})[0]
    np.testing.assert_allclose(got2, want, rtol=TOL, atol=TOL)
    return proto


def _x(shape=(B, T, I), seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _rec(kind, **kw):
    cls = {"rnn": layers.SimpleRNN, "gru": layers.GRU, "lstm": layers.LSTM}[kind]
    return cls(H, **kw)


CELLS = [("rnn", {}), ("rnn", {"activation": "relu"}), ("gru", {"reset_after": True}),
         ("gru", {"reset_after": False}), ("lstm", {}), ("lstm", {"peepholes": True}),
         ("lstm", {"use_bias": False}), ("gru", {"use_bias": False})]


@pytest.mark.parametrize("kind,kw", CELLS)
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_recurrent(kind, kw, return_sequences, go_backwards):
    model = fr.Sequential([fr.Input((None, I)),
                           _rec(kind, return_sequences=return_sequences, go_backwards=go_backwards, **kw)])
    _check(model, _x())


@pytest.mark.parametrize("kind,kw", [("rnn", {}), ("gru", {}), ("gru", {"reset_after": False}), ("lstm", {}),
                                     ("lstm", {"peepholes": True})])
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional(kind, kw, merge_mode, return_sequences):
    model = fr.Sequential([fr.Input((None, I)),
                           layers.Bidirectional(_rec(kind, return_sequences=return_sequences, **kw),
                                                merge_mode=merge_mode)])
    _check(model, _x())


@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_template_going_backwards(return_sequences):
    model = fr.Sequential([fr.Input((None, I)),
                           layers.Bidirectional(layers.LSTM(H, return_sequences=return_sequences,
                                                            go_backwards=True))])
    _check(model, _x())


@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh", "softmax"])
def test_dense_activations(activation):
    model = fr.Sequential([fr.Input((None, I)), layers.GRU(H), layers.Dropout(0.3),
                           layers.Dense(6, activation=activation)])
    _check(model, _x())


def test_stack_embedding_timedistributed(tmp_path):
    model = fr.Sequential([fr.Input((None,), dtype="int64"), layers.Embedding(20, I),
                           layers.LSTM(H, return_sequences=True), layers.Dropout(0.2),
                           layers.Bidirectional(layers.GRU(H, return_sequences=True)),
                           layers.TimeDistributed(layers.Dense(3, activation="softmax")),
                           layers.Dense(2, use_bias=False)])
    ids = np.random.default_rng(2).integers(0, 20, (B, T)).astype(np.int64)
    proto = _check(model, ids, tmp_path)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "time"]
    out = [d.dim_param or d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    assert out == ["batch", "time", 2]


def test_symbolic_dims_other_sizes():
    model = fr.Sequential([fr.Input((None, I)), layers.LSTM(H, return_sequences=True), layers.Dense(2)])
    buf = io.BytesIO()
    _randomize(model)
    export(model, buf)
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    mine = InferenceSession(buf.getvalue())
    for shape in [(1, 1, I), (5, 11, I)]:
        x = _x(shape, seed=3)
        want = model.predict(x, verbose=0)
        for s in (sess, mine):
            np.testing.assert_allclose(s.run(None, {s.get_inputs()[0].name: x})[0], want, rtol=TOL, atol=TOL)


def test_functional_model_and_opsets():
    x_in = fr.Input((None, I))
    y = layers.Dense(3, activation="tanh")(layers.GRU(H, reset_after=False)(layers.LSTM(H, return_sequences=True)(x_in)))
    model = fr.Model(x_in, y)
    for opset in (14, 17, 19):
        proto = _check(model, _x(), opset=opset)
        assert proto.opset_import[0].version == opset


def test_sequential_built_from_data():
    model = fr.Sequential([layers.SimpleRNN(H), layers.Dense(1)])
    x = _x()
    model.predict(x, verbose=0)
    _check(model, x)


@pytest.mark.parametrize("make,what", [
    (lambda: [fr.Input((None,), dtype="int64"), layers.Embedding(10, I, mask_zero=True), layers.LSTM(H)],
     "mask_zero"),
    (lambda: [fr.Input((None, I)), layers.Masking(), layers.LSTM(H)], "Masking"),
    (lambda: [fr.Input((None, I)), layers.LSTM(H, proj_units=3)], "proj_units"),
    (lambda: [fr.Input((None, I)), layers.LSTM(H, return_sequences=True), layers.Flatten()], "Flatten"),
    (lambda: [fr.Input((None, I)), layers.Dense(3, activation="elu")], "elu"),
])
def test_unsupported_raise(make, what):
    model = fr.Sequential(make())
    with pytest.raises(NotImplementedError, match=what):
        export(model, None)


def test_unsupported_multi_io_and_states():
    x_in = fr.Input((None, I))
    y, h, c = layers.LSTM(H, return_state=True)(x_in)
    with pytest.raises(NotImplementedError, match="return_state"):
        export(fr.Model(x_in, y), None)
    with pytest.raises(NotImplementedError, match="outputs"):
        export(fr.Model(x_in, [y, h]), None)
    with pytest.raises(NotImplementedError, match="stateful"):
        export(fr.Sequential([fr.Input((None, I), batch_size=B), layers.GRU(H, stateful=True)]), None)


def test_float64_in_fastrnn_session():
    """onnxruntime has no float64 recurrent ops: the float64 export runs in fastrnn's session."""
    model = fr.Sequential([fr.Input((None, I), dtype="float64"),
                           layers.Bidirectional(layers.GRU(H, return_sequences=True, dtype="float64")),
                           layers.Dense(2, activation="sigmoid", dtype="float64")])
    _randomize(model)
    x = _x().astype(np.float64)
    want = model.predict(x, verbose=0)
    proto = export(model, None)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    got = InferenceSession(proto).run(None, {proto.graph.input[0].name: x})[0]
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
