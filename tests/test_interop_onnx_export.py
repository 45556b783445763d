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
    (lambda: [fr.Input((None, I)), layers.LSTM(H, return_sequences=True), layers.Flatten()], "Flatten"),
    (lambda: [fr.Input((None, I)), layers.Dense(3, activation="elu")], "elu"),
    (lambda: [fr.Input((None, I), batch_size=B), layers.GRU(H, stateful=True)], "stateful"),
])
def test_unsupported_raise(make, what):
    model = fr.Sequential(make())
    with pytest.raises(NotImplementedError, match=what):
        export(model, None)


def _check_ort(model, feeds, seed=0):
    """Every output of the exported model, in onnxruntime and in fastrnn's session,
    against model.predict."""
    _randomize(model, seed)
    xs = list(feeds.values())
    want = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    want = want if isinstance(want, list) else [want]
    proto = export(model, None)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == list(feeds)
    got = sess.run(None, feeds)
    assert len(got) == len(want)
    mine = InferenceSession(proto).run(None, feeds)
    for g, m, w in zip(got, mine, want):
        assert g.shape == w.shape and g.dtype == w.dtype and m.shape == w.shape and m.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=TOL, atol=TOL)
        np.testing.assert_allclose(m, w, rtol=TOL, atol=TOL)
    return proto


def _ids(seed=2):
    """Token ids with zeros (masked) at the end of some rows and in the middle of others."""
    ids = np.random.default_rng(seed).integers(1, 10, (4, T)).astype(np.int64)
    ids[0, 5:] = 0
    ids[1, 2:4] = 0
    ids[2, :3] = 0
    ids[3, :] = 0
    return ids


MASKED = [(kind, kw) for kind, kw in CELLS] + [("lstm", {"proj_units": 3}), ("lstm", {"peepholes": True,
                                                                                       "proj_units": 2})]


@pytest.mark.parametrize("kind,kw", MASKED, ids=str)
@pytest.mark.parametrize("seq,back,zero", [(True, False, False), (True, True, False), (False, False, False),
                                           (False, True, True), (True, False, True)])
def test_masked_recurrent_layers_match(kind, kw, seq, back, zero):
    model = fr.Sequential([fr.Input((None,), dtype="int64"), layers.Embedding(10, I, mask_zero=True),
                           _rec(kind, return_sequences=seq, go_backwards=back, zero_output_for_mask=zero, **kw),
                           layers.Dense(2)])
    proto = _check_ort(model, {model.input_names[0]: _ids()})
    assert any(n.op_type == "Scan" for n in proto.graph.node)


def test_masking_layer_and_masked_stack():
    x = _x((4, T, I))
    x[0, 4:] = 0.5
    x[1, 1:3] = 0.5
    model = fr.Sequential([fr.Input((None, I)), layers.Masking(0.5), layers.GRU(H, return_sequences=True),
                           layers.Dropout(0.3), layers.LSTM(H, return_sequences=True), layers.TimeDistributed(
                               layers.Dense(3, activation="softmax"))])
    _check_ort(model, {model.input_names[0]: x})


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul", None])
@pytest.mark.parametrize("seq", [True, False])
def test_masked_bidirectional(merge_mode, seq):
    ids_in = fr.Input((None,), dtype="int64")
    e = layers.Embedding(10, I, mask_zero=True)(ids_in)
    out = layers.Bidirectional(layers.LSTM(H, return_sequences=seq), merge_mode=merge_mode)(e)
    model = fr.Model(ids_in, out)
    _check_ort(model, {model.input_names[0]: _ids()})


def test_projection_without_mask():
    model = fr.Sequential([fr.Input((None, I)), layers.LSTM(H, proj_units=3, return_sequences=True),
                           layers.Bidirectional(layers.LSTM(H, proj_units=2))])
    _check_ort(model, {model.input_names[0]: _x()})


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("masked", [False, True])
def test_initial_states_and_return_state(kind, masked):
    """Initial states as graph inputs and final states as outputs, single and bidirectional."""
    n = 2 if kind == "lstm" else 1
    if masked:
        x_in = fr.Input((None,), dtype="int64")
        x = layers.Embedding(10, I, mask_zero=True)(x_in)
        feeds = {"x": _ids()}
    else:
        x_in = x = fr.Input((None, I))
        feeds = {"x": _x((4, T, I))}
    s_in = [fr.Input((H,)) for _ in range(n)]
    b_in = [fr.Input((H,)) for _ in range(2 * n)]
    y, *states = _rec(kind, return_sequences=True, return_state=True)(x, initial_state=s_in)
    z, *bstates = layers.Bidirectional(_rec(kind, return_state=True))(y, initial_state=b_in)
    model = fr.Model([x_in] + s_in + b_in, [y, z] + states + bstates)
    rng = np.random.default_rng(4)
    names = model.input_names
    feeds = {names[0]: feeds["x"], **{nm: rng.standard_normal((4, H)).astype(np.float32) for nm in names[1:]}}
    _check_ort(model, feeds)


def test_multiple_inputs_merge_and_outputs():
    a_in, b_in = fr.Input((None, I)), fr.Input((None, I))
    a = layers.GRU(H, return_sequences=True)(a_in)
    b = layers.LSTM(H, return_sequences=True)(b_in)
    cat = layers.Concatenate()([a, b])
    added = layers.Add()([a, b])
    out = layers.SimpleRNN(H)(cat)
    model = fr.Model([a_in, b_in], [out, layers.Dense(2)(added)])
    names = model.input_names
    proto = _check_ort(model, {names[0]: _x(), names[1]: _x(seed=5)})
    assert not any(n.op_type == "Scan" for n in proto.graph.node)     # no mask, no projection


def test_masks_through_merge_layers():
    ids_a, ids_b = fr.Input((None,), dtype="int64"), fr.Input((None,), dtype="int64")
    ea = layers.Embedding(10, I, mask_zero=True)(ids_a)
    eb = layers.Embedding(10, I, mask_zero=True)(ids_b)
    out = layers.LSTM(H)(layers.Add()([ea, eb]))
    out2 = layers.GRU(H)(layers.Concatenate()([ea, eb]))
    model = fr.Model([ids_a, ids_b], [out, out2])
    names = model.input_names
    _check_ort(model, {names[0]: _ids(), names[1]: _ids(seed=7)})
    timecat = layers.Concatenate(axis=1)([ea, eb])
    with pytest.raises(NotImplementedError, match="Concatenate along the time axis"):
        export(fr.Model([ids_a, ids_b], layers.LSTM(H)(timecat)), None)


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
