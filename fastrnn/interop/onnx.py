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

Recurrent attributes: every one of the current opset: `direction` (forward,
reverse, bidirectional), `layout` 0 and 1, `hidden_size`, `linear_before_reset`
(GRU), `input_forget` (LSTM), `clip`, and `activations` (Sigmoid, Tanh, Relu,
HardSigmoid, LeakyRelu, Affine, ScaledTanh, Elu, Softsign, Softplus,
ThresholdedRelu) with `activation_alpha`/`activation_beta`, consumed in order by
the activations that take them, with onnxruntime's defaults where the lists run
out (LeakyRelu 0.01, HardSigmoid 0.2 and 0.5, Elu 1.0, otherwise 0). Inputs
`sequence_lens`, `initial_h`, `initial_c`, `P`; outputs Y, Y_h, Y_c (any may be
omitted); float32 and float64. The default activations run on the kernels'
fast path; others, `clip` and `input_forget` on their generic one.

Glue ops: Transpose, Squeeze, Unsqueeze, Reshape, Concat, Slice, Gather,
Shape, Constant, Identity, MatMul, Gemm, Add, Sub, Mul, Div, Relu, Sigmoid,
Tanh, Softmax, LogSoftmax, Cast, and Expand and ConstantOfShape (which
torch.onnx.export writes for zero initial states), Sum, Where, ReduceSum, the
logic ops (Not, And, Or, Xor, Equal, Greater, Less, ...) and Scan. Any other op raises NotImplementedError naming
its type and its node.

`export(model, path, opset=17)` writes a fastrnn Sequential or functional Model
(any number of inputs and outputs) as ONNX that onnxruntime runs: Input,
Embedding (Gather; mask_zero makes a mask), Masking, SimpleRNN/GRU/LSTM and
Bidirectional (the RNN/GRU/LSTM operators, layout 0 between Transposes; LSTM
peepholes as P; go_backwards as direction reverse; merge concat/sum/ave/mul/None;
initial states as inputs and return_state as outputs), Dense and
TimeDistributed(Dense) (MatMul, Add, then Relu/Sigmoid/Tanh/Softmax or none),
Activation, Dropout (Identity), Add (Sum) and Concatenate. A recurrent layer
that receives a mask, or an LSTM with proj_units, becomes a Scan over time whose
body is the cell (the operators cannot skip masked steps or project); fastrnn's
session runs Scan too (its steps in Python). stateful layers, Concatenate along the time axis
of masked inputs and any other layer raise NotImplementedError naming the layer.
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


_LOGIC = {"Not": np.logical_not, "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor,
          "Equal": np.equal, "Greater": np.greater, "Less": np.less, "GreaterOrEqual": np.greater_equal,
          "LessOrEqual": np.less_equal}


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
    if op == "Sum":
        out = x
        for other in ins[1:]:
            out = np.add(out, other)
        return [out]
    if op in _LOGIC:
        return [_LOGIC[op](*ins)]
    if op == "Where":
        return [np.where(x, ins[1], ins[2])]
    if op == "ReduceSum":
        axes = at.get("axes") if len(ins) < 2 or ins[1] is None else _ints(ins[1])
        if axes is not None and len(axes) == 0 and int(at.get("noop_with_empty_axes", 0)):
            return [x]
        axes = None if axes is None or len(axes) == 0 else tuple(int(a) for a in axes)
        return [np.sum(x, axis=axes, keepdims=bool(int(at.get("keepdims", 1)))).astype(x.dtype)]
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
                       "Tanh", "Softmax", "LogSoftmax", "Cast", "Expand", "ConstantOfShape", "Sum", "Where",
                       "ReduceSum") + tuple(_LOGIC))
# The attributes each op reads; any other name (a typo, a corrupted file) is refused rather
# than silently replaced by the default. "consumed_inputs" (opset 1) changes nothing.
_KNOWN_ATTRS = {
    "Transpose": {"perm"}, "Squeeze": {"axes"}, "Unsqueeze": {"axes"}, "Reshape": {"shape", "allowzero"},
    "Concat": {"axis"}, "Slice": {"starts", "ends", "axes"}, "Gather": {"axis"}, "Shape": {"start", "end"},
    "Constant": {"value", "value_float", "value_floats", "value_int", "value_ints", "value_string",
                 "value_strings", "sparse_value"},
    "Gemm": {"alpha", "beta", "transA", "transB"}, "Softmax": {"axis"}, "LogSoftmax": {"axis"},
    "Cast": {"to", "saturate"}, "ConstantOfShape": {"value"},
    "ReduceSum": {"axes", "keepdims", "noop_with_empty_axes"},
    "Scan": {"body", "num_scan_inputs", "scan_input_axes", "scan_input_directions", "scan_output_axes",
             "scan_output_directions"},
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
_DEFAULT_ACTS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}
# Which of alpha, beta each activation takes from activation_alpha/activation_beta, and
# onnxruntime's values when those lists run out (the ONNX spec leaves some of them open).
_ACT_PARAMS = {"sigmoid": (), "tanh": (), "relu": (), "softsign": (), "softplus": (),
               "leakyrelu": (0.01,), "thresholdedrelu": (0.0,), "elu": (1.0,),
               "affine": (0.0, 0.0), "scaledtanh": (0.0, 0.0), "hardsigmoid": (0.2, 0.5)}


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
        clip = None if at.get("clip") is None else float(at["clip"])
        if clip is not None and not clip > 0:
            raise ValueError(f"{label}: clip must be positive, got {clip}")
        input_forget = bool(int(at.get("input_forget", 0)))
        if input_forget and op != "LSTM":
            raise ValueError(f"{label}: input_forget is an LSTM attribute, got it on {op}")
        # per direction, the functional call's keywords for them (none for the defaults: the fast path)
        self.cell_kwargs = []
        for acts in self._activations(at, label):
            kw = {}
            if op == "RNN" and acts in (["tanh"], ["relu"]) and clip is None:
                kw["nonlinearity"] = acts[0]
            elif acts != [a.lower() for a in _DEFAULT_ACTS[op]] or clip is not None:
                kw.update(activations=acts, clip=clip)
            if input_forget:
                kw["input_forget"] = True
            self.cell_kwargs.append(kw)
        self.weights = None      # per direction: dict(w_ih, w_hh, b_ih, b_hh, w_peep, packed)

    def _activations(self, at, label):
        """Per direction, the `activations` entries for fastrnn.functional: names, or
        (name, alpha[, beta]) for those that take parameters (ONNX's consumption order)."""
        n = len(_DEFAULT_ACTS[self.op])
        names = at.get("activations")
        if names is None:
            names = _DEFAULT_ACTS[self.op] * self.D
        names = [(a.decode() if isinstance(a, bytes) else str(a)) for a in names]
        if len(names) == n and self.D == 2:
            names = names * 2
        if len(names) != n * self.D:
            raise ValueError(f"{label}: attribute 'activations' must list {n} per direction ({n * self.D} in all), "
                             f"got {len(names)}: {names}")
        alphas = iter(float(v) for v in at.get("activation_alpha", ()))
        betas = iter(float(v) for v in at.get("activation_beta", ()))
        entries = []
        for name in names:
            key = name.lower()
            if key not in _ACT_PARAMS:
                raise NotImplementedError(f"{label}: activation {name!r} is not supported; expected one of "
                                          f"{sorted(_ACT_PARAMS)} (any case)")
            defaults = _ACT_PARAMS[key]
            params = [next(it, d) for it, d in zip((alphas, betas), defaults)]
            entries.append((key, *params) if params else key)
        return [entries[d * n:(d + 1) * n] for d in range(self.D)]

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
            common.update(self.cell_kwargs[d])
            if op == "RNN":
                y, h_n, _ = F.rnn_forward(X, hd, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], **common)
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
        self._graph = _Graph(onnx, graph, self._opset)
        consts = self._graph.consts
        self._inputs = [_value_info_arg(onnx, vi) for vi in graph.input if vi.name not in consts]
        self._outputs = [_value_info_arg(onnx, vi) for vi in graph.output]
        self._input_types = {a.name: a.type for a in self._inputs}

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
        env = dict(self._graph.consts)
        known = set(self._input_types) | set(env)
        for name, value in input_feed.items():
            if name not in known:
                raise ValueError(f"input {name!r} is not an input of the model; "
                                 f"inputs: {sorted(self._input_types, key=str)}")
            arr = np.asarray(value)
            want = self._input_types.get(name)
            if want is not None and want.startswith("tensor("):
                have = f"tensor({self._type_name(arr.dtype)})"
                if have != want:
                    raise TypeError(f"input {name!r}: expected {want}, got {have}")
            env[name] = arr
        needed = self._graph.needed(names)
        missing = [n for n in self._input_types if n not in env and n in needed]
        if missing:
            raise ValueError(f"missing inputs: {missing}")
        self._graph.execute(env, needed, fed=input_feed)
        result = []
        for n in names:
            if n not in env:
                raise ValueError(f"output {n!r} is not produced by the model")
            result.append(env[n])
        return result

    def _type_name(self, dtype):
        onnx = self._onnx
        return onnx.TensorProto.DataType.Name(onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))).lower()


class _Graph:
    """One graph's nodes (the model's, or a Scan body's), in topological order,
    each checked and prepared once: recurrent nodes with their weights converted
    and packed when they are this graph's initializers, Scan nodes with their body."""

    def __init__(self, onnx, graph, opset):
        self.onnx, self.opset = onnx, opset
        self.consts = {t.name: _tensor_array(onnx, t) for t in graph.initializer}
        self.nodes = self._toposort(graph)
        self.prepared = []
        for node in self.nodes:
            if node.domain not in ("", "ai.onnx"):
                raise NotImplementedError(f"fastrnn.interop.onnx: op {node.domain}.{node.op_type!r} is not "
                                          f"supported ({_node_label(node)})")
            at = _attrs(onnx, node)
            if node.op_type in _GATES or node.op_type in _GLUE_OPS or node.op_type == "Scan":
                _check_attr_names(node, at)
            if node.op_type in _GATES:
                rec = _Recurrent(node, at)
                names = list(node.input) + [""] * 8
                if not (names[0] and names[1] and names[2]):
                    raise ValueError(f"{_node_label(node)}: inputs X, W and R are required, got {list(node.input)}")
                w_names = [names[1], names[2], names[3], names[7] if node.op_type == "LSTM" else ""]
                if all(n == "" or n in self.consts for n in w_names):
                    W, R, B, P = (self.consts[n] if n else None for n in w_names)
                    rec.weights = rec.convert(W, R, B, P, pack=True)
                self.prepared.append((rec, at))
            elif node.op_type == "Scan":
                self.prepared.append((_Scan(onnx, node, at, opset), at))
            elif node.op_type in _GLUE_OPS:
                if node.op_type == "Constant":
                    at = dict(at, _value=_constant(onnx, node, at))
                self.prepared.append((None, at))
            else:
                raise NotImplementedError(f"fastrnn.interop.onnx: op {node.op_type!r} is not supported "
                                          f"({_node_label(node)})")
        inner = {n for node in graph.node for n in node.output} | {vi.name for vi in graph.input} | set(self.consts)
        # the names this graph reads from an enclosing graph (a Scan body's outer scope)
        self.free = {n for node, (op, _) in zip(self.nodes, self.prepared) for n in self._reads(node, op)
                     if n and n not in inner}

    @staticmethod
    def _reads(node, op):
        return list(node.input) + (sorted(op.body.free) if isinstance(op, _Scan) else [])

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

    def needed(self, outputs):
        """The names that computing `outputs` needs (None: everything)."""
        producers = {}
        for node, (op, _) in zip(self.nodes, self.prepared):
            for o in node.output:
                if o:
                    producers[o] = (node, op)
        needed, stack = set(), list(outputs)
        while stack:
            n = stack.pop()
            if n in needed:
                continue
            needed.add(n)
            found = producers.get(n)
            if found is not None:
                node, op = found
                stack.extend(i for i in self._reads(node, op) if i)
                needed.update(o for o in node.output if o)
        return needed

    def execute(self, env, needed=None, fed=()):
        """Run the nodes whose outputs are `needed` (None: all), reading and writing `env`."""
        for node, (op, at) in zip(self.nodes, self.prepared):
            if needed is not None and not any(o in needed for o in node.output):
                continue
            ins = []
            for n in node.input:
                if n == "":
                    ins.append(None)
                elif n in env:
                    ins.append(env[n])
                else:
                    raise ValueError(f"{_node_label(node)}: input {n!r} is not available")
            if isinstance(op, _Recurrent):
                weights = op.weights
                if weights is None or any(n in fed for n in self._weight_names(node)):
                    g = (lambda k: ins[k] if len(ins) > k else None)
                    weights = op.convert(g(1), g(2), g(3), g(7) if node.op_type == "LSTM" else None, pack=False)
                outs = op.run(ins, weights)
            elif isinstance(op, _Scan):
                outs = op.run(ins, env)
            elif node.op_type == "Constant":
                outs = [at["_value"]]
            else:
                try:
                    outs = _glue(self.onnx, node, ins, at, self.opset)
                except (IndexError, KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError,
                        OverflowError) as e:        # bad operands of a malformed model
                    raise ValueError(f"{_node_label(node)}: {type(e).__name__}: {e}") from e
            for name, value in zip(node.output, outs):
                if name:
                    env[name] = value

    @staticmethod
    def _weight_names(node):
        names = list(node.input) + [""] * 8
        return [n for n in (names[1], names[2], names[3], names[7]) if n]


class _Scan:
    """ONNX's Scan (opset 9 and later): the body runs once per step over slices of
    the scan inputs, carrying the state variables. Steps run in Python, one body
    graph each: meant for the small cells fastrnn's own export writes."""

    def __init__(self, onnx, node, at, opset):
        self.node = node
        label = _node_label(node)
        if opset < 9:
            raise NotImplementedError(f"{label}: Scan before opset 9 (with sequence_lens) is not supported")
        self.body = _Graph(onnx, at["body"], opset)
        self.body_in = [vi.name for vi in at["body"].input]
        self.body_out = [vi.name for vi in at["body"].output]
        self.m = int(at["num_scan_inputs"])
        self.n = len(node.input) - self.m
        if self.n < 0 or len(self.body_in) != len(node.input) or len(self.body_out) < self.n:
            raise ValueError(f"{label}: the body's {len(self.body_in)} inputs and {len(self.body_out)} outputs do "
                             f"not fit {len(node.input)} inputs with num_scan_inputs={self.m}")
        self.k = len(self.body_out) - self.n
        self.in_axes = list(at.get("scan_input_axes", [0] * self.m))
        self.in_dirs = list(at.get("scan_input_directions", [0] * self.m))
        self.out_axes = list(at.get("scan_output_axes", [0] * self.k))
        self.out_dirs = list(at.get("scan_output_directions", [0] * self.k))
        if not (len(self.in_axes) == len(self.in_dirs) == self.m and len(self.out_axes) == len(self.out_dirs) == self.k):
            raise ValueError(f"{label}: scan axes and directions must list one entry per scan input and output")

    def run(self, ins, outer):
        label = _node_label(self.node)
        states, scans = list(ins[:self.n]), ins[self.n:]
        scans = [np.moveaxis(np.asarray(x), a % max(np.ndim(x), 1), 0) for x, a in zip(scans, self.in_axes)]
        steps = {x.shape[0] for x in scans}
        if len(steps) != 1:
            raise ValueError(f"{label}: scan inputs of different lengths {sorted(steps)}")
        T = steps.pop()
        per_step = [[] for _ in range(self.k)]
        env = dict(outer)               # one scope for every step: each step rewrites all the body's values
        env.update(self.body.consts)
        for t in range(T):
            env.update(zip(self.body_in, states + [x[T - 1 - t if d else t] for x, d in zip(scans, self.in_dirs)]))
            self.body.execute(env)
            states = [env[n] for n in self.body_out[:self.n]]
            for j, n in enumerate(self.body_out[self.n:]):
                per_step[j].append(env[n])
        outs = []
        for j, (vals, a, d) in enumerate(zip(per_step, self.out_axes, self.out_dirs)):
            if not vals:
                raise ValueError(f"{label}: a Scan of zero steps has no shape for its scan outputs")
            stacked = np.stack(vals[::-1] if d else vals)
            outs.append(np.moveaxis(stacked, 0, a % stacked.ndim))
        return states + outs


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
        if layer.stateful:
            raise NotImplementedError(f"fastrnn.interop.onnx.export: layer {who!r}: stateful=True is not supported "
                                      f"(an ONNX graph keeps no state between runs)")

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

    def zeros_like_rows(self, x, n, who):
        """A (batch, n) zero tensor, batch taken from x's first dimension."""
        batch = self.op("Slice", [self.op("Shape", [x], who), self.const("zero", [0], np.int64),
                                  self.const("one", [1], np.int64)], who)
        shape = self.op("Concat", [batch, self.const("width", [n], np.int64)], who, axis=0)
        value = self.onnx.numpy_helper.from_array(np.zeros(1, self.dtype))
        return self.op("ConstantOfShape", [shape], who, value=value)

    def native(self, dirs, x, who, states):
        """One ONNX RNN/GRU/LSTM node for the layers (one, or Bidirectional's two).
        Returns per layer (sequence in time order (B, T, H), last output (B, H), final states)."""
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
               self.const(f"{who}/R", np.stack([w[1] for w in ws])),
               self.const(f"{who}/B", np.stack([w[2] for w in ws])) if ws[0][2] is not None else "", "", "", ""]
        if states is not None:            # per layer [h, (c)] -> ONNX initial_h, initial_c (D, B, H)
            for k in range(2 if fam == "lstm" else 1):
                parts = [self.op("Unsqueeze", [states[dirs.index(d)][k], self.const("axis0", [0], np.int64)], who)
                         for d in onnx_dirs]
                ins[5 + k] = parts[0] if D == 1 else self.op("Concat", parts, who, axis=0)
        attrs = dict(hidden_size=H, direction=direction)
        if fam == "gru":
            attrs["linear_before_reset"] = int(first.reset_after)
        if fam == "rnn" and first.activation == "relu":
            attrs["activations"] = ["Relu"] * D
        if ws[0][3] is not None:
            ins.append(self.const(f"{who}/P", np.stack([w[3] for w in ws])))
        while ins[-1] == "":
            ins.pop()
        outs = self.op(_ONNX_OP[fam], ins, who, n_out=3 if fam == "lstm" else 2, **attrs)
        idx = [self.const("index", np.array(d, np.int64), np.int64) for d in range(D)]
        result = []
        for layer in dirs:
            d = idx[onnx_dirs.index(layer)]
            seq = self.op("Transpose", [self.op("Gather", [outs[0], d], who, axis=1)], who, perm=[1, 0, 2])
            finals = [self.op("Gather", [s, d], who, axis=0) for s in outs[1:]]
            result.append((seq, finals[0], finals))
        return result

    def scan(self, layer, x, who, mask, states):
        """A layer as an ONNX Scan over time whose body is the cell, for what the
        RNN/GRU/LSTM operators cannot express: masks (a masked step keeps the
        state and gives the last processed output, or zeros with
        zero_output_for_mask) and LSTM's projection. Returns (sequence in time
        order, last output, final states) like `native`."""
        fam, H, P = layer._family, layer.units, layer.output_units
        p = {k: np.asarray(v) for k, v in layer.params.items()}
        elem = self.onnx.helper.np_dtype_to_tensor_dtype(self.dtype)
        n_states = 2 if fam == "lstm" else 1
        zeros = None
        if states is None or mask is not None:
            zeros = {n: self.zeros_like_rows(x, n, who) for n in {P, H}}
        init = list(states) if states is not None else [zeros[P]] + ([zeros[H]] if fam == "lstm" else [])
        init.append(zeros[P] if mask is not None else init[0])       # the last output so far
        outer_nodes, self.nodes = self.nodes, []
        vi = self.onnx.helper.make_tensor_value_info
        h, c, o = (self.name(f"{who}/{n}") for n in ("h", "c", "o"))
        xt, mt = self.name(f"{who}/x_t"), self.name(f"{who}/m_t")
        state_in = [h, c][:n_states] + [o]
        body_inputs = [vi(n, elem, None) for n in state_in] + [vi(xt, elem, None)]
        if mask is not None:
            body_inputs.append(vi(mt, self.onnx.TensorProto.BOOL, None))

        def W(name, value):
            return self.const(f"{who}/{name}", value)

        def lin(inp, kernel, bias=None):
            y = self.op("MatMul", [inp, kernel], who)
            return y if bias is None else self.op("Add", [y, bias], who)

        def add(*xs):
            return xs[0] if len(xs) == 1 else self.op("Sum", list(xs), who)

        def mul(a, b):
            return self.op("Mul", [a, b], who)

        sig = (lambda v: self.op("Sigmoid", [v], who))
        tanh = (lambda v: self.op("Tanh", [v], who))
        k, rk = p["kernel"], p["recurrent_kernel"]
        gates = {"rnn": 1, "gru": 3, "lstm": 4}[fam]
        kg = [W(f"kernel{g}", k[:, g * H:(g + 1) * H]) for g in range(gates)]
        rkg = [W(f"recurrent_kernel{g}", rk[:, g * H:(g + 1) * H]) for g in range(gates)]
        bias = p.get("bias")
        if fam == "gru" and layer.reset_after and bias is not None:
            b_in = [W(f"bias_in{g}", bias[0, g * H:(g + 1) * H]) for g in range(3)]
            b_rec = [W(f"bias_rec{g}", bias[1, g * H:(g + 1) * H]) for g in range(3)]
        else:
            b_in = [None if bias is None else W(f"bias{g}", bias[g * H:(g + 1) * H]) for g in range(gates)]
            b_rec = [None] * gates
        if fam == "rnn":
            pre = add(lin(xt, kg[0], b_in[0]), lin(h, rkg[0]))
            h_new = self.op("Relu" if layer.activation == "relu" else "Tanh", [pre], who)
            c_new = None
        elif fam == "gru":                                  # Keras gate order z, r, h
            z = sig(add(lin(xt, kg[0], b_in[0]), lin(h, rkg[0], b_rec[0])))
            r = sig(add(lin(xt, kg[1], b_in[1]), lin(h, rkg[1], b_rec[1])))
            if layer.reset_after:
                hh = tanh(add(lin(xt, kg[2], b_in[2]), mul(r, lin(h, rkg[2], b_rec[2]))))
            else:
                hh = tanh(add(lin(xt, kg[2], b_in[2]), lin(mul(r, h), rkg[2])))
            one = W("one", np.ones((), self.dtype))
            h_new = add(mul(z, h), mul(self.op("Sub", [one, z], who), hh))
            c_new = None
        else:                                               # Keras gate order i, f, c, o
            pre = [add(lin(xt, kg[g], b_in[g]), lin(h, rkg[g])) for g in range(4)]
            if layer.peepholes:
                pk = p["peephole_kernel"]                   # rows i, f, o
                pre[0] = add(pre[0], mul(c, W("peep_i", pk[0])))
                pre[1] = add(pre[1], mul(c, W("peep_f", pk[1])))
            c_new = add(mul(sig(pre[1]), c), mul(sig(pre[0]), tanh(pre[2])))
            if layer.peepholes:
                pre[3] = add(pre[3], mul(c_new, W("peep_o", p["peephole_kernel"][2])))
            h_new = mul(sig(pre[3]), tanh(c_new))
            if layer.proj_units is not None:
                h_new = lin(h_new, W("projection_kernel", p["projection_kernel"]))
        if mask is None:
            outs = [h_new] + ([c_new] if c_new is not None else []) + [h_new, h_new]
        else:
            m = self.op("Unsqueeze", [mt, self.const("axis1", [1], np.int64)], who)
            keep = (lambda new, old: self.op("Where", [m, new, old], who))
            out = keep(h_new, W("zero", np.zeros((), self.dtype)) if layer.zero_output_for_mask else o)
            outs = [keep(h_new, h)] + ([keep(c_new, c)] if c_new is not None else []) + [out, out]
        finals = [self.op("Identity", [v], who) for v in outs]       # body outputs: fresh names
        body_outputs = [vi(n, elem, None) for n in finals]
        body = self.onnx.helper.make_graph(self.nodes, self.name(f"{who}/cell"), body_inputs, body_outputs)
        self.nodes = outer_nodes
        scan_ins = [x] + ([mask] if mask is not None else [])
        direction = int(layer.go_backwards)
        res = self.op("Scan", init + scan_ins, who, n_out=n_states + 2, body=body,
                      num_scan_inputs=len(scan_ins), scan_input_axes=[1] * len(scan_ins),
                      scan_input_directions=[direction] * len(scan_ins), scan_output_axes=[1])
        finals_states, last, seq = res[:n_states], res[n_states], res[n_states + 1]
        if layer.go_backwards:                              # processing order -> time order
            seq = self.reverse_time(seq, who)
        return seq, last, finals_states

    def recurrent(self, dirs, x, who, merge_mode=None, mask=None, states=None, bidirectional=False):
        """dirs: the layers, one (single) or two (Bidirectional: forward, backward).
        mask: the name of a (B, T) bool mask or None; states: per layer its initial
        states [h, (c)] or None. Returns the layer call's outputs: output(s) then,
        with return_state, each layer's final states."""
        for d in dirs:
            self.check_recurrent(d, who)
        first = dirs[0]
        if mask is None and (first._family != "lstm" or first.proj_units is None):
            per_layer = self.native(dirs, x, who, states)
        else:
            per_layer = [self.scan(d, x, who, mask, None if states is None else states[i])
                         for i, d in enumerate(dirs)]
        outs = []
        for k, (layer, (seq, last, _)) in enumerate(zip(dirs, per_layer)):
            if first.return_sequences:
                # Keras: a layer's sequence is in its processing order (reversed when it
                # goes backwards); Bidirectional then flips its backward layer's
                outs.append(self.reverse_time(seq, who) if layer.go_backwards != (k == 1) else seq)
            else:
                outs.append(last)
        finals = [s for _, _, fs in per_layer for s in fs] if first.return_state else []
        if not bidirectional:
            return outs + finals
        f_out, b_out = outs
        if merge_mode is None:
            return [f_out, b_out] + finals
        if merge_mode == "concat":
            merged = self.op("Concat", [f_out, b_out], who, axis=-1)
        elif merge_mode == "sum":
            merged = self.op("Add", [f_out, b_out], who)
        elif merge_mode == "mul":
            merged = self.op("Mul", [f_out, b_out], who)
        elif merge_mode == "ave":
            merged = self.op("Mul", [self.op("Add", [f_out, b_out], who), self.const("half", 0.5)], who)
        else:
            raise NotImplementedError(f"fastrnn.interop.onnx.export: layer {who!r}: merge_mode={merge_mode!r} is "
                                      f"not supported (concat, sum, ave, mul, None are)")
        return [merged] + finals

    def mask_any(self, x, value, who):
        """Masking's mask: any(x != value, axis=-1), as bool (B, T)."""
        neq = self.op("Not", [self.op("Equal", [x, self.const("mask_value", value)], who)], who)
        count = self.op("ReduceSum", [self.op("Cast", [neq], who, to=self.onnx.TensorProto.FLOAT),
                                      self.const("last_axis", [-1], np.int64)], who, keepdims=0)
        return self.op("Greater", [count, self.const("zero_f", 0.0, np.float32)], who)

    def merge_masks(self, layer, rank, masks, who):
        """The output mask of a merge layer (as fastrnn.layers.merge computes it), or
        None: the OR of the inputs' masks, or None as soon as one input has none
        (all valid). Concatenate along time joins the masks: not supported."""
        from ..layers import merge
        if all(m is None for m in masks):
            return None
        if type(layer) is merge.Concatenate and rank == 3 and layer.axis % rank == 1:
            raise NotImplementedError(f"fastrnn.interop.onnx.export: layer {who!r}: Concatenate along the time "
                                      f"axis of masked inputs is not supported")
        if any(m is None for m in masks):
            return None
        return self._or_all(masks, who)

    def _or_all(self, masks, who):
        out = masks[0]
        for m in masks[1:]:
            out = self.op("Or", [out, m], who)
        return out

    def layer(self, node, ins, masks):
        """ONNX nodes for one layer call: `ins` the names of its inputs (x first, then
        initial states), `masks` theirs; returns (output names, output masks)."""
        from ..layers import core, merge, recurrent
        layer = node.layer
        who = layer.name
        t = type(layer)
        x, mask = ins[0], masks[0]
        if t in (merge.Add, merge.Concatenate):
            out_mask = self.merge_masks(layer, len(node.inputs[0].shape), masks, who)
            if t is merge.Add:
                out = self.op("Sum", ins, who) if len(ins) > 1 else self.op("Identity", ins, who)
            else:
                out = self.op("Concat", ins, who, axis=layer.axis)
            return [out], [out_mask]
        if node.in_structure != "single" and not node.n_states:
            raise NotImplementedError(f"fastrnn.interop.onnx.export: layer {who!r} of type {t.__name__}: a call "
                                      f"with a list of inputs is not supported")
        if t is core.Dropout:
            return [self.op("Identity", [x], who)], [mask]
        if t is core.Dense:
            return [self.dense(layer, x, who)], [mask]
        if t is core.Activation:
            return [self.activation(layer.activation, x, who)], [mask]
        if t is core.TimeDistributed and type(layer.layer) is core.Dense:
            return [self.dense(layer.layer, x, who)], [mask]
        if t is core.Embedding:
            out = self.op("Gather", [self.const(f"{who}/embeddings", layer.params["embeddings"]), x], who, axis=0)
            new_mask = None
            if layer.mask_zero:
                new_mask = self.op("Not", [self.op("Equal", [x, self.const("zero_id", 0, np.int64)], who)], who)
            return [out], [new_mask]
        if t is core.Masking:
            keep = self.mask_any(x, layer.mask_value, who)
            kept = self.op("Unsqueeze", [keep, self.const("axis_last", [-1], np.int64)], who)
            return [self.op("Where", [kept, x, self.const("zero", 0.0)], who)], [keep]
        states = list(ins[1:]) if node.n_states else None
        if t in (recurrent.SimpleRNN, recurrent.GRU, recurrent.LSTM):
            outs = self.recurrent([layer], x, who, mask=mask, states=None if states is None else [states])
            return outs, [mask if layer.return_sequences else None] + [None] * (len(outs) - 1)
        if t is recurrent.Bidirectional:
            dirs = [layer.forward_layer, layer.backward_layer]
            if states is not None:
                n = len(states) // 2
                states = [states[:n], states[n:]]
            outs = self.recurrent(dirs, x, who, layer.merge_mode, mask=mask, states=states, bidirectional=True)
            n_seq = 2 if layer.merge_mode is None else 1
            out_mask = mask if layer.return_sequences else None
            return outs, [out_mask] * n_seq + [None] * (len(outs) - n_seq)
        inner = f"({type(layer.layer).__name__})" if t is core.TimeDistributed else ""
        raise NotImplementedError(f"fastrnn.interop.onnx.export: layer {who!r} of type {t.__name__}{inner} is not "
                                  f"supported (Input, Embedding, Masking, SimpleRNN, GRU, LSTM, Bidirectional, "
                                  f"Dense, TimeDistributed(Dense), Activation, Dropout, Add, Concatenate are)")


def _dims(shape):
    return ["batch" if i == 0 else "time" if i == 1 else f"dim_{i}" if d is None else int(d)
            for i, d in enumerate(shape)]


def export(model, path=None, opset=17):
    """Write a fastrnn `Sequential` or functional `Model` as an ONNX model at `path`
    (a file path or a writable binary file; None: write nothing). Returns the
    `onnx.ModelProto`.

    The ONNX inputs and outputs are the model's, batch-first, with symbolic batch
    and time dimensions: (batch, time, features), or (batch, time) integer ids in
    front of an Embedding. See the module docstring for the layers supported.
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
    dtypes = [l.dtype for l in model._weighted_layers() if not isinstance(l, InputLayer)]
    dtype = np.dtype(dtypes[0]) if dtypes else np.dtype(np.float32)
    ex = _Exporter(onnx, dtype)
    elem = onnx.helper.np_dtype_to_tensor_dtype
    names, masks, graph_inputs = {}, {}, []
    for t_in, in_name in zip(model.inputs, model.input_names):
        # an input's type: ids for an Embedding, else the model's float type
        ids = any(isinstance(n.layer, core.Embedding) and n.inputs[0] is t_in for n in model._nodes)
        in_dtype = (t_in.dtype if t_in.dtype in (np.int32, np.int64) else np.dtype(np.int64)) if ids else dtype
        names[id(t_in)], masks[id(t_in)] = in_name, None
        graph_inputs.append(onnx.helper.make_tensor_value_info(in_name, elem(np.dtype(in_dtype)), _dims(t_in.shape)))
    for node in model._nodes:
        outs, out_masks = ex.layer(node, [names[id(t)] for t in node.inputs], [masks[id(t)] for t in node.inputs])
        if len(outs) != len(node.outputs):
            raise RuntimeError(f"export: layer {node.layer.name!r} gave {len(outs)} ONNX outputs for "
                               f"{len(node.outputs)} tensors")
        for t, o, m in zip(node.outputs, outs, out_masks):
            names[id(t)], masks[id(t)] = o, m
    graph_outputs = []
    for out_t, out_name in zip(model.outputs, model.output_names):
        ex.nodes.append(onnx.helper.make_node("Identity", [names[id(out_t)]], [out_name], name=f"{out_name}/Identity"))
        graph_outputs.append(onnx.helper.make_tensor_value_info(out_name, elem(dtype), _dims(out_t.shape)))
    graph = onnx.helper.make_graph(ex.nodes, model.name, graph_inputs, graph_outputs, initializer=ex.inits)
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
