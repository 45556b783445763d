"""The engine's public API: one layer, one direction, forward and backward.

Each call checks its arguments (`_validate`), allocates every output and
saved array, and hands them to the compiled kernels (`_engine`). Weights use
PyTorch's layout and gate order; see the README's table.

    y, h_n, cache        = rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh")
    y, h_n, cache        = gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, linear_before_reset=True)
    y, (h_n, c_n), cache = lstm_forward(x, (h0, c0), w_ih, w_hh, b_ih, b_hh, w_peep=None, w_hr=None)
    grads = rnn_backward(dy, dh_n, cache)      # likewise gru_backward, lstm_backward(dy, (dh_n, dc_n), cache)

ONNX's recurrent attributes, for inference (training=False) only:
`activations` replaces the cell's functions, a list of names or (name, alpha,
beta) tuples: [f] for RNN, [f, g] for GRU (f: r, z; g: n), [f, g, h] for LSTM
(f: i, f, o; g: the cell input; h: m = o * h(c)). Names: sigmoid, tanh, relu,
hard_sigmoid, leaky_relu, affine, scaled_tanh, elu, softsign, softplus,
thresholded_relu (alpha and beta default to the ONNX operators' own). `clip`
clamps every gate's pre-activation to [-clip, clip]; `input_forget=True` (LSTM)
uses f = 1 - i.

A cache keeps references to the forward's input arrays (copies only where a
layout or dtype conversion was needed), as PyTorch's autograd does: change x
or the weights in place between forward and backward and the gradients use
the new values.
"""
import numpy as np

from . import _engine, _threads
from . import _validate as V

__all__ = ["rnn_forward", "rnn_backward", "gru_forward", "gru_backward", "lstm_forward", "lstm_backward",
           "pack_weights", "PackedWeights"]


class Cache:
    """What a training forward saves for its backward. It serves one backward call."""

    __slots__ = ("cell", "args", "saved", "used")

    def __init__(self, cell, args, saved):
        self.cell = cell        # the _validate cell name
        self.args = args        # the forward's SeqArgs
        self.saved = saved      # arrays the kernels wrote for backward
        self.used = False

    def __repr__(self):
        a = self.args
        return f"<fastrnn Cache {self.cell} T={a.T} B={a.B} I={a.I} H={a.H} P={a.P} used={self.used}>"


class PackedWeights:
    """Forward weights packed once into the kernels' layout (see `pack_weights`).

    It remembers which arrays it was packed from, and a forward given it checks
    that it is called with those same arrays. It does not notice changes made to
    them in place: pack again after changing the weights (the layers do).
    """

    __slots__ = ("family", "linear_before_reset", "dtype", "I", "H", "P", "sources", "arrays", "buffer")

    def __init__(self, family, linear_before_reset, a, sources, buffer):
        self.family = family                    # "rnn", "gru" or "lstm"
        self.linear_before_reset = linear_before_reset
        self.dtype, self.I, self.H, self.P = a.dtype, a.I, a.H, a.P
        self.sources = sources                  # the caller's (w_ih, w_hh, w_hr) objects
        self.arrays = (a.w_ih, a.w_hh, a.w_hr)  # the same, checked and contiguous
        self.buffer = buffer                    # uint8, private layout

    def __repr__(self):
        return (f"<fastrnn PackedWeights {self.family} I={self.I} H={self.H} P={self.P} "
                f"{self.dtype.name} {self.buffer.nbytes} bytes>")


def pack_weights(family, w_ih, w_hh, *, w_hr=None, linear_before_reset=True, num_threads=None):
    """Pack a layer's forward weights once, for many forward calls with `packed=`.

    Every forward otherwise packs `w_ih` and `w_hh` (and `w_hr`) into the
    kernels' blocked layout, which costs about as much as reading them a few
    times: significant when a call has few rows (B=1 inference), none at all
    when it has many. `family` is "rnn", "gru" or "lstm"; the arrays are those
    the forward will be given (same objects). A call of at most 4 rows in all
    (one streamed step) reads the weights as given and does not use the packing.
    """
    if family not in ("rnn", "gru", "lstm"):
        raise ValueError(f"family: expected 'rnn', 'gru' or 'lstm', got {family!r}")
    w = V.as_float_array("w_ih", w_ih)
    if w.ndim != 2:
        raise ValueError(f"w_ih: expected a 2-d array (G*H, I), got shape {V._shape_str(w.shape)}")
    cell = "rnn_tanh" if family == "rnn" else family
    a = V.prepare(cell, np.zeros((0, 0, w.shape[1]), w.dtype), None, None, w_ih, w_hh, None, None,
                  w_hr=w_hr, linear_before_reset=linear_before_reset, training=False, num_threads=num_threads)
    buffer = _engine.pack(a, _threads.resolve(a.num_threads))
    return PackedWeights(family, a.linear_before_reset, a, (w_ih, w_hh, w_hr), buffer)


def _empty(shape, dtype):
    """np.empty; a large array starts on a 64-byte boundary, so that the kernels'
    SIMD rows never straddle two cache lines (NumPy's own start 16 bytes past one).
    Small arrays skip the alignment: it would cost more than it saves."""
    n = dtype.itemsize
    for d in (shape if isinstance(shape, tuple) else (shape,)):
        n *= d
    if n < 1 << 16:
        return np.empty(shape, dtype)
    raw = np.empty(n + 64, np.uint8)
    start = -raw.__array_interface__["data"][0] % 64
    return raw[start:start + n].view(dtype).reshape(shape)


def _biases(a):
    """The two bias arrays for the kernels, zeros where the call has none."""
    if a.b_ih is not None and a.b_hh is not None:
        return a.b_ih, a.b_hh
    zeros = np.zeros(a.G * a.H, a.dtype)
    return (zeros if a.b_ih is None else a.b_ih), (zeros if a.b_hh is None else a.b_hh)


_SAVED = ("states", "cells", "gates", "proj_in")


def _splittable(a):
    """Could the call's step loop use two threads? The kernels' threads_for splits a
    step only past 128K multiply-adds, or 256 KiB of weights streamed per step; small
    calls (single steps above all) then skip the back-off's clock reads."""
    ph = a.P * a.H if a.w_hr is not None else 0
    return (a.B * (a.G * a.H * a.P + ph) >= 2 * 131072 or
            (a.G * a.H * (a.I + a.P) + ph) * a.dtype.itemsize >= 2 * (128 << 10))


def _forward(a, packed=None):
    """Run the kernels for validated args (and PackedWeights or None);
    returns y (in the caller's layout), h_n, c_n, cache."""
    T, B, H, P, dt = a.T, a.B, a.H, a.P, a.dtype
    lstm = a.cell == "lstm"
    y = _empty((T, B, P), dt)
    h_n = np.empty((B, P), dt)
    c_n = np.empty((B, H), dt) if lstm else None
    if a.training:              # what backward reads; inference keeps one step inside the kernel
        saved = {"states": _empty((T + 1, B, P), dt),
                 "cells": _empty((T + 1, B, H), dt) if lstm else None,
                 "gates": _empty((T, B, 4, H), dt) if a.G > 1 else None,
                 "proj_in": _empty((T, B, H), dt) if a.w_hr is not None else None}
        states, cells, gates, proj_in = saved.values()
    else:
        states = cells = gates = proj_in = None
    b_ih, b_hh = _biases(a)
    with _threads.Call(_threads.requested(a.num_threads), _splittable(a)) as call:
        call.used = _engine.forward(a, call.n, b_ih, b_hh, y, h_n, c_n, states, cells, gates, proj_in,
                                    None if packed is None else packed.buffer)
    cache = Cache(a.cell, a, saved) if a.training else None
    if a.batch_first:
        y = y.transpose(1, 0, 2)
    return y, h_n, c_n, cache


def _backward(cell, dy, final_grads, cache):
    dy, dstate = V.start_backward(cache, cell, dy, final_grads, Cache)
    a = cache.args
    dt, G, H = a.dtype, a.G, a.H
    grads = {
        "x": _empty((a.T, a.B, a.I), dt),
        "h0": _empty((a.B, a.P), dt),
        "w_ih": _empty((G * H, a.I), dt),
        "w_hh": _empty((G * H, a.P), dt),
        "b_ih": _empty(G * H, dt),
        "b_hh": _empty(G * H, dt),
    }
    if cell == "lstm":
        grads["c0"] = _empty((a.B, H), dt)
    if a.w_peep is not None:
        grads["w_peep"] = _empty((3, H), dt)
    if a.w_hr is not None:
        grads["w_hr"] = _empty((a.P, H), dt)
    b_ih, b_hh = _biases(a)
    with _threads.Call(_threads.requested(a.num_threads), _splittable(a)) as call:
        call.used = _engine.backward(a, call.n, b_ih, b_hh, *cache.saved.values(),
                                     dy, dstate[0], dstate[1] if cell == "lstm" else None,
                                     grads["x"], grads["h0"], grads.get("c0"), grads["w_ih"], grads["w_hh"],
                                     grads["b_ih"], grads["b_hh"], grads.get("w_peep"), grads.get("w_hr"))
    cache.used = True
    cache.saved = None          # release the saved arrays; the cache is spent
    if a.batch_first:
        grads["x"] = grads["x"].transpose(1, 0, 2)
    if a.b_ih is None:
        del grads["b_ih"]
    if a.b_hh is None:
        del grads["b_hh"]
    return grads


def rnn_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, *, nonlinearity="tanh", activations=None, clip=None,
                reverse=False,
                lengths=None, step_mask=None, recurrent_mask=None,
                batch_first=False, training=True, num_threads=None, packed=None):
    """Elman RNN: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act tanh or relu.

    x (T, B, I) (or (B, T, I) with batch_first), h0 (B, H) or None, w_ih (H, I),
    w_hh (H, H), b_ih, b_hh (H,) or None. Returns y (T, B, H), h_n (B, H) and a
    cache for rnn_backward (None when training=False).

    `activations` ([f]), `clip` and, for LSTM, `input_forget` are ONNX's
    attributes of the same names (see the module docstring); inference only.
    """
    a = V.prepare("rnn_" + V.check_nonlinearity(nonlinearity), x, h0, None, w_ih, w_hh, b_ih, b_hh, reverse=reverse,
                  lengths=lengths, step_mask=step_mask, recurrent_mask=recurrent_mask, batch_first=batch_first,
                  training=training, num_threads=num_threads, packed=packed, packed_type=PackedWeights,
                  activations=activations, clip=clip)
    y, h_n, _, cache = _forward(a, packed)
    return y, h_n, cache


def gru_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, *, linear_before_reset=True, activations=None,
                clip=None, reverse=False,
                lengths=None, step_mask=None, recurrent_mask=None,
                batch_first=False, training=True, num_threads=None, packed=None):
    """GRU with gates r, z, n (PyTorch order): w_ih (3H, I), w_hh (3H, H), biases (3H,).

    linear_before_reset=True is PyTorch's form n = tanh(W_in x + b_in + r*(W_hn h + b_hn));
    False is the original n = tanh(W_in x + b_in + W_hn (r*h) + b_hn). h' = (1-z)*n + z*h.
    """
    a = V.prepare("gru", x, h0, None, w_ih, w_hh, b_ih, b_hh, reverse=reverse, lengths=lengths, step_mask=step_mask,
                  recurrent_mask=recurrent_mask, batch_first=batch_first, training=training,
                  linear_before_reset=linear_before_reset, num_threads=num_threads, packed=packed,
                  packed_type=PackedWeights, activations=activations, clip=clip)
    y, h_n, _, cache = _forward(a, packed)
    return y, h_n, cache


def lstm_forward(x, hc0, w_ih, w_hh, b_ih=None, b_hh=None, *, w_peep=None, w_hr=None, activations=None,
                 clip=None, input_forget=False, reverse=False,
                 lengths=None, step_mask=None, recurrent_mask=None,
                batch_first=False, training=True, num_threads=None, packed=None):
    """LSTM with gates i, f, g, o (PyTorch order): w_ih (4H, I), w_hh (4H, P), biases (4H,).

    hc0 is (h0, c0), either may be None (zeros), or None. w_peep (3, H) adds
    peepholes (i, f see c_{t-1}; o sees c_t); w_hr (P, H) projects h_t = w_hr @ (o*tanh(c_t)).
    Returns y (T, B, P), (h_n (B, P), c_n (B, H)) and a cache for lstm_backward.
    """
    h0, c0 = V.lstm_states(hc0)
    a = V.prepare("lstm", x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_peep=w_peep, w_hr=w_hr, reverse=reverse,
                  lengths=lengths, step_mask=step_mask, recurrent_mask=recurrent_mask, batch_first=batch_first,
                  training=training, num_threads=num_threads, packed=packed, packed_type=PackedWeights,
                  activations=activations, clip=clip, input_forget=input_forget)
    y, h_n, c_n, cache = _forward(a, packed)
    return y, (h_n, c_n), cache


def rnn_backward(dy, dh_n, cache):
    """Gradients of rnn_forward: dy like y (or None), dh_n (B, H) (or None).

    Returns a dict of new arrays keyed like the forward's inputs: x, h0, w_ih,
    w_hh, and b_ih, b_hh when the forward had them.
    """
    return _backward("rnn", dy, dh_n, cache)


def gru_backward(dy, dh_n, cache):
    """Gradients of gru_forward; see rnn_backward."""
    return _backward("gru", dy, dh_n, cache)


def lstm_backward(dy, dhc_n, cache):
    """Gradients of lstm_forward: dhc_n is (dh_n, dc_n), either may be None, or None.

    Adds c0, and w_peep / w_hr when the forward used them, to rnn_backward's keys.
    """
    return _backward("lstm", dy, dhc_n, cache)
