"""fastrnn.interop.onnx.InferenceSession against onnxruntime (float32) and
onnx.reference (float64), on models built with onnx.helper and exported by torch."""
import io
import itertools

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from fastrnn.interop.onnx import InferenceSession  # noqa: E402

OPSET = 17
T, B, I, H = 5, 3, 4, 6
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
ELEM = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE}


def _model(nodes, inputs, outputs, inits, opset=OPSET):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def _ort():
    return pytest.importorskip("onnxruntime")


def _ort_run(model, feeds, names=None):
    ort = _ort()
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(names, feeds)


def build_rnn(op, *, direction="forward", layout=0, dtype=np.float32, bias=True, seq_lens=False, initial=False,
              peep=False, lbr=0, acts=None, outputs=("Y", "Y_h", "Y_c"), extra_attrs=None, seed=0, weights=None):
    """A one-node model; returns (model, feeds, weights) with the weights as initializers."""
    rng = np.random.default_rng(seed)
    D = 2 if direction == "bidirectional" else 1
    G = GATES[op]
    elem = ELEM[dtype]
    if weights is None:
        weights = {"W": rng.uniform(-0.6, 0.6, (D, G * H, I)).astype(dtype),
                   "R": rng.uniform(-0.6, 0.6, (D, G * H, H)).astype(dtype),
                   "B": rng.uniform(-0.5, 0.5, (D, 2 * G * H)).astype(dtype),
                   "P": rng.uniform(-0.5, 0.5, (D, 3 * H)).astype(dtype)}
    xshape = (B, T, I) if layout else (T, B, I)
    sshape = (B, D, H) if layout else (D, B, H)
    xdims = ["batch", "T", I] if layout else ["T", "batch", I]      # symbolic: any batch and length
    sdims = ["batch", D, H] if layout else [D, "batch", H]
    feeds = {"X": rng.standard_normal(xshape).astype(dtype)}
    inputs = [_vi("X", elem, xdims)]
    names = ["X", "W", "R", "B" if bias else "", "", "", ""]
    inits = [numpy_helper.from_array(weights["W"], "W"), numpy_helper.from_array(weights["R"], "R")]
    if bias:
        inits.append(numpy_helper.from_array(weights["B"], "B"))
    if seq_lens:
        names[4] = "seq"
        feeds["seq"] = np.array([T, 2, 4][:B], np.int32)
        inputs.append(_vi("seq", TensorProto.INT32, ["batch"]))
    if initial:
        names[5] = "h0"
        feeds["h0"] = rng.standard_normal(sshape).astype(dtype)
        inputs.append(_vi("h0", elem, sdims))
        if op == "LSTM":
            names[6] = "c0"
            feeds["c0"] = rng.standard_normal(sshape).astype(dtype)
            inputs.append(_vi("c0", elem, sdims))
    if op == "LSTM" and peep:
        names.append("P")
        inits.append(numpy_helper.from_array(weights["P"], "P"))
    if op != "LSTM":
        names = names[:6]
    while names and names[-1] == "":
        names.pop()
    outs = list(outputs[:3 if op == "LSTM" else 2])
    attrs = dict(hidden_size=H, direction=direction)
    if layout:
        attrs["layout"] = 1
    if op == "GRU":
        attrs["linear_before_reset"] = lbr
    if acts is not None:
        attrs["activations"] = acts
    attrs.update(extra_attrs or {})
    node = helper.make_node(op, names, outs, name="rec", **attrs)
    yshape = ["batch", "T", D, H] if layout else ["T", D, "batch", H]
    out_vis = [_vi(n, elem, yshape if k == 0 else sdims) for k, n in enumerate(outs) if n]
    return _model([node], inputs, out_vis, inits), feeds, weights


VARIANTS = [("RNN", {}), ("RNN", {"acts": ["Relu"]}), ("GRU", {"lbr": 0}), ("GRU", {"lbr": 1}),
            ("LSTM", {}), ("LSTM", {"peep": True})]


def _id(v):
    op, kw = v
    return op + "".join(f"-{k}={v}" for k, v in kw.items())


@pytest.mark.parametrize("variant", VARIANTS, ids=_id)
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("seq_lens,initial", list(itertools.product([False, True], [False, True])))
def test_recurrent_matches_onnxruntime(variant, direction, seq_lens, initial):
    op, kw = variant
    kw = dict(kw)
    if kw.get("acts") and direction == "bidirectional":
        kw["acts"] = kw["acts"] * 2
    model, feeds, _ = build_rnn(op, direction=direction, seq_lens=seq_lens, initial=initial, **kw)
    want = _ort_run(model, feeds)
    got = InferenceSession(model.SerializeToString()).run(None, feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op,kw", [("RNN", {}), ("GRU", {"lbr": 0}), ("GRU", {"lbr": 1}), ("LSTM", {"peep": True})])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_zero_length_sequence_and_batch_of_one(op, kw, direction):
    """A length-0 sequence gets zero outputs and (as onnxruntime) zero final states;
    B=1 takes the kernels' unpacked path."""
    model, feeds, _ = build_rnn(op, direction=direction, seq_lens=True, initial=True, **kw)
    feeds["seq"] = np.array([T, 0, 3], np.int32)
    for g, w in zip(InferenceSession(model).run(None, feeds), _ort_run(model, feeds)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    one = {k: (v[:1] if k in ("seq",) else v[:, :1]) for k, v in feeds.items()}
    one["seq"] = np.array([3], np.int32)
    for g, w in zip(InferenceSession(model).run(None, one), _ort_run(model, one)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op,kw", [("RNN", {}), ("GRU", {"lbr": 0}), ("GRU", {"lbr": 1}), ("LSTM", {"peep": True})])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_float64_sequence_lens_match_reference_per_sample(op, kw, direction, layout):
    """onnx.reference ignores sequence_lens: run it on each sample cut to its length."""
    from onnx.reference import ReferenceEvaluator
    model, feeds, _ = build_rnn(op, direction=direction, layout=layout, dtype=np.float64, seq_lens=True,
                                initial=True, **kw)
    got = InferenceSession(model).run(None, feeds)
    ref = ReferenceEvaluator(model)
    for b, L in enumerate(feeds["seq"]):
        if layout:
            one = {k: v[b:b + 1, :L] if k == "X" else v[b:b + 1] for k, v in feeds.items() if k != "seq"}
        else:
            one = {k: v[:L, b:b + 1] if k == "X" else v[:, b:b + 1] for k, v in feeds.items() if k != "seq"}
        one["seq"] = np.array([L], np.int32)
        want = ref.run(None, one)
        y = got[0][b:b + 1, :L] if layout else got[0][:L, :, b:b + 1]
        np.testing.assert_allclose(y, want[0], rtol=1e-10, atol=1e-12)
        pad = got[0][b, L:] if layout else got[0][L:, :, b]
        assert not pad.any()
        for g, w in zip(got[1:], want[1:]):
            g = g[b:b + 1] if layout else g[:, b:b + 1]
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_no_bias_and_default_direction(op):
    model, feeds, _ = build_rnn(op, bias=False, peep=(op == "LSTM"))
    for g, w in zip(InferenceSession(model).run(None, feeds), _ort_run(model, feeds)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_optional_outputs_omitted(op):
    outs = ("", "Y_h", "") if op != "RNN" else ("", "Y_h")
    model, feeds, _ = build_rnn(op, direction="bidirectional", outputs=outs, lbr=1)
    got = InferenceSession(model).run(None, feeds)
    want = _ort_run(model, feeds)
    assert len(got) == 1
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
    model, feeds, _ = build_rnn(op, outputs=("Y",))
    sess = InferenceSession(model)
    assert [o.name for o in sess.get_outputs()] == ["Y"]
    np.testing.assert_allclose(sess.run(["Y"], feeds)[0], _ort_run(model, feeds)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op,kw", [("RNN", {}), ("GRU", {"lbr": 0}), ("GRU", {"lbr": 1}), ("LSTM", {"peep": True})])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_layout1_matches_transposed_layout0(op, kw, direction):
    m1, f1, w = build_rnn(op, direction=direction, layout=1, seq_lens=True, initial=True, **kw)
    m0, _, _ = build_rnn(op, direction=direction, layout=0, seq_lens=True, initial=True, weights=w, **kw)
    f0 = {"X": f1["X"].transpose(1, 0, 2), "seq": f1["seq"], "h0": f1["h0"].transpose(1, 0, 2)}
    if "c0" in f1:
        f0["c0"] = f1["c0"].transpose(1, 0, 2)
    want = _ort_run(m0, f0)
    got = InferenceSession(m1).run(None, f1)
    np.testing.assert_allclose(got[0], want[0].transpose(2, 0, 1, 3), rtol=1e-5, atol=1e-5)   # (T,D,B,H) -> (B,T,D,H)
    for g, w_ in zip(got[1:], want[1:]):
        np.testing.assert_allclose(g, w_.transpose(1, 0, 2), rtol=1e-5, atol=1e-5)            # (D,B,H) -> (B,D,H)


@pytest.mark.parametrize("op,kw", [("RNN", {}), ("GRU", {"lbr": 0}), ("GRU", {"lbr": 1}), ("LSTM", {}),
                                   ("LSTM", {"peep": True})], ids=str)   # onnx.reference's RNN has no Relu
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_float64_matches_reference_evaluator(op, kw, direction, layout):
    from onnx.reference import ReferenceEvaluator
    kw = dict(kw)
    if kw.get("acts") and direction == "bidirectional":
        kw["acts"] = kw["acts"] * 2
    model, feeds, _ = build_rnn(op, direction=direction, layout=layout, dtype=np.float64, initial=True, **kw)
    want = ReferenceEvaluator(model).run(None, feeds)
    got = InferenceSession(model).run(None, feeds)
    for g, w in zip(got, want):
        assert g.dtype == np.float64 and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_rnn_mixed_activations_per_direction():
    model, feeds, _ = build_rnn("RNN", direction="bidirectional", acts=["Tanh", "Relu"], initial=True, seq_lens=True)
    got = InferenceSession(model).run([], feeds)
    for g, w in zip(got, _ort_run(model, feeds)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_weights_packed_once_per_session(monkeypatch):
    import fastrnn.functional as F
    calls = []
    real = F.pack_weights
    monkeypatch.setattr(F, "pack_weights", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    model, feeds, _ = build_rnn("LSTM", direction="bidirectional")
    sess = InferenceSession(model)
    assert calls == ["lstm", "lstm"]
    a = sess.run(None, feeds)
    b = sess.run(None, feeds)
    assert calls == ["lstm", "lstm"]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_weights_as_graph_inputs():
    """W/R fed at run time (not initializers) are converted per call."""
    model, feeds, w = build_rnn("GRU", lbr=1)
    g = model.graph
    del g.initializer[:]
    g.input.extend([_vi("W", TensorProto.FLOAT, list(w["W"].shape)), _vi("R", TensorProto.FLOAT, list(w["R"].shape)),
                    _vi("B", TensorProto.FLOAT, list(w["B"].shape))])
    feeds = dict(feeds, W=w["W"], R=w["R"], B=w["B"])
    for a, b in zip(InferenceSession(model).run(None, feeds), _ort_run(model, feeds)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- session API

def test_session_api_inputs_outputs(tmp_path):
    model, feeds, _ = build_rnn("LSTM", seq_lens=True, initial=True)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    sess = InferenceSession(str(path))
    ort = _ort()
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for mine, theirs in [(sess.get_inputs(), ref.get_inputs()), (sess.get_outputs(), ref.get_outputs())]:
        assert [(a.name, a.shape, a.type) for a in mine] == [(a.name, a.shape, a.type) for a in theirs]
    y_h, y = sess.run(["Y_h", "Y"], feeds)
    want = ref.run(["Y_h", "Y"], feeds)
    np.testing.assert_allclose(y_h, want[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, want[1], rtol=1e-5, atol=1e-5)
    InferenceSession(path)      # PathLike
    with pytest.raises(ValueError, match="missing inputs"):
        sess.run(None, {"X": feeds["X"]})
    with pytest.raises(ValueError, match="nope"):
        sess.run(None, dict(feeds, nope=feeds["X"]))
    with pytest.raises(TypeError, match="tensor\\(float\\)"):
        sess.run(None, dict(feeds, X=feeds["X"].astype(np.float64)))


def test_dim_params_in_get_inputs():
    x = _vi("X", TensorProto.FLOAT, ["T", "batch", I])
    node = helper.make_node("Relu", ["X"], ["Y"])
    model = _model([node], [x], [_vi("Y", TensorProto.FLOAT, ["T", "batch", I])], [])
    sess = InferenceSession(model)
    assert sess.get_inputs()[0].shape == ["T", "batch", I]
    assert sess.get_inputs()[0].type == "tensor(float)"


# --------------------------------------------------------------------------- glue ops

def _const(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def test_glue_ops_match_onnxruntime():
    rng = np.random.default_rng(1)
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node("Shape", ["X"], ["shp"], name="shape"),
        helper.make_node("Gather", ["shp", "zero"], ["dim0"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["dim0", "axes0"], ["dim0u"], name="unsq"),
        helper.make_node("Concat", ["dim0u", "minus1"], ["newshape"], name="concat", axis=0),
        helper.make_node("Reshape", ["X", "newshape"], ["flat"], name="reshape"),          # (2, 12)
        helper.make_node("Reshape", ["X", "zeroshape"], ["same"], name="reshape0"),        # 0 copies a dim
        helper.make_node("Transpose", ["same"], ["tr"], name="tr", perm=[1, 0, 2]),
        helper.make_node("Slice", ["tr", "starts", "ends", "saxes", "steps"], ["sl"], name="slice"),
        helper.make_node("Squeeze", ["dim0u", "axes0"], ["sq"], name="squeeze"),
        helper.make_node("MatMul", ["flat", "M"], ["mm"], name="mm"),
        helper.make_node("Gemm", ["flat", "G", "C"], ["gm"], name="gemm", alpha=0.5, beta=2.0, transB=1),
        helper.make_node("Gemm", ["Gt", "flatT"], ["gm2"], name="gemm2", transA=1, transB=1),
        helper.make_node("Add", ["mm", "gm"], ["s1"], name="add"),
        helper.make_node("Sub", ["s1", "C"], ["s2"], name="sub"),
        helper.make_node("Mul", ["s2", "C"], ["s3"], name="mul"),
        helper.make_node("Div", ["s3", "two"], ["s4"], name="div"),
        helper.make_node("Relu", ["s4"], ["r"], name="relu"),
        helper.make_node("Sigmoid", ["s4"], ["sg"], name="sig"),
        helper.make_node("Tanh", ["s4"], ["th"], name="tanh"),
        helper.make_node("Softmax", ["s4"], ["sm"], name="sm", axis=0),
        helper.make_node("LogSoftmax", ["s4"], ["lsm"], name="lsm"),
        helper.make_node("Constant", [], ["k"], name="const", value=_const("kv", np.float32([1.5, -2.0, 3.0]))),
        helper.make_node("Identity", ["k"], ["kid"], name="ident"),
        helper.make_node("Cast", ["dim0"], ["dimf"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["kid", "dimf"], ["kk"], name="mul2"),
        helper.make_node("Expand", ["C", "eshape"], ["ex"], name="expand"),
        helper.make_node("ConstantOfShape", ["shp"], ["zeros"], name="cos",
                         value=_const("cv", np.float32([0.25]))),
    ]
    inits = [_const("zero", np.int64(0)), _const("axes0", np.int64([0])), _const("minus1", np.int64([-1])),
             _const("zeroshape", np.int64([0, 3, -1])),
             _const("starts", np.int64([2, 0])), _const("ends", np.int64([-(2 ** 62), 99])),
             _const("saxes", np.int64([0, -1])), _const("steps", np.int64([-2, 2])),
             _const("M", rng.standard_normal((12, 5)).astype(np.float32)),
             _const("G", rng.standard_normal((5, 12)).astype(np.float32)),
             _const("Gt", rng.standard_normal((12, 5)).astype(np.float32)),
             _const("flatT", rng.standard_normal((7, 12)).astype(np.float32)),
             _const("C", rng.standard_normal((5,)).astype(np.float32)),
             _const("two", np.float32(2.0)), _const("eshape", np.int64([3, 1, 1]))]
    outs = ["flat", "tr", "sl", "sq", "gm2", "r", "sg", "th", "sm", "lsm", "kk", "dim0", "s4", "ex", "zeros"]
    model = _model(nodes, [_vi("X", f, [2, 3, 4])],
                   [_vi(o, TensorProto.INT64 if o in ("dim0", "sq") else f, None) for o in outs], inits)
    feeds = {"X": rng.standard_normal((2, 3, 4)).astype(np.float32)}
    want = _ort_run(model, feeds, outs)
    got = InferenceSession(model).run(outs, feeds)
    for name, g, w in zip(outs, got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, name
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5, err_msg=name)


def test_old_opset_attribute_forms():
    f = TensorProto.FLOAT
    nodes = [helper.make_node("Unsqueeze", ["X"], ["u"], name="u", axes=[0, 4]),
             helper.make_node("Squeeze", ["u"], ["s"], name="s", axes=[0]),
             helper.make_node("Slice", ["s"], ["sl"], name="sl", starts=[1], ends=[3], axes=[1]),
             helper.make_node("Softmax", ["X"], ["sm"], name="sm")]   # opset 9: coerced to 2-d at axis 1
    model = _model(nodes, [_vi("X", f, [2, 3, 4])], [_vi("sl", f, None), _vi("sm", f, None)], [], opset=9)
    feeds = {"X": np.random.default_rng(2).standard_normal((2, 3, 4)).astype(np.float32)}
    for g, w in zip(InferenceSession(model).run(None, feeds), _ort_run(model, feeds)):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_lstm_inside_glue_graph():
    """An exported-looking graph: squeeze the direction axis, take the last step, Gemm, Softmax."""
    model, feeds, _ = build_rnn("LSTM", outputs=("Y", "", ""))
    g = model.graph
    rng = np.random.default_rng(3)
    g.initializer.extend([_const("ax1", np.int64([1])), _const("last", np.int64(-1)),
                          _const("Wd", rng.standard_normal((2, H)).astype(np.float32)),
                          _const("bd", rng.standard_normal((2,)).astype(np.float32))])
    g.node.extend([helper.make_node("Squeeze", ["Y", "ax1"], ["y3"], name="sq"),
                   helper.make_node("Gather", ["y3", "last"], ["yl"], name="ga", axis=0),
                   helper.make_node("Gemm", ["yl", "Wd", "bd"], ["logits"], name="fc", transB=1),
                   helper.make_node("Softmax", ["logits"], ["p"], name="softmax")])
    del g.output[:]
    g.output.extend([_vi("p", TensorProto.FLOAT, [B, 2])])
    got = InferenceSession(model).run(None, feeds)[0]
    np.testing.assert_allclose(got, _ort_run(model, feeds)[0], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- errors

def test_unsupported_op_names_op_and_node():
    f = TensorProto.FLOAT
    model = _model([helper.make_node("Erf", ["X"], ["Y"], name="my_erf")], [_vi("X", f, [2])], [_vi("Y", f, [2])], [])
    with pytest.raises(NotImplementedError, match="Erf.*my_erf"):
        InferenceSession(model)


ONNX_ACTS = ["Sigmoid", "Tanh", "Relu", "HardSigmoid", "LeakyRelu", "Affine", "ScaledTanh", "Elu", "Softsign",
             "Softplus", "ThresholdedRelu"]
ACT_CASES = [(op, k) for op in GATES for k in range(len(ONNX_ACTS))]


def _small_weights(op, D, seed, dtype=np.float32):
    """Weights small enough that unbounded activations (Affine, Relu, ...) stay finite."""
    rng = np.random.default_rng(seed)
    G = GATES[op]
    return {"W": rng.uniform(-0.3, 0.3, (D, G * H, I)).astype(dtype),
            "R": rng.uniform(-0.3, 0.3, (D, G * H, H)).astype(dtype),
            "B": rng.uniform(-0.3, 0.3, (D, 2 * G * H)).astype(dtype),
            "P": rng.uniform(-0.3, 0.3, (D, 3 * H)).astype(dtype)}


@pytest.mark.parametrize("op,k", ACT_CASES, ids=[f"{op}-{ONNX_ACTS[k]}" for op, k in ACT_CASES])
def test_activations_clip_input_forget_match_onnxruntime(op, k):
    """Each activation in each slot (the others rotate), with and without
    activation_alpha/beta (consumed in order), clip, input_forget, both directions."""
    n = {"RNN": 1, "GRU": 2, "LSTM": 3}[op]
    acts = [ONNX_ACTS[(k + 4 * j) % len(ONNX_ACTS)] for j in range(n)]
    variants = [{"activations": acts},
                {"activations": acts, "activation_alpha": [0.7, 0.4, 1.3], "activation_beta": [0.2, 0.9],
                 "clip": 0.8},
                {"activations": acts + acts[::-1], "activation_alpha": [1.1, 0.3, 0.6, 0.9, 0.5, 0.45],
                 "clip": 2.0}]
    for v, extra in enumerate(variants):
        extra = dict(extra)
        direction = "bidirectional" if v == 2 else "reverse" if v == 1 else "forward"
        kw = {"lbr": v % 2} if op == "GRU" else {"peep": v > 0} if op == "LSTM" else {}
        if op == "LSTM" and k % 2:
            extra["input_forget"] = 1
        w = _small_weights(op, 2 if v == 2 else 1, seed=k)
        model, feeds, _ = build_rnn(op, direction=direction, extra_attrs=extra, initial=True, seq_lens=v == 1,
                                    weights=w, **kw)
        want = _ort_run(model, feeds)
        got = InferenceSession(model).run(None, feeds)
        for g, ww in zip(got, want):
            assert np.isfinite(ww).all()
            np.testing.assert_allclose(g, ww, rtol=1e-4, atol=1e-5, err_msg=f"{extra} {kw}")


@pytest.mark.parametrize("op", list(GATES))
def test_activations_float64_match_onnxruntime_float32_model(op):
    """onnxruntime has no float64 recurrent ops (and onnx.reference ignores clip,
    input_forget and most activations): the float64 session is checked against
    onnxruntime on the same model in float32, to float32's accuracy."""
    n = {"RNN": 1, "GRU": 2, "LSTM": 3}[op]
    extra = {"activations": ["HardSigmoid", "Softsign", "Elu"][:n], "activation_alpha": [0.3], "clip": 1.2}
    if op == "LSTM":
        extra["input_forget"] = 1
    w64 = _small_weights(op, 1, seed=9, dtype=np.float64)
    w32 = {k: v.astype(np.float32) for k, v in w64.items()}
    m64, feeds64, _ = build_rnn(op, dtype=np.float64, extra_attrs=extra, initial=True, weights=w64)
    m32, _, _ = build_rnn(op, dtype=np.float32, extra_attrs=extra, initial=True, weights=w32)
    feeds32 = {k: v.astype(np.float32) for k, v in feeds64.items()}
    got = InferenceSession(m64).run(None, feeds64)
    for g, w in zip(got, _ort_run(m32, feeds32)):
        assert g.dtype == np.float64
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attrs,exc,what", [
    ({"activations": ["Sigmoid", "Gelu", "Tanh"]}, NotImplementedError, "activation 'Gelu'"),
    ({"activations": ["Sigmoid", "Tanh"]}, ValueError, "must list 3 per direction"),
    ({"clip": -1.0}, ValueError, "clip must be positive"),
])
def test_bad_recurrent_attributes_name_node_and_attribute(attrs, exc, what):
    model, _, _ = build_rnn("LSTM", extra_attrs=attrs)
    with pytest.raises(exc, match=f"LSTM node 'rec'.*{what}"):
        InferenceSession(model)


def test_missing_onnx_message(monkeypatch):
    import builtins
    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("no onnx")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match="`onnx`"):
        InferenceSession(b"")


# --------------------------------------------------------------------------- torch.onnx.export

def _torch_export(module, x, **kw):
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    kwargs = dict(input_names=["x"], output_names=["y", "h"], opset_version=OPSET)
    kwargs.update(kw)
    try:
        torch.onnx.export(module, (torch.from_numpy(x),), buf, dynamo=False, **kwargs)
    except TypeError:
        torch.onnx.export(module, (torch.from_numpy(x),), buf, **kwargs)
    except Exception as e:     # exporter unavailable in this environment
        pytest.skip(f"torch.onnx.export failed: {e}")
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_torch_onnx_export_runs(kind, bidirectional):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    cls = getattr(torch.nn, kind)
    module = cls(I, H, num_layers=2, bidirectional=bidirectional, batch_first=True).eval()
    x = np.random.default_rng(4).standard_normal((B, T, I)).astype(np.float32)
    data = _torch_export(module, x)
    model = onnx.load_from_string(data)
    ops = {n.op_type for n in model.graph.node}
    assert kind in ops
    if kind == "GRU":   # what the exporter actually writes (pytorch#189225 concerns the dynamo exporter)
        lbr = [a.i for n in model.graph.node if n.op_type == "GRU" for a in n.attribute
               if a.name == "linear_before_reset"]
        assert lbr and all(v == 1 for v in lbr)
    with torch.no_grad():
        out = module(torch.from_numpy(x))
    y_t, h_t = out[0].numpy(), (out[1][0] if kind == "LSTM" else out[1]).numpy()
    sess = InferenceSession(data)
    name = sess.get_inputs()[0].name
    y, h = sess.run(None, {name: x})[:2]
    np.testing.assert_allclose(y, y_t, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h, h_t, rtol=1e-5, atol=1e-5)
    ort_y = _ort_run(model, {name: x})[0]
    np.testing.assert_allclose(y, ort_y, rtol=1e-5, atol=1e-5)


def test_gru_linear_before_reset_is_honoured():
    """The same weights under lbr=0 and lbr=1 give different outputs, each matching ORT:
    a converter that ignored the attribute (the exporter-bug symptom) would fail one."""
    m0, feeds, w = build_rnn("GRU", lbr=0, initial=True)
    m1, _, _ = build_rnn("GRU", lbr=1, initial=True, weights=w)
    y0 = InferenceSession(m0).run(["Y"], feeds)[0]
    y1 = InferenceSession(m1).run(["Y"], feeds)[0]
    assert np.abs(y0 - y1).max() > 1e-3
    np.testing.assert_allclose(y0, _ort_run(m0, feeds, ["Y"])[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y1, _ort_run(m1, feeds, ["Y"])[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("in_dir,out_dir,in_axis,out_axis", [(0, 0, 0, 0), (1, 0, 1, 1), (0, 1, 1, 0), (1, 1, 0, 1)])
def test_scan_matches_onnxruntime(in_dir, out_dir, in_axis, out_axis):
    """Scan with a running state and two scan outputs, any axes and directions,
    the body reading a value from the outer graph."""
    f = TensorProto.FLOAT
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_t"], ["s_sum"]),
         helper.make_node("Mul", ["s_sum", "scale"], ["s_out"]),
         helper.make_node("Tanh", ["s_out"], ["y_t"]),
         helper.make_node("Identity", ["x_t"], ["x_copy"])],
        "body", [_vi("s_in", f, None), _vi("x_t", f, None)],
        [_vi("s_out", f, None), _vi("y_t", f, None), _vi("x_copy", f, None)])
    node = helper.make_node("Scan", ["s0", "X"], ["s_n", "Y", "Xc"], name="scan", body=body, num_scan_inputs=1,
                            scan_input_axes=[in_axis], scan_input_directions=[in_dir],
                            scan_output_axes=[out_axis, out_axis], scan_output_directions=[out_dir, out_dir])
    x = np.random.default_rng(0).standard_normal((5, 3, 4)).astype(np.float32)
    s0 = np.zeros((3, 4) if in_axis == 0 else (5, 4), np.float32)
    model = _model([node], [_vi("s0", f, list(s0.shape)), _vi("X", f, [5, 3, 4])],
                   [_vi("s_n", f, None), _vi("Y", f, None), _vi("Xc", f, None)],
                   [numpy_helper.from_array(np.float32(0.7).reshape(()), "scale")])
    feeds = {"s0": s0, "X": x}
    want = _ort_run(model, feeds)
    got = InferenceSession(model).run(None, feeds)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)
