"""Argument checking shared by `fastrnn.functional` and `fastrnn.reference`.

Everything a kernel trusts is established here, before any arithmetic runs:
dtypes agree, shapes agree, lengths are in range. Each error names the
argument, what was expected and what was given. The result is a `SeqArgs`
holding C-contiguous, time-major arrays of one dtype; the caller's arrays are
never written to (a view of them may be kept, but it is only read).
"""
import math

import numpy as np

# Gate count per cell. Gate order follows PyTorch: GRU r, z, n; LSTM i, f, g, o.
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "gru": 3, "lstm": 4}
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
MAX_THREADS = 1 << 16
INT_MAX = (1 << 31) - 1        # the kernels count rows (T*B) and gate units (G*H) in C ints


class SeqArgs:
    """Validated arguments of one forward call (one layer, one direction).

    Sizes: T steps, B batch, I input features, H hidden units, P size of the
    h state (P == H except LSTM with projection), G gates.

        x        (T, B, I), time-major
        h0       (B, P); zeros when the caller gave None
        c0       (B, H) for LSTM (zeros when None), else None
        w_ih     (G*H, I);  w_hh (G*H, P);  b_ih, b_hh (G*H,) or None
        w_peep   (3, H): peepholes for i, f, o (LSTM only), or None
        w_hr     (P, H): projection (LSTM only), or None
        lengths  (B,) int64, each in 0..T, or None
        step_mask       (T, B) uint8 (from bool), or None: which samples process which steps
        recurrent_mask  (B, P) factor on h where it enters the recurrent products, or None
    plus the flags reverse, batch_first, training, linear_before_reset (GRU)
    and num_threads (None: the global setting). `act` is None (the cell's own
    activations) or the forward's own set from `activation_set`.
    """

    __slots__ = ("cell", "dtype", "T", "B", "I", "H", "P", "G", "x", "h0", "c0", "w_ih", "w_hh", "b_ih",
                 "b_hh", "w_peep", "w_hr", "lengths", "step_mask", "recurrent_mask", "reverse", "batch_first", "training",
                 "linear_before_reset", "num_threads", "act")

    def __init__(self, *, cell, dtype, T, B, I, H, P, G, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_peep, w_hr,
                 lengths, reverse, step_mask=None, recurrent_mask=None, batch_first, training, linear_before_reset, num_threads, act=None):
        # plain assignments: a call builds one of these, so it must be cheap
        self.cell = cell
        self.dtype = dtype
        self.T = T
        self.B = B
        self.I = I
        self.H = H
        self.P = P
        self.G = G
        self.x = x
        self.h0 = h0
        self.c0 = c0
        self.w_ih = w_ih
        self.w_hh = w_hh
        self.b_ih = b_ih
        self.b_hh = b_hh
        self.w_peep = w_peep
        self.w_hr = w_hr
        self.lengths = lengths
        self.step_mask = step_mask
        self.recurrent_mask = recurrent_mask
        self.reverse = reverse
        self.batch_first = batch_first
        self.training = training
        self.linear_before_reset = linear_before_reset
        self.num_threads = num_threads
        self.act = act

    def __repr__(self):
        return f"SeqArgs({self.cell} T={self.T} B={self.B} I={self.I} H={self.H} P={self.P} {self.dtype})"


def _shape_str(shape):
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


_NATIVE_FLOATS = frozenset(FLOAT_DTYPES)     # byte-swapped dtypes compare unequal to these


def as_float_array(name, value, dtype=None):
    """`value` as an ndarray of float32/float64 (of `dtype` when given)."""
    if type(value) is np.ndarray:                                # the common cases, checked cheaply
        if value.dtype is dtype or (dtype is None and value.dtype in _NATIVE_FLOATS):
            return value
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except Exception as exc:  # e.g. ragged nested lists
            raise TypeError(f"{name}: expected an array of float32 or float64, "
                            f"got {type(value).__name__} ({exc})") from None
    if arr.dtype.kind == "f" and arr.dtype.itemsize in (4, 8) and not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))     # byte order is a layout: copy to native
    if arr.dtype not in FLOAT_DTYPES:
        want = "float32 or float64" if dtype is None else str(dtype)
        raise TypeError(f"{name}: expected dtype {want}, got {arr.dtype}")
    if dtype is not None and arr.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype} (the dtype of x), got {arr.dtype}")
    return arr


def check_shape(name, arr, expected, meaning):
    """Raise ValueError unless `arr.shape == expected`; `meaning` names the dims."""
    if arr.shape != tuple(expected):
        raise ValueError(f"{name}: expected shape {_shape_str(expected)} {meaning}, "
                         f"got {_shape_str(arr.shape)}")


def _flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def check_nonlinearity(nonlinearity):
    if not isinstance(nonlinearity, str) or nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
    return nonlinearity


def check_num_threads(num_threads):
    """None or a positive int; returns it as a Python int or None."""
    if num_threads is None:
        return None
    if isinstance(num_threads, (bool, np.bool_)) or not isinstance(num_threads, (int, np.integer)):
        raise TypeError(f"num_threads: expected a positive int or None, got {num_threads!r}")
    if not 1 <= num_threads <= MAX_THREADS:
        raise ValueError(f"num_threads: expected a positive int up to {MAX_THREADS} or None, got {num_threads}")
    return int(num_threads)


def _lengths(lengths, T, B):
    if lengths is None:
        return None
    arr = lengths if isinstance(lengths, np.ndarray) else np.asarray(lengths)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected an integer array of shape ({B},), got dtype {arr.dtype}")
    check_shape("lengths", arr, (B,), "(B,)")
    if B and (arr.min() < 0 or arr.max() > T):
        bad = int(arr[(arr < 0) | (arr > T)][0])
        raise ValueError(f"lengths: expected every value in 0..{T} (0..T), got {bad}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _step_mask(mask, T, B, batch_first):
    """A bool (T, B) mask ((B, T) with batch_first) as time-major contiguous uint8."""
    arr = mask if isinstance(mask, np.ndarray) else np.asarray(mask)
    layout = "(B, T) with batch_first=True" if batch_first else "(T, B)"
    if arr.dtype != np.bool_:
        raise TypeError(f"step_mask: expected a bool array {layout}, got dtype {arr.dtype}")
    check_shape("step_mask", arr, (B, T) if batch_first else (T, B), layout)
    if batch_first:
        arr = arr.T
    return np.ascontiguousarray(arr).view(np.uint8)


def _weights(cell, G, I, dtype, w_ih, w_hh, w_hr):
    """Check the weight matrices; returns (w_ih, w_hh, w_hr, H, P), arrays contiguous."""
    w_ih = as_float_array("w_ih", w_ih, dtype)
    if w_ih.ndim != 2 or w_ih.shape[1] != I or w_ih.shape[0] % G or w_ih.shape[0] == 0:
        raise ValueError(f"w_ih: expected shape (G*H, {I}) (G*H, I) with G={G} and H >= 1, "
                         f"got {_shape_str(w_ih.shape)}")
    H = w_ih.shape[0] // G
    if w_ih.shape[0] > INT_MAX or I > INT_MAX:    # before any copy: a broadcast view may be huge
        raise ValueError(f"w_ih: expected G*H and I each at most {INT_MAX}, got G*H={w_ih.shape[0]}, I={I}")
    if w_hr is not None:
        if cell != "lstm":
            raise ValueError(f"w_hr: expected None (projection is LSTM-only), got an array for {cell}")
        w_hr = as_float_array("w_hr", w_hr, dtype)
        if w_hr.ndim != 2 or w_hr.shape[1] != H or w_hr.shape[0] < 1:
            raise ValueError(f"w_hr: expected shape (P, {H}) (P, H) with P >= 1, "
                             f"got {_shape_str(w_hr.shape)}")
        P = w_hr.shape[0]
        if P > INT_MAX:
            raise ValueError(f"w_hr: expected P at most {INT_MAX}, got P={P}")
        w_hr = np.ascontiguousarray(w_hr)
    else:
        P = H
    w_hh = as_float_array("w_hh", w_hh, dtype)
    check_shape("w_hh", w_hh, (G * H, P), "(G*H, P)" if P != H else "(G*H, H)")
    return np.ascontiguousarray(w_ih), np.ascontiguousarray(w_hh), w_hr, H, P


def check_packed(packed, packed_type, cell, dtype, I, linear_before_reset, sources):
    """A forward's `packed` must come from `pack_weights` for this cell family, its
    options, dtype and input size, and from the very weight arrays of this call."""
    if not isinstance(packed, packed_type):
        raise TypeError(f"packed: expected the PackedWeights returned by pack_weights (or None), "
                        f"got {type(packed).__name__}")
    family = "rnn" if cell.startswith("rnn") else cell
    if packed.family != family:
        raise ValueError(f"packed: expected weights packed for {family!r}, got weights packed for {packed.family!r}")
    if family == "gru" and packed.linear_before_reset != linear_before_reset:
        raise ValueError(f"packed: expected weights packed with linear_before_reset={linear_before_reset}, "
                         f"got linear_before_reset={packed.linear_before_reset}")
    if packed.dtype != dtype:
        raise TypeError(f"packed: expected weights packed as {dtype} (the dtype of x), got {packed.dtype}")
    if packed.I != I:
        raise ValueError(f"packed: expected weights packed for I={I} (the input size of x), got I={packed.I}")
    for name, mine, theirs in zip(("w_ih", "w_hh", "w_hr"), packed.sources, sources):
        if mine is not theirs:
            raise ValueError(f"packed: expected weights packed from the {name} passed to this call, "
                             f"got weights packed from another array; call pack_weights again")


# Activations a forward may use in place of its cell's (ONNX's list): kernel code and
# default (alpha, beta), by name without case or underscores.
ACTIVATIONS = {
    "sigmoid": (0, 0.0, 0.0), "tanh": (1, 0.0, 0.0), "relu": (2, 0.0, 0.0), "hardsigmoid": (3, 0.2, 0.5),
    "leakyrelu": (4, 0.01, 0.0), "affine": (5, 1.0, 0.0), "scaledtanh": (6, 1.0, 1.0), "elu": (7, 1.0, 0.0),
    "softsign": (8, 0.0, 0.0), "softplus": (9, 0.0, 0.0), "thresholdedrelu": (10, 1.0, 0.0),
}
_ACT_SLOTS = {"rnn_tanh": ("tanh",), "rnn_relu": ("relu",), "gru": ("sigmoid", "tanh"),
              "lstm": ("sigmoid", "tanh", "tanh")}
_ACT_ROLES = {1: "f", 2: "f (r, z), g (n)", 3: "f (i, f, o), g (cell input), h (output)"}


def _activation(k, entry):
    """One entry of `activations`: a name, or (name, alpha) or (name, alpha, beta)."""
    name, params = (entry, ()) if isinstance(entry, str) else (None, ())
    if name is None:
        if not isinstance(entry, (tuple, list)) or not 1 <= len(entry) <= 3 or not isinstance(entry[0], str):
            raise TypeError(f"activations[{k}]: expected a name or a (name, alpha[, beta]) tuple, got {entry!r}")
        name, params = entry[0], tuple(entry[1:])
    spec = ACTIVATIONS.get(name.lower().replace("_", ""))
    if spec is None:
        raise ValueError(f"activations[{k}]: expected one of {sorted(ACTIVATIONS)}, got {name!r}")
    code, alpha, beta = spec
    try:
        params = [float(p) for p in params]
    except (TypeError, ValueError):
        raise TypeError(f"activations[{k}]: alpha and beta must be numbers, got {entry!r}") from None
    if not all(math.isfinite(p) for p in params):
        raise ValueError(f"activations[{k}]: alpha and beta must be finite, got {entry!r}")
    alpha = params[0] if len(params) > 0 else alpha
    beta = params[1] if len(params) > 1 else beta
    return code, alpha, beta


def activation_set(cell, activations, clip, input_forget):
    """A forward's own activations, clip and input_forget, checked: None when they
    are the cell's own (the kernels' fast path), else (kinds, alphas, betas, clip,
    input_forget) for the kernels (see fr_act in src_c/fastrnn.h)."""
    if input_forget is not False and input_forget is not True:
        input_forget = _flag("input_forget", input_forget)
    if input_forget and cell != "lstm":
        raise ValueError(f"input_forget: expected False (it couples LSTM's input and forget gates), got True for {cell}")
    if clip is not None:
        if isinstance(clip, (bool, np.bool_)) or not isinstance(clip, (int, float, np.integer, np.floating)):
            raise TypeError(f"clip: expected a positive number or None, got {clip!r}")
        clip = float(clip)
        if not clip > 0 or math.isnan(clip):
            raise ValueError(f"clip: expected a positive number or None, got {clip}")
        if math.isinf(clip):
            clip = None
    slots = _ACT_SLOTS[cell]
    if activations is None:
        entries = [ACTIVATIONS[n] for n in slots]
    else:
        if isinstance(activations, str) or not isinstance(activations, (tuple, list)):
            raise TypeError(f"activations: expected a list of {len(slots)} ({_ACT_ROLES[len(slots)]}), "
                            f"got {activations!r}")
        if len(activations) != len(slots):
            raise ValueError(f"activations: expected {len(slots)} for {cell} ({_ACT_ROLES[len(slots)]}), "
                             f"got {len(activations)}")
        entries = [_activation(k, e) for k, e in enumerate(activations)]
    if clip is None and not input_forget and all(e[0] == ACTIVATIONS[n][0] for e, n in zip(entries, slots)):
        return None
    entries += [(1, 0.0, 0.0)] * (3 - len(entries))
    kinds, alphas, betas = zip(*entries)
    return kinds, alphas, betas, (0.0 if clip is None else clip), int(input_forget)


def prepare(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, *, w_peep=None, w_hr=None,
            reverse=False, lengths=None, batch_first=False, training=True,
            linear_before_reset=True, num_threads=None, packed=None, packed_type=None,
            step_mask=None, recurrent_mask=None, activations=None, clip=None, input_forget=False):
    """Check one forward call's arguments and return them as a `SeqArgs`.

    `cell` is one of GATES; `c0` is only meaningful for "lstm" (pass None
    otherwise); `w_peep`/`w_hr` likewise. With `packed` (an instance of
    `packed_type`, made by pack_weights from these same weight arrays) the
    weights were checked when they were packed and are taken from it.

    A single-step call spends most of its time here, so the common case (plain
    arrays, flags given as bools) runs as few checks as it can.
    """
    G = GATES.get(cell) if isinstance(cell, str) else None
    if G is None:
        raise ValueError(f"cell: expected one of {sorted(GATES)}, got {cell!r}")
    if reverse is not False and reverse is not True:
        reverse = _flag("reverse", reverse)
    if batch_first is not False and batch_first is not True:
        batch_first = _flag("batch_first", batch_first)
    if training is not False and training is not True:
        training = _flag("training", training)
    if linear_before_reset is not True and linear_before_reset is not False:
        linear_before_reset = _flag("linear_before_reset", linear_before_reset)
    if num_threads is not None:
        num_threads = check_num_threads(num_threads)
    act = None
    if activations is not None or clip is not None or input_forget is not False:
        if cell.startswith("rnn") and activations is not None and clip is None:
            plain = activations[0] if isinstance(activations, (tuple, list)) and len(activations) == 1 else None
            if isinstance(plain, str) and plain.lower() in ("tanh", "relu"):
                cell, activations = "rnn_" + plain.lower(), None      # the cell's own: the fast path
        act = activation_set(cell, activations, clip, input_forget)
        if act is not None and training:
            raise NotImplementedError("activations, clip, input_forget: only inference is implemented with a "
                                      "cell's own activations or clipping (call with training=False)")

    x = as_float_array("x", x)
    dtype = x.dtype
    if x.ndim != 3:
        layout = "(B, T, I) with batch_first=True" if batch_first else "(T, B, I)"
        raise ValueError(f"x: expected a 3-d array {layout}, got shape {_shape_str(x.shape)}")
    if batch_first:
        B, T, I = x.shape
        x = x.transpose(1, 0, 2)
    else:
        T, B, I = x.shape

    if packed is None:
        w_ih, w_hh, w_hr, H, P = _weights(cell, G, I, dtype, w_ih, w_hh, w_hr)
    else:
        check_packed(packed, packed_type, cell, dtype, I, linear_before_reset, (w_ih, w_hh, w_hr))
        w_ih, w_hh, w_hr = packed.arrays
        H, P = packed.H, packed.P
    GH = G * H
    if b_ih is not None:
        b_ih = as_float_array("b_ih", b_ih, dtype)
        if b_ih.shape != (GH,):
            check_shape("b_ih", b_ih, (GH,), "(G*H,)")
        b_ih = np.ascontiguousarray(b_ih)
    if b_hh is not None:
        b_hh = as_float_array("b_hh", b_hh, dtype)
        if b_hh.shape != (GH,):
            check_shape("b_hh", b_hh, (GH,), "(G*H,)")
        b_hh = np.ascontiguousarray(b_hh)
    if w_peep is not None:
        if cell != "lstm":
            raise ValueError(f"w_peep: expected None (peepholes are LSTM-only), got an array for {cell}")
        w_peep = as_float_array("w_peep", w_peep, dtype)
        check_shape("w_peep", w_peep, (3, H), "(3, H)")
        w_peep = np.ascontiguousarray(w_peep)

    if h0 is None:
        h0 = np.zeros((B, P), dtype)
    else:
        h0 = as_float_array("h0", h0, dtype)
        if h0.shape != (B, P):
            check_shape("h0", h0, (B, P), "(B, P)" if P != H else "(B, H)")
        h0 = np.ascontiguousarray(h0)
    if cell == "lstm":
        if c0 is None:
            c0 = np.zeros((B, H), dtype)
        else:
            c0 = as_float_array("c0", c0, dtype)
            if c0.shape != (B, H):
                check_shape("c0", c0, (B, H), "(B, H)")
            c0 = np.ascontiguousarray(c0)
    else:
        c0 = None

    if lengths is not None:
        lengths = _lengths(lengths, T, B)
    if step_mask is not None:
        step_mask = _step_mask(step_mask, T, B, batch_first)
    if recurrent_mask is not None:
        recurrent_mask = as_float_array("recurrent_mask", recurrent_mask, dtype)
        check_shape("recurrent_mask", recurrent_mask, (B, P), "(B, P)" if P != H else "(B, H)")
        recurrent_mask = np.ascontiguousarray(recurrent_mask)
    if T * B > INT_MAX:
        raise ValueError(f"x: expected at most {INT_MAX} rows in all (T*B), got T={T}, B={B}")
    if GH > INT_MAX or I > INT_MAX or P > INT_MAX:
        raise ValueError(f"w_ih: expected G*H, I and P each at most {INT_MAX}, got G*H={GH}, I={I}, P={P}")
    return SeqArgs(
        cell=cell, dtype=dtype, T=T, B=B, I=I, H=H, P=P, G=G,
        x=np.ascontiguousarray(x), h0=h0, c0=c0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh,
        w_peep=w_peep, w_hr=w_hr, lengths=lengths, step_mask=step_mask, recurrent_mask=recurrent_mask,
        reverse=reverse, batch_first=batch_first,
        training=training, linear_before_reset=linear_before_reset, num_threads=num_threads, act=act)


def lstm_states(hc, name="(h0, c0)"):
    """Split LSTM's state argument: None, or a 2-tuple whose items may be None."""
    if hc is None:
        return None, None
    if not isinstance(hc, (tuple, list)):
        raise TypeError(f"{name}: expected a tuple of 2 arrays (or None), got {type(hc).__name__}")
    if len(hc) != 2:
        raise TypeError(f"{name}: expected a tuple of 2 arrays (or None), got a {type(hc).__name__} of length {len(hc)}")
    return hc[0], hc[1]


def backward_input(name, value, shape, meaning, dtype):
    """A gradient flowing into backward: None becomes zeros, else checked and contiguous."""
    if value is None:
        return np.zeros(shape, dtype)
    arr = as_float_array(name, value, dtype)
    check_shape(name, arr, shape, meaning)
    return np.ascontiguousarray(arr)


def prepare_dy(dy, a: SeqArgs):
    """`dy` like `y` (batch-first when the forward was), as time-major (T, B, P);
    None stays None (no gradient reaches y: the kernels read it as zeros)."""
    if dy is None:
        return None
    if a.batch_first:
        arr = backward_input("dy", dy, (a.B, a.T, a.P), "(B, T, P) like y", a.dtype)
        return np.ascontiguousarray(arr.transpose(1, 0, 2))
    return backward_input("dy", dy, (a.T, a.B, a.P), "(T, B, P) like y", a.dtype)


def check_cache(cache, cell, cache_type):
    """A cache must be a `cache_type` from a training forward of the same cell family
    ("rnn", "gru" or "lstm"), and serves one backward call."""
    if not isinstance(cache, cache_type):
        got = "None (a forward with training=False returns no cache)" if cache is None else type(cache).__name__
        raise TypeError(f"cache: expected the cache returned by {cell}_forward(..., training=True) "
                        f"of the same module, got {got}")
    family = "rnn" if cache.cell.startswith("rnn") else cache.cell
    if family != cell:
        raise ValueError(f"cache: expected a cache from {cell}_forward, got one from {family}_forward")
    if cache.used:
        raise ValueError("cache: expected a fresh cache; this one was already consumed by a backward call")


def start_backward(cache, family, dy, final_grads, cache_type):
    """Check a backward call's cache, then its incoming gradients; returns
    (dy (T, B, P), dstate) with dstate (dh_n,) or, for LSTM, (dh_n, dc_n).

    `final_grads` is dh_n, or for LSTM the (dh_n, dc_n) argument (None or a pair);
    None gradients become zeros. The caller marks the cache used (`cache.used =
    True`) once its backward has succeeded, so a refused or failed call leaves it
    usable.
    """
    check_cache(cache, family, cache_type)
    a = cache.args
    dy = prepare_dy(dy, a)
    if family == "lstm":
        dh_n, dc_n = lstm_states(final_grads, "(dh_n, dc_n)")
    else:
        dh_n, dc_n = final_grads, None
    meaning_h = "(B, P) like h_n" if a.P != a.H else "(B, H) like h_n"
    dstate = (backward_input("dh_n", dh_n, (a.B, a.P), meaning_h, a.dtype),)
    if family == "lstm":
        dstate += (backward_input("dc_n", dc_n, (a.B, a.H), "(B, H) like c_n", a.dtype),)
    return dy, dstate
