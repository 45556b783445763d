"""Fuzzing ONNX files through `fastrnn.interop.onnx.InferenceSession`.

Seed models (built with tests/test_interop_onnx.py's builders): RNN (Relu), GRU
(both linear_before_reset forms, bidirectional with sequence_lens and initial
states), LSTM with peepholes, and an LSTM inside glue ops (Squeeze, Gather,
Gemm, Softmax).

- Byte mutations of the serialized models (bit flips, byte insertions,
  deletions, overwrites, truncations, chunk duplications; seeded).
- Structural mutations of the protobuf: attributes of the wrong type or out of
  range, huge or negative hidden_size, weight tensors of the wrong shape or
  dtype, tensor data that does not match its dims, missing and dangling inputs,
  outputs nothing produces, cycles, negative and huge dims in glue ops, bad feeds.

Every outcome must be one of: the load and run succeed (and then the outputs
agree with onnxruntime whenever onnxruntime also accepts the model and gives
finite outputs; otherwise they have onnxruntime's shapes), or a clean Python
exception (ValueError, TypeError, KeyError, NotImplementedError, MemoryError,
protobuf's DecodeError, onnx's own errors) raised by the load or the run. Never
a crash, a hang, or an IndexError/AttributeError/... leaking out of the parser.

All the cases run in child interpreters (this file run as a script), one batch
per child; each case is printed before it runs, so a segfault or a hang is
reported with its case.
"""
import json
import os
import sys

import numpy as np
import pytest
from conftest import run_fuzz_child

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS_DIR)

N_BYTE_CASES = 4000          # per batch below; the whole file stays well under a minute
BYTE_BATCHES = ("bytes-0", "bytes-1")


# ---------------------------------------------------------------------------
# Seed models (child side)

def seed_models():
    """name -> (ModelProto, feeds)."""
    from onnx import TensorProto, helper, numpy_helper
    from test_interop_onnx import B, H, build_rnn      # the shared builders
    out = {}
    out["rnn_relu"] = build_rnn("RNN", acts=["Relu"], seq_lens=True)[:2]
    out["gru"] = build_rnn("GRU", lbr=1, initial=True)[:2]
    out["gru_bi"] = build_rnn("GRU", lbr=0, direction="bidirectional", seq_lens=True, initial=True)[:2]
    out["lstm_peep"] = build_rnn("LSTM", peep=True, initial=True, direction="reverse")[:2]
    model, feeds, _ = build_rnn("LSTM", outputs=("Y", "", ""))
    g = model.graph
    rng = np.random.default_rng(3)
    g.initializer.extend([numpy_helper.from_array(np.int64([1]), "ax1"),
                          numpy_helper.from_array(np.int64(-1), "last"),
                          numpy_helper.from_array(rng.standard_normal((2, H)).astype(np.float32), "Wd"),
                          numpy_helper.from_array(rng.standard_normal((2,)).astype(np.float32), "bd")])
    g.node.extend([helper.make_node("Squeeze", ["Y", "ax1"], ["y3"], name="sq"),
                   helper.make_node("Gather", ["y3", "last"], ["yl"], name="ga", axis=0),
                   helper.make_node("Gemm", ["yl", "Wd", "bd"], ["logits"], name="fc", transB=1),
                   helper.make_node("Softmax", ["logits"], ["p"], name="softmax")])
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info("p", TensorProto.FLOAT, [B, 2])])
    out["lstm_glue"] = (model, feeds)
    return out


# ---------------------------------------------------------------------------
# Outcome checks (child side)

def clean_exceptions():
    from google.protobuf.message import DecodeError
    allowed = [ValueError, TypeError, KeyError, NotImplementedError, MemoryError, DecodeError]
    try:
        import onnx.checker
        allowed.append(onnx.checker.ValidationError)
    except (ImportError, AttributeError):
        pass
    return tuple(allowed)


_ORT_REFUSED = object()


def _ort_outputs(blob_or_model, feeds):
    import onnxruntime as ort
    blob = blob_or_model if isinstance(blob_or_model, bytes) else blob_or_model.SerializeToString()
    try:
        so = ort.SessionOptions()
        so.log_severity_level = 4
        sess = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
        return sess.run(None, feeds)
    except Exception:  # noqa: BLE001 - onnxruntime refusing is an allowed outcome
        return _ORT_REFUSED


def judge(model_or_blob, feeds, compare=True):
    """Load and run with fastrnn; returns the outcome label, raises AssertionError on a bad outcome."""
    from fastrnn.interop.onnx import InferenceSession
    ok = clean_exceptions()
    try:
        sess = InferenceSession(model_or_blob)
    except ok as e:
        return f"load refused: {type(e).__name__}"
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"load raised an unclean {type(e).__name__}: {e}") from e
    try:
        outs = sess.run(None, feeds)
    except ok as e:
        return f"run refused: {type(e).__name__}"
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"run raised an unclean {type(e).__name__}: {e}") from e
    if not compare:
        return "ran"
    want = _ort_outputs(model_or_blob, feeds)
    if want is _ORT_REFUSED:
        return "ran (onnxruntime refused)"
    assert len(outs) == len(want), f"{len(outs)} outputs, onnxruntime gives {len(want)}"
    # onnxruntime is a reference for finite data only: its activations swallow NaN
    # (a GRU with NaN biases gives finite outputs there), fastrnn's propagate it
    given = list(feeds.values()) + list(sess._graph.consts.values())
    finite_in = all(np.isfinite(a).all() for a in map(np.asarray, given) if a.dtype.kind == "f")
    if not finite_in or not all(np.isfinite(w).all() for w in want if np.asarray(w).dtype.kind == "f"):
        for g, w in zip(outs, want):
            assert np.shape(g) == np.shape(w), f"shape {np.shape(g)}, onnxruntime {np.shape(w)}"
        return "ran (non-finite, shapes agree)"
    for k, (g, w) in enumerate(zip(outs, want)):
        assert np.shape(g) == np.shape(w), f"output {k}: shape {np.shape(g)}, onnxruntime {np.shape(w)}"
        if np.asarray(w).dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4, err_msg=f"output {k}")
        else:
            assert np.array_equal(g, w), f"output {k}"
    return "ran (agrees with onnxruntime)"


# ---------------------------------------------------------------------------
# Byte mutations

def mutate_bytes(blob, rng):
    """One to three random edits of `blob`."""
    b = bytearray(blob)
    for _ in range(int(rng.choice([1, 1, 1, 2, 3]))):
        kind = int(rng.choice([0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5]))   # mostly bit flips: they keep the framing
        n = len(b)
        if n == 0:
            b = bytearray(rng.integers(0, 256, 8, dtype=np.uint8).tobytes())
            continue
        at = int(rng.integers(0, n))
        if kind == 0:                                   # bit flip
            b[at] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:                                 # insert random bytes
            b[at:at] = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
        elif kind == 2:                                 # delete a run
            del b[at:at + int(rng.integers(1, 9))]
        elif kind == 3:                                 # overwrite with a "big" varint-ish byte
            b[at] = int(rng.choice([0x00, 0x7F, 0x80, 0xFF]))
        elif kind == 4:                                 # truncate
            b = b[:at]
        else:                                           # duplicate a chunk
            m = int(rng.integers(1, 33))
            b[at:at] = b[at:at + m]
    return bytes(b)


def run_bytes(batch, n):
    seed = BYTE_BATCHES.index(batch)
    models = seed_models()
    names = sorted(models)
    counts = {}
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        name = names[i % len(names)]
        model, feeds = models[name]
        blob = mutate_bytes(model.SerializeToString(), rng)
        print("CASE " + json.dumps({"batch": batch, "index": i, "model": name}), flush=True)
        # onnxruntime is asked only where fastrnn ran: a flipped weight bit may legitimately change
        # the numbers, and then both engines must still agree
        outcome = judge(blob, feeds, compare=True)
        counts[outcome] = counts.get(outcome, 0) + 1
    print("DONE " + json.dumps({"batch": batch, "cases": n, "outcomes": counts}), flush=True)


# ---------------------------------------------------------------------------
# Structural mutations: name -> (seed model, function(model, feeds) -> (model, feeds))

def _node(model, op=None):
    for node in model.graph.node:
        if op is None or node.op_type == op:
            return node
    raise AssertionError(op)


def _set_attr(op, name, value):
    def f(model, feeds):
        from onnx import helper
        node = _node(model, op)
        keep = [a for a in node.attribute if a.name != name]
        del node.attribute[:]
        node.attribute.extend(keep)
        if value is not None:
            node.attribute.extend([helper.make_attribute(name, value)])
        return model, feeds
    return f


def _set_init(name, make):
    def f(model, feeds):
        from onnx import numpy_helper
        inits = model.graph.initializer
        for i, t in enumerate(inits):
            if t.name == name:
                new = make(numpy_helper.to_array(t))
                if not hasattr(new, "dims"):
                    new = numpy_helper.from_array(np.asarray(new), name)
                inits[i].CopyFrom(new)
                return model, feeds
        raise AssertionError(name)
    return f


def _raw_tensor(name, dtype, dims, nbytes):
    """A TensorProto whose dims promise more (or less) data than raw_data holds."""
    from onnx import TensorProto
    t = TensorProto()
    t.name, t.data_type = name, dtype
    t.dims.extend(dims)
    t.raw_data = b"\0" * nbytes
    return t


def _feed(name, make):
    def f(model, feeds):
        feeds = dict(feeds)
        feeds[name] = make(feeds.get(name))
        return model, feeds
    return f


def _rename_input(op, index, new):
    def f(model, feeds):
        node = _node(model, op)
        node.input[index] = new
        return model, feeds
    return f


def _drop_graph_input(name):
    def f(model, feeds):
        keep = [vi for vi in model.graph.input if vi.name != name]
        del model.graph.input[:]
        model.graph.input.extend(keep)
        return model, {k: v for k, v in feeds.items() if k != name}
    return f


def _rename_attr(op, old, new):
    def f(model, feeds):
        for a in _node(model, op).attribute:
            if a.name == old:
                a.name = new
                return model, feeds
        raise AssertionError(old)
    return f


def _cycle(model, feeds):
    nodes = model.graph.node
    nodes[0].input[0] = nodes[-1].output[0]
    return model, feeds


def _self_loop(model, feeds):
    node = model.graph.node[0]
    node.input[0] = node.output[0]
    return model, feeds


def _dangling_output(model, feeds):
    from onnx import TensorProto, helper
    model.graph.output.extend([helper.make_tensor_value_info("nobody_makes_me", TensorProto.FLOAT, [1])])
    return model, feeds


def _glue_input(op, index, tensor_name, value):
    """Point input `index` of the first `op` node at a new initializer `value`."""
    def f(model, feeds):
        from onnx import numpy_helper
        model.graph.initializer.extend([numpy_helper.from_array(np.asarray(value), tensor_name)])
        _node(model, op).input[index] = tensor_name
        return model, feeds
    return f


def _add_node(op, inputs, consts, **attrs):
    """Append a node reading the LSTM's Y (and new constants) whose output becomes a graph output."""
    def f(model, feeds):
        from onnx import TensorProto, helper, numpy_helper
        for n, v in consts.items():
            model.graph.initializer.extend([numpy_helper.from_array(np.asarray(v), n)])
        model.graph.node.extend([helper.make_node(op, inputs, ["extra_out"], name="extra", **attrs)])
        model.graph.output.extend([helper.make_tensor_value_info("extra_out", TensorProto.FLOAT, None)])
        return model, feeds
    return f


def _empty_inputs(model, feeds):
    node = _node(model, "LSTM")
    del node.input[:]
    return model, feeds


def _wrong_elem_type(model, feeds):
    from onnx import TensorProto
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64
    return model, feeds


def _negative_dim(model, feeds):
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = -4
    return model, feeds


def structural_cases():
    from onnx import TensorProto
    big = 1 << 40
    c = {}
    # attributes of the wrong type or value
    c["hidden_size str"] = ("gru", _set_attr("GRU", "hidden_size", "six"))
    c["hidden_size float"] = ("gru", _set_attr("GRU", "hidden_size", 6.0))
    c["hidden_size huge"] = ("gru", _set_attr("GRU", "hidden_size", big))
    c["hidden_size negative"] = ("lstm_peep", _set_attr("LSTM", "hidden_size", -6))
    c["hidden_size zero"] = ("rnn_relu", _set_attr("RNN", "hidden_size", 0))
    c["hidden_size list"] = ("gru", _set_attr("GRU", "hidden_size", [6, 6]))
    c["direction int"] = ("gru", _set_attr("GRU", "direction", 1))
    c["direction unknown"] = ("gru", _set_attr("GRU", "direction", "sideways"))
    c["direction list"] = ("gru", _set_attr("GRU", "direction", ["forward"]))
    c["layout 2"] = ("lstm_peep", _set_attr("LSTM", "layout", 2))
    c["layout str"] = ("lstm_peep", _set_attr("LSTM", "layout", "one"))
    c["linear_before_reset str"] = ("gru", _set_attr("GRU", "linear_before_reset", "yes"))
    c["linear_before_reset 7"] = ("gru", _set_attr("GRU", "linear_before_reset", 7))
    c["activations int"] = ("rnn_relu", _set_attr("RNN", "activations", 3))
    c["activations unknown"] = ("rnn_relu", _set_attr("RNN", "activations", ["Swish"]))
    c["activations too many"] = ("rnn_relu", _set_attr("RNN", "activations", ["Relu", "Tanh", "Relu"]))
    c["input_forget str"] = ("lstm_peep", _set_attr("LSTM", "input_forget", "no"))
    # a misspelled attribute must not fall back to the default (Relu RNN run as tanh, reverse as forward, ...)
    c["typo activations"] = ("rnn_relu", _rename_attr("RNN", "activations", "acuivations"))
    c["typo direction"] = ("lstm_peep", _rename_attr("LSTM", "direction", "dirmction"))
    c["typo linear_before_reset"] = ("gru", _rename_attr("GRU", "linear_before_reset", "linear_bevore_reset"))
    c["typo Gather axis"] = ("lstm_glue", _rename_attr("Gather", "axis", "axys"))
    c["typo Gemm transB"] = ("lstm_glue", _rename_attr("Gemm", "transB", "transX"))
    # weights of the wrong shape or type
    c["W 2-d"] = ("gru", _set_init("W", lambda w: w[0]))
    c["W one row short"] = ("gru", _set_init("W", lambda w: w[:, 1:]))
    c["R not square"] = ("lstm_peep", _set_init("R", lambda w: w[:, :, 1:]))
    c["R 4-d"] = ("gru", _set_init("R", lambda w: w[None]))
    c["B short"] = ("gru", _set_init("B", lambda b: b[:, 1:]))
    c["B 1-d"] = ("gru", _set_init("B", lambda b: b.reshape(-1)))
    c["P short"] = ("lstm_peep", _set_init("P", lambda p: p[:, 1:]))
    c["W int64"] = ("gru", _set_init("W", lambda w: w.astype(np.int64)))
    c["W float16"] = ("gru", _set_init("W", lambda w: w.astype(np.float16)))
    c["W float64, X float32"] = ("gru", _set_init("W", lambda w: w.astype(np.float64)))
    c["W bool"] = ("rnn_relu", _set_init("W", lambda w: w > 0))
    c["W string"] = ("rnn_relu", _set_init("W", lambda w: np.array(["a"] * w.size).reshape(w.shape)))
    c["W raw data short"] = ("gru", _set_init("W", lambda w: _raw_tensor("W", TensorProto.FLOAT, w.shape, 8)))
    c["W dims huge"] = ("gru", _set_init("W", lambda w: _raw_tensor("W", TensorProto.FLOAT, (1, big, 4), 64)))
    c["W dims negative"] = ("gru", _set_init("W", lambda w: _raw_tensor("W", TensorProto.FLOAT, (1, -18, 4), 64)))
    c["W empty"] = ("gru", _set_init("W", lambda w: np.zeros((1, 0, 4), np.float32)))
    c["B NaN"] = ("gru", _set_init("B", lambda b: np.full_like(b, np.nan)))
    c["seq lens negative"] = ("rnn_relu", _feed("seq", lambda s: np.array([-1, 2, 3], np.int32)))
    c["seq lens beyond T"] = ("rnn_relu", _feed("seq", lambda s: np.array([5, 99, 3], np.int32)))
    c["seq lens huge"] = ("rnn_relu", _feed("seq", lambda s: np.array([2 ** 31 - 1, 1, 1], np.int32)))
    c["seq lens wrong length"] = ("rnn_relu", _feed("seq", lambda s: np.array([1, 2], np.int32)))
    c["seq lens 2-d"] = ("rnn_relu", _feed("seq", lambda s: np.array([[1, 2, 3]], np.int32)))
    c["h0 wrong shape"] = ("gru", _feed("h0", lambda h: h[:, :, 1:]))
    c["h0 wrong batch"] = ("gru", _feed("h0", lambda h: h[:, 1:]))
    c["h0 float64"] = ("gru", _feed("h0", lambda h: h.astype(np.float64)))
    c["X 2-d"] = ("gru", _feed("X", lambda x: x[0]))
    c["X int"] = ("gru", _feed("X", lambda x: x.astype(np.int64)))
    c["X wrong features"] = ("gru", _feed("X", lambda x: x[:, :, 1:]))
    c["X zero batch"] = ("lstm_peep", _feed("X", lambda x: x[:, :0]))
    c["X object"] = ("gru", _feed("X", lambda x: x.astype(object)))
    c["X list"] = ("gru", _feed("X", lambda x: x.tolist()))
    c["X None"] = ("gru", _feed("X", lambda x: None))
    c["unknown feed"] = ("gru", _feed("nope", lambda v: np.zeros(1, np.float32)))
    # graph structure
    c["missing X input"] = ("gru", _drop_graph_input("X"))
    c["dangling node input"] = ("gru", _rename_input("GRU", 0, "no_such_tensor"))
    c["dangling weight name"] = ("lstm_peep", _rename_input("LSTM", 2, "no_such_R"))
    c["dangling output"] = ("gru", _dangling_output)
    c["cycle"] = ("lstm_glue", _cycle)
    c["self loop"] = ("gru", _self_loop)
    c["LSTM without inputs"] = ("lstm_glue", _empty_inputs)
    c["X declared int64"] = ("gru", _wrong_elem_type)
    c["X declared negative dim"] = ("gru", _negative_dim)
    # glue ops with bad operands
    c["Gather index out of range"] = ("lstm_glue", _glue_input("Gather", 1, "bad_idx", np.int64(99)))
    c["Squeeze axis not 1"] = ("lstm_glue", _glue_input("Squeeze", 1, "bad_ax", np.int64([0])))
    c["Squeeze axis out of range"] = ("lstm_glue", _glue_input("Squeeze", 1, "bad_ax", np.int64([9])))
    c["Gemm wrong inner size"] = ("lstm_glue", _glue_input("Gemm", 1, "bad_w", np.zeros((2, 5), np.float32)))
    c["Gather axis huge"] = ("lstm_glue", _set_attr("Gather", "axis", 77))
    c["Softmax axis huge"] = ("lstm_glue", _set_attr("Softmax", "axis", -9))
    c["Gemm transB str"] = ("lstm_glue", _set_attr("Gemm", "transB", "yes"))
    c["Reshape impossible"] = ("lstm_glue", _add_node("Reshape", ["Y", "shp"], {"shp": np.int64([7, -1])}))
    c["Reshape two -1"] = ("lstm_glue", _add_node("Reshape", ["Y", "shp"], {"shp": np.int64([-1, -1])}))
    c["Reshape negative"] = ("lstm_glue", _add_node("Reshape", ["Y", "shp"], {"shp": np.int64([-5, 2])}))
    c["Transpose bad perm"] = ("lstm_glue", _add_node("Transpose", ["Y"], {}, perm=[0, 0, 1, 2]))
    c["Concat bad axis"] = ("lstm_glue", _add_node("Concat", ["Y", "Y"], {}, axis=12))
    c["Slice zero step"] = ("lstm_glue", _add_node("Slice", ["Y", "s", "e", "a", "st"],
                                                   {"s": np.int64([0]), "e": np.int64([2]), "a": np.int64([0]),
                                                    "st": np.int64([0])}))
    c["Expand negative"] = ("lstm_glue", _add_node("Expand", ["Y", "shp"], {"shp": np.int64([-3, 1, 1, 1])}))
    c["Expand huge"] = ("lstm_glue", _add_node("Expand", ["Y", "shp"], {"shp": np.int64([big, big, 1, 1])}))
    c["ConstantOfShape negative"] = ("lstm_glue", _add_node("ConstantOfShape", ["shp"], {"shp": np.int64([-2, 3])}))
    c["ConstantOfShape huge"] = ("lstm_glue", _add_node("ConstantOfShape", ["shp"], {"shp": np.int64([big, big])}))
    c["Cast to string"] = ("lstm_glue", _add_node("Cast", ["Y"], {}, to=TensorProto.STRING))
    c["Cast to undefined"] = ("lstm_glue", _add_node("Cast", ["Y"], {}, to=999))
    c["Constant without value"] = ("lstm_glue", _add_node("Constant", [], {}))
    c["Div by zero ints"] = ("lstm_glue", _add_node("Div", ["i1", "i0"], {"i1": np.int64([4]), "i0": np.int64([0])}))
    c["MatMul mismatch"] = ("lstm_glue", _add_node("MatMul", ["Y", "m"], {"m": np.zeros((5, 2), np.float32)}))
    c["unknown op"] = ("lstm_glue", _add_node("Erf", ["Y"], {}))
    c["node without inputs"] = ("lstm_glue", _add_node("Relu", [], {}))
    return c


# Cases that a fix made refusals (each ran, crashed the parser or silently gave a wrong
# answer before): they must stay refused.
MUST_REFUSE = {"typo activations", "typo direction", "typo linear_before_reset", "typo Gather axis",
               "typo Gemm transB", "hidden_size float", "B 1-d", "LSTM without inputs", "Gather index out of range",
               "node without inputs", "Div by zero ints", "Reshape negative"}


def run_structural(n_unused=None):
    import copy
    models = seed_models()
    counts, failures = {}, []
    for name, (seed, mutate) in structural_cases().items():
        model, feeds = models[seed]
        model, feeds = mutate(copy.deepcopy(model), dict(feeds))
        print("CASE " + json.dumps({"batch": "structural", "case": name}), flush=True)
        try:
            outcome = judge(model, feeds, compare=True)
        except AssertionError as e:          # keep going: report every bad case at once
            failures.append(f"{name}: {e}")
            print(f"FAIL {name}: {e}", flush=True)
            continue
        if name in MUST_REFUSE and "refused:" not in outcome:
            failures.append(f"{name}: expected a refusal, got {outcome}")
        counts[outcome] = counts.get(outcome, 0) + 1
        print(f"OUTCOME {name}: {outcome}", flush=True)
    if failures:
        raise SystemExit("structural cases with bad outcomes:\n" + "\n".join(failures))
    print("DONE " + json.dumps({"batch": "structural", "cases": sum(counts.values()), "outcomes": counts}),
          flush=True)


# ---------------------------------------------------------------------------
# The pytest side

def _child(batch, n):
    summary, lines = run_fuzz_child([sys.executable, os.path.abspath(__file__), batch, str(n)], batch, 240)
    print(f"{batch}: {summary['cases']} cases, outcomes {summary['outcomes']}")
    return summary, [ln for ln in lines if ln.startswith("OUTCOME ")]


@pytest.mark.parametrize("batch", BYTE_BATCHES)
def test_byte_mutations_in_subprocess(batch):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    summary, _ = _child(batch, N_BYTE_CASES)
    assert summary["cases"] == N_BYTE_CASES
    ran = sum(v for k, v in summary["outcomes"].items() if k.startswith("ran"))
    refused = summary["cases"] - ran
    assert ran and refused, f"the mutations should give both outcomes: {summary['outcomes']}"


def test_structural_mutations_in_subprocess():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    summary, outcomes = _child("structural", 0)
    print("\n".join(outcomes))
    assert summary["cases"] == len(outcomes) >= 85


if __name__ == "__main__":
    sys.path[:0] = [ROOT, TESTS_DIR]
    which = sys.argv[1]
    if which == "structural":
        run_structural()
    else:
        run_bytes(which, int(sys.argv[2]))
