"""Run ONNX recurrent models on fastrnn, in the form of `onnxruntime.InferenceSession`.

    from fastrnn.interop.onnx import InferenceSession   # was: from onnxruntime import InferenceSession
    sess = InferenceSession("model.onnx")
    name = sess.get_inputs()[0].name
    y, = sess.run(None, {name: x})

The model is parsed with the `onnx` package (an optional extra, imported only
when a session is made). The graph runs in topological order with NumPy; the
`RNN`, `GRU` and `LSTM` operators run on `fastrnn.functional`, their weights
converted from ONNX's layout (LSTM gates i,o,f,c; GRU z,r,h; W/R (D, G*H, ·);
B = [Wb | Rb]; P = [p_i, p_o, p_f]) to PyTorch's and packed once per session.

Supported recurrent attributes: `direction` (forward, reverse, bidirectional),
`layout` 0 and 1, `hidden_size`, `linear_before_reset` (GRU), `input_forget=0`
(LSTM), inputs `sequence_lens`, `initial_h`, `initial_c`, `P`, outputs Y, Y_h,
Y_c (any may be omitted), float32 and float64, and the default activations
(RNN Tanh, or Relu; GRU Sigmoid,Tanh; LSTM Sigmoid,Tanh,Tanh). Other
`activations`, `activation_alpha`/`activation_beta`, `clip` and
`input_forget=1` need engine support that fastrnn does not have yet: they
raise NotImplementedError naming the node and the attribute.

Glue ops: Transpose, Squeeze, Unsqueeze, Reshape, Concat, Slice, Gather,
Shape, Constant, Identity, MatMul, Gemm, Add, Sub, Mul, Div, Relu, Sigmoid,
Tanh, Softmax, LogSoftmax, Cast, and Expand and ConstantOfShape (which
torch.onnx.export writes for zero initial states). Any other op raises NotImplementedError naming
its type and its node.

`export(model, path, opset=17)` writes a fastrnn Sequential (or a functional
Model with one input and one output) as ONNX that onnxruntime runs: Input,
Embedding (Gather), SimpleRNN/GRU/LSTM (RNN/GRU/LSTM ops, layout 0 between
Transposes; LSTM peepholes as P; go_backwards as direction reverse),
Bidirectional (direction bidirectional; merge concat/sum/ave/mul), Dense and
TimeDistributed(Dense) (MatMul, Add, then Relu/Sigmoid/Tanh/Softmax or none),
Activation, Dropout (Identity). Masks (Embedding(mask_zero=True), Masking),
initial states, return_state, stateful, LSTM proj_units and any other layer
raise NotImplementedError naming the layer.
"""
import os

import numpy as np

from .. import functional as F

__all__ = ["InferenceSession", "NodeArg", "export"]


def _import_onnx():
    try:
        import onnx
        import onnx.numpy_helper  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("fastrnn.interop.onnx needs the `onnx` package to read models: "
                          "pip install onnx") from e
    return onnx


class NodeArg:
    """A graph input or output, as onnxruntime's NodeArg: `.name`, `.shape`
    (ints, dimension names as str, or None), `.type` (e.g. 'tensor(float)')."""

    __slots__ = ("name", "shape", "type")

    def __init__(self, name, shape, type):
        self.name, self.shape, self.type = name, shape, type

    def __repr__(self):
        return f"NodeArg(name={self.name!r}, type={self.type!r}, shape={self.shape!r})"


def _value_info_arg(onnx, vi):
    t = vi.type
    if not t.HasField("tensor_type"):
        return NodeArg(vi.name, None, t.WhichOneof("value"))
    tt = t.tensor_type
    type_str = f"tensor({onnx.TensorProto.DataType.Name(tt.elem_type).lower()})"
    shape = None
    if tt.HasField("shape"):
        shape = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                shape.append(int(d.dim_value))
            elif d.HasField("dim_param"):
                shape.append(d.dim_param)
            else:
                shape.append(None)
    return NodeArg(vi.name, shape, type_str)


def _tensor_array(onnx, t):
    """An initializer as an array; a tensor whose type or data is malformed raises ValueError naming it."""
    try:
        return onnx.numpy_helper.to_array(t)
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise ValueError(f"initializer {t.name!r}: cannot read a tensor of data_type {t.data_type} and dims "
                         f"{list(t.dims)} ({type(e).__name__}: {e})") from None


def _node_label(node):
    return f"{node.op_type} node {node.name!r}" if node.name else f"{node.op_type} node (unnamed, outputs {list(node.output)})"


# --------------------------------------------------------------------------- glue ops

def _attrs(onnx, node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _ints(v):
    return [int(i) for i in np.asarray(v).reshape(-1)]


def _sigmoid(x):
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _softmax(x, axis, log):
    m = np.max(x, axis=axis, keepdims=True)
    s = x - m
    if log:
        return s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))
    e = np.exp(s)
    return e / np.sum(e, axis=axis, keepdims=True)


def _softmax_op(x, at, opset, log):
    if opset >= 13:
        return _softmax(x, int(at.get("axis", -1)), log)
    axis = int(at.get("axis", 1))      # before opset 13: coerce to 2-d at axis
    axis = axis + x.ndim if axis < 0 else axis
    shape = x.shape
    rows = int(np.prod(shape[:axis], dtype=np.int64))
    return _softmax(x.reshape(rows, -1), 1, log).reshape(shape)


def _div(a, b):
    if np.issubdtype(a.dtype, np.integer):
        if np.any(b == 0):
            raise ValueError("integer division by zero")
        q = np.abs(a) // np.abs(b)
        return (q * (np.sign(a) * np.sign(b))).astype(np.result_type(a, b))
    return a / b


def _reshape(x, shape, allowzero):
    shape = _ints(shape)
    if any(s < -1 for s in shape):
        raise ValueError(f"shape {shape}: expected sizes >= -1 (-1 infers one size)")
    if not allowzero:
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _slice(x, starts, ends, axes, steps):
    starts, ends = _ints(starts), _ints(ends)
    axes = list(range(len(starts))) if axes is None else _ints(axes)
    steps = [1] * len(starts) if steps is None else _ints(steps)
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = a + x.ndim if a < 0 else a
        index[a] = slice(s, e, st)
    return x[tuple(index)]


def _unsqueeze(x, axes):
    rank = x.ndim + len(axes)
    axes = sorted(a + rank if a < 0 else a for a in axes)
    for a in axes:
        x = np.expand_dims(x, a)
    return x


def _squeeze(x, axes):
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(a + x.ndim if a < 0 else a for a in axes))


def _gemm(a, b, c, at):
    if int(at.get("transA", 0)):
        a = a.T
    if int(at.get("transB", 0)):
        b = b.T
    y = a @ b
    alpha, beta = at.get("alpha", 1.0), at.get("beta", 1.0)
    if alpha != 1.0:
        y = y * np.asarray(alpha, y.dtype)
    if c is not None:
        y = y + (c if beta == 1.0 else c * np.asarray(beta, c.dtype))
    return y


def _constant(onnx, node, at):
    if "value" in at:
        return onnx.numpy_helper.to_array(at["value"])
    if "value_float" in at:
        return np.array(at["value_float"], np.float32)
    if "value_floats" in at:
        return np.array(at["value_floats"], np.float32)
    if "value_int" in at:
        return np.array(at["value_int"], np.int64)
    if "value_ints" in at:
        return np.array(at["value_ints"], np.int64)
    raise NotImplementedError(f"{_node_label(node)}: Constant attribute {sorted(at)} is not supported "
                              f"(value, value_float(s), value_int(s) are)")


def _glue(onnx, node, ins, at, opset):
    """Run one non-recurrent op; returns the list of outputs."""
    op = node.op_type
    x = ins[0] if ins else None
    if op == "Identity":
        return [x]
    if op == "Transpose":
        perm = at.get("perm")
        return [np.transpose(x, None if perm is None else list(perm))]
    if op == "Squeeze":
        axes = at.get("axes") if len(ins) < 2 or ins[1] is None else _ints(ins[1])
        return [_squeeze(x, None if axes is None else list(axes))]
    if op == "Unsqueeze":
        axes = at.get("axes") if len(ins) < 2 or ins[1] is None else _ints(ins[1])
        return [_unsqueeze(x, list(axes))]
    if op == "Reshape":
        if len(ins) < 2:      # opset 1-4 attribute form
            return [_reshape(x, at["shape"], 0)]
        return [_reshape(x, ins[1], int(at.get("allowzero", 0)))]
    if op == "Concat":
        return [np.concatenate([i for i in ins if i is not None], axis=int(at["axis"]))]
    if op == "Slice":
        if len(ins) == 1:     # opset 1-9 attribute form
            return [_slice(x, at["starts"], at["ends"], at.get("axes"), None)]
        get = (lambda k: ins[k] if len(ins) > k and ins[k] is not None else None)
        return [_slice(x, ins[1], ins[2], get(3), get(4))]
    if op == "Gather":
        return [np.take(x, ins[1].astype(np.int64), axis=int(at.get("axis", 0)))]
    if op == "Shape":
        s = list(x.shape)
        start, end = int(at.get("start", 0)), at.get("end")
        return [np.array(s[start:None if end is None else int(end)], np.int64)]
    if op == "Constant":
        return [_constant(onnx, node, at)]
    if op == "MatMul":
        return [np.matmul(x, ins[1])]
    if op == "Gemm":
        return [_gemm(x, ins[1], ins[2] if len(ins) > 2 else None, at)]
    if op == "Add":
        return [np.add(x, ins[1])]
    if op == "Sub":
        return [np.subtract(x, ins[1])]
    if op == "Mul":
        return [np.multiply(x, ins[1])]
    if op == "Div":
        return [_div(x, ins[1])]
    if op == "Relu":
        return [np.maximum(x, np.zeros((), x.dtype))]
    if op == "Sigmoid":
        return [_sigmoid(x)]
    if op == "Tanh":
        return [np.tanh(x)]
    if op == "Softmax":
        return [_softmax_op(x, at, opset, False)]
    if op == "LogSoftmax":
        return [_softmax_op(x, at, opset, True)]
    if op == "Expand":       # bidirectional broadcast of x against the shape
        shape = _ints(ins[1])
        return [x * np.ones(shape, x.dtype) if x.dtype != np.bool_ else np.logical_and(x, np.ones(shape, bool))]
    if op == "ConstantOfShape":
        value = onnx.numpy_helper.to_array(at["value"]) if "value" in at else np.zeros(1, np.float32)
        return [np.full(_ints(x), value.reshape(-1)[0], value.dtype)]
    if op == "Cast":
        return [x.astype(onnx.helper.tensor_dtype_to_np_dtype(int(at["to"])))]
    raise NotImplementedError(f"fastrnn.interop.onnx: op {op!r} is not supported "
                              f"({_node_label(node)})")


_GLUE_OPS = frozenset(("Identity", "Transpose", "Squeeze", "Unsqueeze", "Reshape", "Concat", "Slice", "Gather",
                       "Shape", "Constant", "MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Relu", "Sigmoid",
                       "Tanh", "Softmax", "LogSoftmax", "Cast", "Expand", "ConstantOfShape"))
# The attributes each op reads; any other name (a typo, a corrupted file) is refused rather
# than silently replaced by the default. "consumed_inputs" (opset 1) changes nothing.
_KNOWN_ATTRS = {
    "Transpose": {"perm"}, "Squeeze": {"axes"}, "Unsqueeze": {"axes"}, "Reshape": {"shape", "allowzero"},
    "Concat": {"axis"}, "Slice": {"starts", "ends", "axes"}, "Gather": {"axis"}, "Shape": {"start", "end"},
    "Constant": {"value", "value_float", "value_floats", "value_int", "value_ints", "value_string",
                 "value_strings", "sparse_value"},
    "Gemm": {"alpha", "beta", "transA", "transB"}, "Softmax": {"axis"}, "LogSoftmax": {"axis"},
    "Cast": {"to", "saturate"}, "ConstantOfShape": {"value"},
    "RNN": {"activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size", "layout"},
}
_KNOWN_ATTRS["GRU"] = _KNOWN_ATTRS["RNN"] | {"linear_before_reset"}
_KNOWN_ATTRS["LSTM"] = _KNOWN_ATTRS["RNN"] | {"input_forget"}


def _check_attr_names(node, at):
    unknown = sorted(set(at) - _KNOWN_ATTRS.get(node.op_type, set()) - {"consumed_inputs"})
    if unknown:
        raise ValueError(f"{_node_label(node)}: unknown attribute(s) {unknown} for {node.op_type}; "
                         f"it reads {sorted(_KNOWN_ATTRS.get(node.op_type, ()))}")

# --------------------------------------------------------------------------- recurrent ops

_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
# ONNX gate blocks -> PyTorch order: LSTM iofc -> ifgo, GRU zrh -> rzn
_ORDER = {"RNN": [0], "GRU": [1, 0, 2], "LSTM": [0, 2, 3, 1]}
_DEFAULT_ACTS = {"GRU": ["sigmoid", "tanh"], "LSTM": ["sigmoid", "tanh", "tanh"]}


def _reorder(w, op, H):
    """Rows of one direction's (G*H, ...) array from ONNX gate order to PyTorch's."""
    order = _ORDER[op]
    if len(order) == 1:
        return np.ascontiguousarray(w)
    return np.ascontiguousarray(np.concatenate([w[g * H:(g + 1) * H] for g in order], axis=0))


class _Recurrent:
    """One RNN/GRU/LSTM node: its checked attributes and, once known, its
    converted (and packed) per-direction weights."""

    def __init__(self, node, at):
        self.node = node
        op = self.op = node.op_type
        label = _node_label(node)
        for name in ("activation_alpha", "activation_beta", "clip"):
            if name in at:
                raise NotImplementedError(
                    f"{label}: attribute {name!r} is not supported yet (it needs engine support in fastrnn's kernels)")
        if op == "LSTM" and int(at.get("input_forget", 0)) != 0:
            raise NotImplementedError(
                f"{label}: attribute 'input_forget'=1 is not supported yet (it needs engine support in fastrnn's kernels)")
        direction = at.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else str(direction)
        if direction not in ("forward", "reverse", "bidirectional"):
            raise ValueError(f"{label}: direction must be forward, reverse or bidirectional, got {direction!r}")
        self.direction = direction
        self.D = 2 if direction == "bidirectional" else 1
        self.layout = int(at.get("layout", 0))
        if self.layout not in (0, 1):
            raise ValueError(f"{label}: layout must be 0 or 1, got {self.layout}")
        self.hidden_size = at.get("hidden_size")
        if self.hidden_size is not None and not isinstance(self.hidden_size, int):
            raise TypeError(f"{label}: attribute 'hidden_size' must be an int, got {self.hidden_size!r}")
        self.linear_before_reset = bool(int(at.get("linear_before_reset", 0)))
        acts = at.get("activations")
        self.nonlinearity = ["tanh"] * self.D
        if acts is not None:
            acts = [(a.decode() if isinstance(a, bytes) else str(a)).lower() for a in acts]
            if op == "RNN":
                if len(acts) not in (1, self.D) or any(a not in ("tanh", "relu") for a in acts):
                    raise NotImplementedError(
                        f"{label}: attribute 'activations'={acts} is not supported yet; RNN supports Tanh and Relu "
                        f"(others need engine support in fastrnn's kernels)")
                self.nonlinearity = acts * self.D if len(acts) == 1 else acts
            else:
                d = _DEFAULT_ACTS[op]
                if acts not in (d, d * self.D):
                    raise NotImplementedError(
                        f"{label}: attribute 'activations'={acts} is not supported yet; {op} supports only the "
                        f"default {d} (others need engine support in fastrnn's kernels)")
        self.weights = None      # per direction: dict(w_ih, w_hh, b_ih, b_hh, w_peep, packed)

    def convert(self, W, R, B, P, pack):
        op, label = self.op, _node_label(self.node)
        G = _GATES[op]
        if W.ndim != 3 or R.ndim != 3 or W.shape[0] != self.D or R.shape[0] != self.D:
            raise ValueError(f"{label}: W and R must be (num_directions={self.D}, {G}*H, ·), "
                             f"got {W.shape} and {R.shape}")
        H = R.shape[-1]
        if self.hidden_size is not None and int(self.hidden_size) != H:
            raise ValueError(f"{label}: hidden_size={self.hidden_size} but R has shape {R.shape}")
        if W.shape[1] != G * H or R.shape[1] != G * H:
            raise ValueError(f"{label}: W and R must have {G}*hidden_size={G * H} rows, got {W.shape} and {R.shape}")
        dt = W.dtype
        if dt not in (np.float32, np.float64):
            raise TypeError(f"{label}: only float32 and float64 are supported, got {dt}")
        for name, arr, width in (("B", B, 2 * G * H), ("P", P if op == "LSTM" else None, 3 * H)):
            if arr is not None and arr.shape != (self.D, width):
                raise ValueError(f"{label}: {name} must be (num_directions={self.D}, {width}), got {arr.shape}")
        out = []
        for d in range(self.D):
            w_ih = _reorder(W[d], op, H)
            w_hh = _reorder(R[d].astype(dt, copy=False), op, H)
            b_ih = b_hh = w_peep = None
            if B is not None:
                b_ih = _reorder(B[d, :G * H].astype(dt, copy=False), op, H)
                b_hh = _reorder(B[d, G * H:].astype(dt, copy=False), op, H)
            if P is not None and op == "LSTM":
                p = P[d].astype(dt, copy=False)
                w_peep = np.ascontiguousarray(np.stack([p[0:H], p[2 * H:3 * H], p[H:2 * H]]))
            packed = None
            if pack:
                family = op.lower()
                packed = F.pack_weights(family, w_ih, w_hh, linear_before_reset=self.linear_before_reset)
            out.append(dict(w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, w_peep=w_peep, packed=packed))
        return out

    def run(self, ins, weights):
        op, label = self.op, _node_label(self.node)
        get = (lambda k: ins[k] if len(ins) > k else None)
        X, seq, h0, c0 = get(0), get(4), get(5), get(6)
        if X.dtype != weights[0]["w_ih"].dtype:
            raise TypeError(f"{label}: X is {X.dtype} but W is {weights[0]['w_ih'].dtype}")
        if X.ndim != 3:
            raise ValueError(f"{label}: X must be 3-d, got shape {X.shape}")
        batch_first = self.layout == 1
        T, Bn = (X.shape[1], X.shape[0]) if batch_first else (X.shape[0], X.shape[1])
        lengths = None
        if seq is not None:
            lengths = np.asarray(seq).astype(np.int64).reshape(-1)
            if lengths.size == Bn and np.all(lengths == T):
                lengths = None
        if batch_first:           # initial states (B, D, H) -> (D, B, H)
            h0 = None if h0 is None else np.swapaxes(h0, 0, 1)
            c0 = None if c0 is None else np.swapaxes(c0, 0, 1)
        ys, hs, cs = [], [], []
        for d in range(self.D):
            w = weights[d]
            reverse = self.direction == "reverse" or d == 1
            hd = None if h0 is None else np.ascontiguousarray(h0[d])
            common = dict(reverse=reverse, lengths=lengths, batch_first=batch_first, training=False,
                          packed=w["packed"])
            if op == "RNN":
                y, h_n, _ = F.rnn_forward(X, hd, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"],
                                          nonlinearity=self.nonlinearity[d], **common)
            elif op == "GRU":
                y, h_n, _ = F.gru_forward(X, hd, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"],
                                          linear_before_reset=self.linear_before_reset, **common)
            else:
                cd = None if c0 is None else np.ascontiguousarray(c0[d])
                y, (h_n, c_n), _ = F.lstm_forward(X, (hd, cd), w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"],
                                                  w_peep=w["w_peep"], **common)
                cs.append(c_n)
            ys.append(y)
            hs.append(h_n)
        if lengths is not None and not lengths.all():
            # onnxruntime gives zero final states (not initial_h/initial_c) to sequences of length 0
            empty = lengths == 0
            for s in hs + cs:
                s[empty] = 0
        # layout 0: Y (T, D, B, H), states (D, B, H); layout 1: Y (B, T, D, H), states (B, D, H)
        axis = 2 if batch_first else 1
        state_axis = 1 if batch_first else 0
        if self.D == 1:         # views, no copies
            Y = np.expand_dims(ys[0], axis)
            Y_h = np.expand_dims(hs[0], state_axis)
            Y_c = np.expand_dims(cs[0], state_axis) if cs else None
        else:
            Y = np.stack(ys, axis=axis)
            Y_h = np.stack(hs, axis=state_axis)
            Y_c = np.stack(cs, axis=state_axis) if cs else None
        return [Y, Y_h, Y_c][:len(self.node.output)]


# --------------------------------------------------------------------------- session

class InferenceSession:
    """Run an ONNX model with fastrnn, in the form of `onnxruntime.InferenceSession`.

    `path_or_bytes` is a file path, the model's serialized bytes, or an
    `onnx.ModelProto`. Extra arguments that onnxruntime takes (`sess_options`,
    `providers`, ...) are accepted and ignored.
    """

    def __init__(self, path_or_bytes, sess_options=None, providers=None, provider_options=None, **kwargs):
        onnx = self._onnx = _import_onnx()
        if isinstance(path_or_bytes, onnx.ModelProto):
            model = path_or_bytes
        elif isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
            model = onnx.load_from_string(bytes(path_or_bytes))
        elif isinstance(path_or_bytes, (str, os.PathLike)):
            model = onnx.load(os.fspath(path_or_bytes))
        else:
            raise TypeError(f"path_or_bytes: expected a path, bytes or an onnx.ModelProto, "
                            f"got {type(path_or_bytes).__name__}")
        self._model = model
        graph = model.graph
        self._opset = 1
        for o in model.opset_import:
            if o.domain in ("", "ai.onnx"):
                self._opset = int(o.version)
        self._consts = {t.name: _tensor_array(onnx, t) for t in graph.initializer}
        self._inputs = [_value_info_arg(onnx, vi) for vi in graph.input if vi.name not in self._consts]
        self._outputs = [_value_info_arg(onnx, vi) for vi in graph.output]
        self._input_types = {a.name: a.type for a in self._inputs}
        self._nodes = self._toposort(graph)
        self._prepared = {}
        for i, node in enumerate(self._nodes):
            if node.domain not in ("", "ai.onnx"):
                raise NotImplementedError(f"fastrnn.interop.onnx: op {node.domain}.{node.op_type!r} is not "
                                          f"supported ({_node_label(node)})")
            at = _attrs(onnx, node)
            if node.op_type in _GATES or node.op_type in _GLUE_OPS:
                _check_attr_names(node, at)
            if node.op_type in _GATES:
                rec = _Recurrent(node, at)
                names = list(node.input) + [""] * 8
                if not (names[0] and names[1] and names[2]):
                    raise ValueError(f"{_node_label(node)}: inputs X, W and R are required, got {list(node.input)}")
                w_names = [names[1], names[2], names[3], names[7] if node.op_type == "LSTM" else ""]
                if all(n == "" or n in self._consts for n in w_names):
                    W, R, B, P = (self._consts[n] if n else None for n in w_names)
                    rec.weights = rec.convert(W, R, B, P, pack=True)
                self._prepared[i] = (rec, at)
            elif node.op_type in _GLUE_OPS:
                if node.op_type == "Constant":
                    at = dict(at, _value=_constant(onnx, node, at))
                self._prepared[i] = (None, at)
            else:
                raise NotImplementedError(f"fastrnn.interop.onnx: op {node.op_type!r} is not supported "
                                          f"({_node_label(node)})")

    @staticmethod
    def _toposort(graph):
        nodes = list(graph.node)
        produced = {}
        for i, n in enumerate(nodes):
            for o in n.output:
                if o:
                    produced[o] = i
        order, state = [], [0] * len(nodes)

        def visit(i):
            stack = [(i, iter(nodes[i].input))]
            state[i] = 1
            while stack:
                j, it = stack[-1]
                for name in it:
                    k = produced.get(name)
                    if k is not None and state[k] == 0:
                        state[k] = 1
                        stack.append((k, iter(nodes[k].input)))
                        break
                    if k is not None and state[k] == 1:
                        raise ValueError(f"the graph has a cycle through {name!r}")
                else:
                    stack.pop()
                    state[j] = 2
                    order.append(nodes[j])

        for i in range(len(nodes)):
            if state[i] == 0:
                visit(i)
        return order

    def get_inputs(self):
        return list(self._inputs)

    def get_outputs(self):
        return list(self._outputs)

    def get_modelmeta(self):
        return self._model.metadata_props

    def get_providers(self):
        return ["FastrnnCPU"]

    def run(self, output_names, input_feed, run_options=None):
        """Outputs named in `output_names` (None or []: all), in that order, for the feeds `{name: array}`."""
        names = [o.name for o in self._outputs] if not output_names else list(output_names)
        env = dict(self._consts)
        known = set(self._input_types) | set(self._consts)
        for name, value in input_feed.items():
            if name not in known:
                raise ValueError(f"input {name!r} is not an input of the model; inputs: {sorted(self._input_types, key=str)}")
            arr = np.asarray(value)
            want = self._input_types.get(name)
            if want is not None and want.startswith("tensor("):
                have = f"tensor({self._type_name(arr.dtype)})"
                if have != want:
                    raise TypeError(f"input {name!r}: expected {want}, got {have}")
            env[name] = arr
        missing = [n for n in self._input_types if n not in env]
        needed = self._needed(names)
        missing = [n for n in missing if n in needed]
        if missing:
            raise ValueError(f"missing inputs: {missing}")
        for i, node in enumerate(self._nodes):
            if not any(o in needed for o in node.output):
                continue
            rec, at = self._prepared[i]
            ins = []
            for n in node.input:
                if n == "":
                    ins.append(None)
                elif n in env:
                    ins.append(env[n])
                else:
                    raise ValueError(f"{_node_label(node)}: input {n!r} is not available")
            if rec is not None:
                weights = rec.weights
                if weights is None or any(n in input_feed for n in self._weight_names(node)):
                    g = (lambda k: ins[k] if len(ins) > k else None)
                    weights = rec.convert(g(1), g(2), g(3), g(7) if node.op_type == "LSTM" else None, pack=False)
                outs = rec.run(ins, weights)
            elif node.op_type == "Constant":
                outs = [at["_value"]]
            else:
                try:
                    outs = _glue(self._onnx, node, ins, at, self._opset)
                except (IndexError, KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError,
                        OverflowError) as e:        # bad operands of a malformed model
                    raise ValueError(f"{_node_label(node)}: {type(e).__name__}: {e}") from e
            for name, value in zip(node.output, outs):
                if name:
                    env[name] = value
        result = []
        for n in names:
            if n not in env:
                raise ValueError(f"output {n!r} is not produced by the model")
            result.append(env[n])
        return result

    @staticmethod
    def _weight_names(node):
        names = list(node.input) + [""] * 8
        return [n for n in (names[1], names[2], names[3], names[7]) if n]

    def _type_name(self, dtype):
        onnx = self._onnx
        return onnx.TensorProto.DataType.Name(onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))).lower()

    def _needed(self, outputs):
        producers = {}
        for node in self._nodes:
            for o in node.output:
                if o:
                    producers[o] = node
        needed, stack = set(), list(outputs)
        while stack:
            n = stack.pop()
            if n in needed:
                continue
            needed.add(n)
            node = producers.get(n)
            if node is not None:
                stack.extend(i for i in node.input if i)
                needed.update(o for o in node.output if o)
        return needed


# --------------------------------------------------------------------------- export

_ACT_OPS = {"linear": None, "relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softmax": "Softmax"}
# Keras gate blocks -> ONNX gate blocks: LSTM i,f,c,o -> i,o,f,c; GRU z,r,h -> z,r,h
_TO_ONNX = {"rnn": [0], "gru": [0, 1, 2], "lstm": [0, 3, 1, 2]}
_ONNX_OP = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}


class _Exporter:
    def __init__(self, onnx, dtype):
        self.onnx, self.h = onnx, onnx.helper
        self.dtype = np.dtype(dtype)
        self.nodes, self.inits, self._n = [], [], 0

    def name(self, base):
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, base, value, dtype=None):
        arr = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        n = self.name(base)
        self.inits.append(self.onnx.numpy_helper.from_array(arr.copy(order="C"), n))
        return n

    def op(self, op_type, inputs, base, n_out=1, **attrs):
        outs = [self.name(f"{base}_{op_type}") for _ in range(n_out)]
        self.nodes.append(self.h.make_node(op_type, list(inputs), outs, name=self.name(f"{base}/{op_type}"), **attrs))
        return outs if n_out > 1 else outs[0]

    def activation(self, act, x, who):
        from .. import activations
        key = activations.serialize(act)
        if not isinstance(key, str) or key not in _ACT_OPS:
            raise NotImplementedError(f"fastrnn.interop.onnx.export: activation {key!r} of layer {who!r} is not "
                                      f"supported (linear, relu, sigmoid, tanh, softmax are)")
        op = _ACT_OPS[key]
        if op is None:
            return x
        return self.op(op, [x], who, axis=-1) if op == "Softmax" else self.op(op, [x], who)

    def dense(self, layer, x, who):
        p = layer.params
        y = self.op("MatMul", [x, self.const(f"{who}/kernel", p["kernel"])], who)
        if layer.use_bias:
            y = self.op("Add", [y, self.const(f"{who}/bias", p["bias"])], who)
        return self.activation(layer.activation, y, who)

    def reverse_time(self, x, who):
        """x (B, T, ...) reversed along axis 1."""
        return self.op("Slice", [x, self.const("rev_start", [-1], np.int64),
                                 self.const("rev_end", [np.iinfo(np.int64).min], np.int64),
                                 self.const("rev_axis", [1], np.int64), self.const("rev_step", [-1], np.int64)], who)

    @staticmethod
    def check_recurrent(layer, who):
        from ..layers.recurrent import LSTM
        if layer.stateful:
            raise NotImplementedError(f"fastrnn.interop.onnx.export: layer {who!r}: stateful=True is not supported")
        if layer.return_state:
            raise NotImplementedError(f"fastrnn.interop.onnx.export: layer {who!r}: return_state=True is not "
                                      f"supported")
        if isinstance(layer, LSTM) and layer.proj_units is not None:
            raise NotImplementedError(f"fastrnn.interop.onnx.export: layer {who!r}: LSTM proj_units has no ONNX "
                                      f"equivalent")

    @staticmethod
    def direction_weights(layer):
        """(W (G*H, I), R (G*H, H), B (2*G*H,) or None, P (3H,) or None) in ONNX's layout and gate order."""
        fam, H = layer._family, layer.units
        order = _TO_ONNX[fam]
        G = len(order)

        def rows(a):          # Keras (rows, G*H) -> ONNX (G*H, rows)
            a = np.asarray(a)
            return np.concatenate([a[:, g * H:(g + 1) * H] for g in order], axis=1).T

        def vec(b):
            return np.concatenate([b[g * H:(g + 1) * H] for g in order])

        p = layer.params
        W, R = rows(p["kernel"]), rows(p["recurrent_kernel"])
        B = None
        if layer.use_bias:
            b = np.asarray(p["bias"])
            if fam == "gru" and layer.reset_after:
                B = np.concatenate([vec(b[0]), vec(b[1])])
            else:
                B = np.concatenate([vec(b), np.zeros(G * H, b.dtype)])
        P = None
        if fam == "lstm" and layer.peepholes:
            pk = np.asarray(p["peephole_kernel"])      # rows i, f, o -> ONNX p_i, p_o, p_f
            P = np.concatenate([pk[0], pk[2], pk[1]])
        return W, R, B, P

    def recurrent(self, dirs, x, who, merge_mode=None):
        """dirs: the Keras layers, one (single) or two (Bidirectional: forward, backward)."""
        for d in dirs:
            self.check_recurrent(d, who)
        first = dirs[0]
        fam, H = first._family, first.units
        if len(dirs) == 2:
            f, b = dirs
            if type(f) is not type(b) or f.units != b.units or f.use_bias != b.use_bias or \
                    f._engine_options() != b._engine_options() or \
                    (fam == "lstm" and f.peepholes != b.peepholes):
                raise NotImplementedError(f"fastrnn.interop.onnx.export: layer {who!r}: a backward_layer that "
                                          f"differs from the forward layer is not supported")
            # ONNX direction 0 runs forward, 1 in reverse
            onnx_dirs = [f, b] if not f.go_backwards else [b, f]
            direction = "bidirectional"
        else:
            onnx_dirs = dirs
            direction = "reverse" if first.go_backwards else "forward"
        ws = [self.direction_weights(d) for d in onnx_dirs]
        D = len(ws)
        ins = [self.op("Transpose", [x], who, perm=[1, 0, 2]),
               self.const(f"{who}/W", np.stack([w[0] for w in ws])),
               self.const(f"{who}/R", np.stack([w[1] for w in ws]))]
        ins.append(self.const(f"{who}/B", np.stack([w[2] for w in ws])) if ws[0][2] is not None else "")
        attrs = dict(hidden_size=H, direction=direction)
        if fam == "gru":
            attrs["linear_before_reset"] = int(first.reset_after)
        if fam == "rnn" and first.activation == "relu":
            attrs["activations"] = ["Relu"] * D
        if ws[0][3] is not None:
            ins += ["", "", "", self.const(f"{who}/P", np.stack([w[3] for w in ws]))]
        Y, Y_h = self.op(_ONNX_OP[fam], ins, who, n_out=2, **attrs)
        idx = [self.const("index", np.array(d, np.int64), np.int64) for d in range(D)]
        if first.return_sequences:
            # per ONNX direction: Y[:, d] (T, B, H) -> (B, T, H), in input time order
            seqs = [self.op("Transpose", [self.op("Gather", [Y, idx[d]], who, axis=1)], who, perm=[1, 0, 2])
                    for d in range(D)]
            # Keras: a go_backwards layer's sequence is in processing order (reversed);
            # Bidirectional flips the backward layer's sequence back
            outs = []
            for k, layer in enumerate(dirs):
                s = seqs[onnx_dirs.index(layer)]
                rev = layer.go_backwards != (k == 1)
                outs.append(self.reverse_time(s, who) if rev else s)
        else:
            outs = [self.op("Gather", [Y_h, idx[onnx_dirs.index(layer)]], who, axis=0) for layer in dirs]
        if len(outs) == 1:
            return outs[0]
        f_out, b_out = outs
        if merge_mode == "concat":
            return self.op("Concat", [f_out, b_out], who, axis=-1)
        if merge_mode == "sum":
            return self.op("Add", [f_out, b_out], who)
        if merge_mode == "mul":
            return self.op("Mul", [f_out, b_out], who)
        if merge_mode == "ave":
            return self.op("Mul", [self.op("Add", [f_out, b_out], who), self.const("half", 0.5)], who)
        raise NotImplementedError(f"fastrnn.interop.onnx.export: layer {who!r}: merge_mode={merge_mode!r} is not "
                                  f"supported (concat, sum, ave, mul are)")

    def layer(self, layer, x, who):
        from ..layers import core, recurrent
        t = type(layer)
        if t is core.Dropout:
            return self.op("Identity", [x], who)
        if t is core.Dense:
            return self.dense(layer, x, who)
        if t is core.Activation:
            return self.activation(layer.activation, x, who)
        if t is core.TimeDistributed and type(layer.layer) is core.Dense:
            return self.dense(layer.layer, x, who)
        if t is core.Embedding:
            if layer.mask_zero:
                raise NotImplementedError(f"fastrnn.interop.onnx.export: layer {who!r}: Embedding(mask_zero=True) "
                                          f"makes a mask; masks are not supported")
            return self.op("Gather", [self.const(f"{who}/embeddings", layer.params["embeddings"]), x], who, axis=0)
        if t in (recurrent.SimpleRNN, recurrent.GRU, recurrent.LSTM):
            return self.recurrent([layer], x, who)
        if t is recurrent.Bidirectional:
            return self.recurrent([layer.forward_layer, layer.backward_layer], x, who, layer.merge_mode)
        inner = f"({type(layer.layer).__name__})" if t is core.TimeDistributed else ""
        raise NotImplementedError(f"fastrnn.interop.onnx.export: layer {who!r} of type {t.__name__}{inner} is not "
                                  f"supported (Input, Embedding, SimpleRNN, GRU, LSTM, Bidirectional, Dense, "
                                  f"TimeDistributed(Dense), Activation, Dropout are)")


def _dims(shape):
    return ["batch" if i == 0 else "time" if i == 1 else f"dim_{i}" if d is None else int(d)
            for i, d in enumerate(shape)]


def export(model, path=None, opset=17):
    """Write a fastrnn `Sequential`, or a functional `Model` with one input and one
    output, as an ONNX model at `path` (a file path or a writable binary file; None:
    write nothing). Returns the `onnx.ModelProto`.

    The ONNX input is batch-first, like the model's: (batch, time, features), or
    (batch, time) integer ids in front of an Embedding, with symbolic batch and
    time dimensions. See the module docstring for the layers supported.
    """
    onnx = _import_onnx()
    from ..layers import core
    from ..models.graph import InputLayer
    from ..models.model import Model
    if not isinstance(model, Model):
        raise TypeError(f"export: model expected a fastrnn Sequential or Model, got {type(model).__name__}")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 14:
        raise ValueError(f"export: opset expected an int >= 14, got {opset!r}")
    if not model.built:
        raise ValueError(f"export: {model.name} is not built; build it (or call it on data) first")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise NotImplementedError(f"export: {model.name} has {len(model.inputs)} inputs and "
                                  f"{len(model.outputs)} outputs; only one input and one output are supported")
    t_in = model.inputs[0]
    dtypes = [l.dtype for l in model._weighted_layers() if not isinstance(l, InputLayer)]
    dtype = np.dtype(dtypes[0]) if dtypes else np.dtype(np.float32)
    ex = _Exporter(onnx, dtype)
    in_name = model.input_names[0]
    # the input's type: ids for an Embedding in front, else the model's float type
    first_users = [n.layer for n in model._nodes if any(t is t_in for t in n.inputs)]
    if any(isinstance(l, core.Embedding) for l in first_users):
        in_dtype = t_in.dtype if t_in.dtype in (np.int32, np.int64) else np.dtype(np.int64)
    else:
        in_dtype = dtype
    names = {id(t_in): in_name}
    for node in model._nodes:
        layer = node.layer
        if node.in_structure != "single" or node.out_structure != "single" or node.n_states:
            raise NotImplementedError(f"export: layer {layer.name!r} of type {type(layer).__name__}: only calls "
                                      f"with one input and one output are supported (no initial states, "
                                      f"return_state, merge layers)")
        if isinstance(layer, core.Masking):
            raise NotImplementedError(f"export: layer {layer.name!r} of type Masking makes a mask; masks are "
                                      f"not supported")
        x = names[id(node.inputs[0])]
        names[id(node.outputs[0])] = ex.layer(layer, x, layer.name)
    out_t = model.outputs[0]
    out_name = model.output_names[0]
    last = names[id(out_t)]
    if last == in_name or not ex.nodes or ex.nodes[-1].output[0] != last:
        ex.nodes.append(onnx.helper.make_node("Identity", [last], [out_name], name=f"{out_name}/Identity"))
    else:
        ex.nodes[-1].output[0] = out_name
    elem = onnx.helper.np_dtype_to_tensor_dtype
    graph = onnx.helper.make_graph(
        ex.nodes, model.name,
        [onnx.helper.make_tensor_value_info(in_name, elem(np.dtype(in_dtype)), _dims(t_in.shape))],
        [onnx.helper.make_tensor_value_info(out_name, elem(dtype), _dims(out_t.shape))],
        initializer=ex.inits)
    opsets = [onnx.helper.make_opsetid("", opset)]
    proto = onnx.helper.make_model(graph, opset_imports=opsets, producer_name="fastrnn")
    proto.ir_version = onnx.helper.find_min_ir_version_for(opsets)   # the oldest that fits: runtimes accept it
    onnx.checker.check_model(proto)
    if path is not None:
        if isinstance(path, (str, os.PathLike)):
            onnx.save(proto, os.fspath(path))
        else:
            path.write(proto.SerializeToString())
    return proto
