"""PyTorch interop: run and train `torch.nn` recurrent models in fastrnn, and hand them back.

    from fastrnn.interop import torch as frt
    m = frt.from_torch(torch_lstm)                  # nn.RNN / nn.GRU / nn.LSTM, any options
    out, (h_n, c_n) = m(x, (h0, c0))                # NumPy in and out, PyTorch's shapes
    m = frt.from_state_dict(sd, "gru", batch_first=True)    # no torch needed
    torch_lstm.load_state_dict({k: torch.from_numpy(v) for k, v in frt.to_state_dict(m).items()})

PyTorch is imported only inside the functions that need it (`from_torch`,
`to_torch`); everything else needs NumPy only. The converted objects run on
`fastrnn.functional`, one call per layer and direction (PyTorch's weight layout
and gate order are the engine's own, so no weight is reshaped).

What converts (`from_torch`) and what the result's call looks like:

    nn.RNN / nn.GRU / nn.LSTM -> RNN / GRU / LSTM   out, h_n = m(x, h0);  out, (h_n, c_n) = m(x, (h0, c0))
        every constructor option: num_layers, bidirectional, batch_first, bias,
        proj_size (LSTM), nonlinearity (RNN), dropout (between layers, training only).
        x (T, B, I) or (B, T, I) with batch_first, or unbatched (T, I); states
        (num_layers * directions, B, H) whatever batch_first says (H is proj_size for an
        LSTM's h when set); any state may be None (zeros). `lengths=` (B,) takes the
        place of a PackedSequence: outputs past a sample's length are zeros and h_n is its
        state at its last valid step, as with pack_padded_sequence (enforce_sorted=False).
    nn.RNNCell / nn.GRUCell / nn.LSTMCell -> RNNCell / GRUCell / LSTMCell
        h' = cell(x, h);  (h', c') = cell(x, (h, c));  x (B, I) or (I,).
    nn.Sequential of the above with nn.Linear, nn.Embedding, nn.Dropout (and nn.Identity)
        -> Sequential, y = m(x). PyTorch cannot chain a recurrent module inside
        nn.Sequential itself (it returns a tuple); here a recurrent module passes on
        its output sequence only (`out`, as a `lambda t: t[0]` wrapper would) and starts
        from zero states; a cell passes on h'. So Sequential(Embedding, LSTM, Linear)
        computes linear(lstm(embedding(x))[0]).

Inference (the call, `forward(..., training=False)`) has PyTorch's eval semantics:
dropout is off. Training:

    out, states, cache = m.forward(x, hx, training=True)       # Sequential: y, cache = ...
    d_x, d_hx = m.backward(d_out, d_states)                     # cache= the last one by default
    opt.apply(m.parameters(), m.gradients())                    # any fastrnn.optimizers optimizer

`backward` returns the gradients of the input and of the initial states (None
for an Embedding's integer input) and sets `m.grads`, a dict of NumPy arrays
keyed by PyTorch's parameter names (`named_parameters()` order); it overwrites,
it does not accumulate. `parameters()` are the arrays themselves (optimizers
update them in place); call `m.weights_changed()` after changing them in place
yourself (a training forward does it): inference caches packed weights.
Dropout in training (between recurrent layers, and nn.Dropout) follows PyTorch's
semantics (Bernoulli(1 - p) masks scaled by 1 / (1 - p), a fresh mask per call)
from the object's own NumPy generator (`seed=`/`set_rng`), so its random numbers are
not torch's.

Not supported (clear errors): PackedSequence inputs (use `lengths=`), half and
bfloat16 weights (convert with `.float()`), Embedding `max_norm`, and training an
Embedding with `scale_grad_by_freq`.
"""
import math
from collections import OrderedDict

import numpy as np

from .. import functional as F

__all__ = ["from_torch", "from_state_dict", "to_state_dict", "to_torch",
           "RNN", "GRU", "LSTM", "RNNCell", "GRUCell", "LSTMCell",
           "Linear", "Embedding", "Dropout", "Identity", "Sequential"]

_GATES = {"rnn": 1, "gru": 3, "lstm": 4}
_FORWARD = {"rnn": F.rnn_forward, "gru": F.gru_forward, "lstm": F.lstm_forward}
_BACKWARD = {"rnn": F.rnn_backward, "gru": F.gru_backward, "lstm": F.lstm_backward}
# functional's names -> PyTorch's parameter prefixes
_TORCH_NAME = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh",
               "w_hr": "weight_hr"}
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _shape_str(shape):
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _dtype(dtype):
    dt = np.dtype(dtype)
    if dt not in _FLOATS:
        raise TypeError(f"dtype: expected float32 or float64, got {dt} "
                        f"(convert a half or bfloat16 module with .float() first)")
    return dt


def _to_numpy(value, name):
    """A NumPy copy of an array or a (CPU) torch tensor."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):          # a torch tensor
        value = value.detach().cpu()
        if str(value.dtype) in ("torch.float16", "torch.bfloat16"):
            raise TypeError(f"{name}: expected float32 or float64, got {value.dtype} "
                            f"(convert the module with .float() first)")
        value = value.numpy()
    try:
        arr = np.array(value, copy=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: expected a float array, got {type(value).__name__} ({e})") from None
    if arr.dtype.kind != "f":
        raise TypeError(f"{name}: expected a float array (float32 or float64), got dtype {arr.dtype}")
    return arr


def _state_arrays(state_dict, who):
    """The arrays of a state dict (a mapping of names to arrays or tensors), as NumPy copies."""
    if not hasattr(state_dict, "items") or not hasattr(state_dict, "keys"):
        raise TypeError(f"{who}: state_dict expected a mapping of parameter names to arrays, "
                        f"got {type(state_dict).__name__}")
    return OrderedDict((k, _to_numpy(v, k)) for k, v in state_dict.items())


def _positive(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return int(value)


class _Module:
    """What every converted module has: parameters by PyTorch name, their gradients,
    state dicts and a NumPy generator for dropout."""

    def _init_module(self, seed):
        self._params = OrderedDict()        # PyTorch name -> ndarray
        self.grads = {}
        self._cache = None
        self.rng = np.random.default_rng(seed)

    def set_rng(self, seed_or_generator):
        """The generator of the dropout masks (a seed or a np.random.Generator)."""
        self.rng = (seed_or_generator if isinstance(seed_or_generator, np.random.Generator)
                    else np.random.default_rng(seed_or_generator))

    def named_parameters(self):
        """[(PyTorch name, array)], in PyTorch's order; the arrays are the model's own."""
        return list(self._params.items())

    def parameters(self):
        return list(self._params.values())

    def gradients(self):
        """The last backward's gradients, in `parameters()` order (for `optimizer.apply`)."""
        missing = [n for n in self._params if n not in self.grads]
        if missing:
            raise RuntimeError(f"{type(self).__name__}: no gradients for {missing}; run backward first")
        return [self.grads[n] for n in self._params]

    def zero_grad(self):
        self.grads = {}

    @property
    def dtype(self):
        return next(iter(self._params.values())).dtype if self._params else self._dtype

    def weights_changed(self):
        """Forget cached packed weights (call after changing parameters in place)."""

    def state_dict(self):
        """OrderedDict of PyTorch names -> copies of the parameters."""
        return OrderedDict((n, p.copy()) for n, p in self._params.items())

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays (or tensors) into the parameters, in place; names and shapes are
        all checked before anything changes."""
        given = self._checked_state(state_dict, strict)
        for name, p in self._params.items():
            if name in given:
                p[...] = given[name]
        self.weights_changed()

    def _checked_state(self, state_dict, strict):
        given = _state_arrays(state_dict, type(self).__name__)
        _check_keys(type(self).__name__, given, self._params, strict)
        for name, p in self._params.items():
            if name in given and given[name].shape != p.shape:
                raise ValueError(f"{type(self).__name__}: {name} expected shape {_shape_str(p.shape)}, "
                                 f"got {_shape_str(given[name].shape)}")
        return given

    def astype(self, dtype):
        """A copy of this module with parameters of `dtype` (float32 or float64)."""
        dt = _dtype(dtype)
        new = self._copy_config(dt)
        new.load_state_dict(self.state_dict())
        return new

    def _take_cache(self, cache):
        cache = self._cache if cache is None else cache
        if cache is None:
            raise RuntimeError(f"{type(self).__name__}: backward needs the cache of a forward(..., training=True)")
        if cache.get("used"):
            raise RuntimeError(f"{type(self).__name__}: this cache was already used by a backward call; "
                               f"run forward(..., training=True) again")
        cache["used"] = True
        if cache is self._cache:
            self._cache = None
        return cache


def _check_keys(who, given, expected, strict=True):
    missing = [k for k in expected if k not in given]
    extra = [k for k in given if k not in expected]
    if (missing or extra) and (strict or extra):
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if extra:
            parts.append(f"unexpected keys {extra}")
        raise KeyError(f"{who}: state dict does not match: " + "; ".join(parts) +
                       f" (expected {list(expected)})")


def _float_input(x, dtype, name):
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected a float array, got dtype {arr.dtype}")
    return arr.astype(dtype, copy=False)


# ---------------------------------------------------------------------------
# nn.RNN / nn.GRU / nn.LSTM

class RNNBase(_Module):
    """A stack of recurrent layers with nn.RNN/GRU/LSTM's options, parameters and call."""

    mode = None

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, nonlinearity="tanh", *, dtype=np.float32, seed=None):
        who = type(self).__name__
        self.input_size = _positive(input_size, f"{who}: input_size")
        self.hidden_size = _positive(hidden_size, f"{who}: hidden_size")
        self.num_layers = _positive(num_layers, f"{who}: num_layers")
        self.bias, self.batch_first, self.bidirectional = bool(bias), bool(batch_first), bool(bidirectional)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise ValueError(f"{who}: dropout expected a number in [0, 1], got {dropout!r}")
        self.dropout = float(dropout)
        if isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer)) or proj_size < 0:
            raise ValueError(f"{who}: proj_size expected an int >= 0, got {proj_size!r}")
        if proj_size and self.mode != "lstm":
            raise ValueError(f"{who}: proj_size is only supported by LSTM")
        if proj_size >= hidden_size and proj_size:
            raise ValueError(f"{who}: proj_size expected less than hidden_size={hidden_size}, got {proj_size}")
        self.proj_size = int(proj_size)
        if self.mode == "rnn" and nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"{who}: nonlinearity expected 'tanh' or 'relu', got {nonlinearity!r}")
        if self.mode != "rnn" and nonlinearity != "tanh":
            raise ValueError(f"{who}: nonlinearity is an option of RNN only")
        self.nonlinearity = nonlinearity
        self._dtype = _dtype(dtype)
        self._init_module(seed)
        self._packed = {}
        # PyTorch's default init: U(-1/sqrt(H), 1/sqrt(H)) for every parameter
        k = 1.0 / math.sqrt(self.hidden_size)
        for name, shape in self._param_shapes():
            self._params[name] = self.rng.uniform(-k, k, shape).astype(self._dtype)

    # ---- structure -------------------------------------------------------------------
    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def _out_size(self):
        """Hr: the width of h and of each direction's output."""
        return self.proj_size or self.hidden_size

    def _param_shapes(self):
        """[(PyTorch name, shape)] in PyTorch's order."""
        G, H, P = _GATES[self.mode], self.hidden_size, self._out_size
        out = []
        for layer in range(self.num_layers):
            I = self.input_size if layer == 0 else P * self.num_directions
            for d in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                out += [("weight_ih" + sfx, (G * H, I)), ("weight_hh" + sfx, (G * H, P))]
                if self.bias:
                    out += [("bias_ih" + sfx, (G * H,)), ("bias_hh" + sfx, (G * H,))]
                if self.proj_size:
                    out.append(("weight_hr" + sfx, (P, H)))
        return out

    def _weights(self, layer, d):
        """functional's keyword names -> this layer and direction's arrays."""
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        return {key: self._params.get(torch_name + sfx) for key, torch_name in _TORCH_NAME.items()}

    def config(self):
        c = dict(input_size=self.input_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
                 bias=self.bias, batch_first=self.batch_first, dropout=self.dropout,
                 bidirectional=self.bidirectional)
        if self.mode == "lstm":
            c["proj_size"] = self.proj_size
        if self.mode == "rnn":
            c["nonlinearity"] = self.nonlinearity
        return c

    def _copy_config(self, dtype):
        return type(self)(**self.config(), dtype=dtype)

    def __repr__(self):
        opts = ", ".join(f"{k}={v}" for k, v in self.config().items())
        return f"fastrnn.interop.torch.{type(self).__name__}({opts}, dtype={self.dtype})"

    def weights_changed(self):
        self._packed = {}

    def _packed_weights(self, layer, d, w):
        pw = self._packed.get((layer, d))
        if pw is None or pw.sources[0] is not w["w_ih"] or pw.sources[1] is not w["w_hh"]:
            pw = F.pack_weights(self.mode, w["w_ih"], w["w_hh"], w_hr=w["w_hr"])
            self._packed[(layer, d)] = pw
        return pw

    # ---- call ------------------------------------------------------------------------
    def __call__(self, x, hx=None, *, lengths=None):
        out, states, _ = self.forward(x, hx, lengths=lengths, training=False)
        return out, states

    def _state_arg(self, value, name, shape, dtype, batched):
        if value is None:
            return None
        arr = _float_input(value, dtype, name)
        want = shape if batched else (shape[0],) + shape[2:]
        if arr.shape != want:
            raise ValueError(f"{type(self).__name__}: {name} expected shape {_shape_str(want)} "
                             f"(num_layers * num_directions, {'B, ' if batched else ''}{name[0].upper()}), "
                             f"got {_shape_str(arr.shape)}")
        return arr if batched else arr[:, None, :]

    def forward(self, x, hx=None, *, lengths=None, training=False):
        """(out, states, cache): the call's outputs, and a cache for `backward` when
        training (None otherwise). Training applies the between-layer dropout."""
        who = type(self).__name__
        dt = self.dtype
        x = _float_input(x, dt, "x")
        if x.ndim not in (2, 3):
            raise ValueError(f"{who}: x expected a 3-d array ({'B, T' if self.batch_first else 'T, B'}, I) "
                             f"or an unbatched 2-d one (T, I), got shape {_shape_str(x.shape)}")
        batched = x.ndim == 3
        if not batched:
            x = x[:, None, :]                               # (T, 1, I)
        elif self.batch_first:
            x = x.transpose(1, 0, 2)                        # time-major inside
        T, B, I = x.shape
        if I != self.input_size:
            raise ValueError(f"{who}: x expected {self.input_size} input features, got {I}")
        if lengths is not None and not batched:
            raise ValueError(f"{who}: lengths needs a batched x")
        L, D, H, P = self.num_layers, self.num_directions, self.hidden_size, self._out_size
        lstm = self.mode == "lstm"
        if lstm:
            if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise TypeError(f"{who}: hx expected a tuple (h0, c0) (or None), got {type(hx).__name__}")
            h0, c0 = (None, None) if hx is None else hx
            c0 = self._state_arg(c0, "c0", (L * D, B, H), dt, batched)
        else:
            h0, c0 = hx, None
        h0 = self._state_arg(h0, "h0", (L * D, B, P), dt, batched)
        if training:
            self.weights_changed()          # weights are about to change; repack afterwards
        h_n = np.empty((L * D, B, P), dt)
        c_n = np.empty((L * D, B, H), dt) if lstm else None
        layers, inp = [], x
        for layer in range(L):
            outs, caches = [], []
            for d in range(D):
                k = layer * D + d
                w = self._weights(layer, d)
                kw = dict(reverse=bool(d), lengths=lengths, training=training,
                          packed=None if training else self._packed_weights(layer, d, w))
                h = None if h0 is None else h0[k]
                if lstm:
                    c = None if c0 is None else c0[k]
                    y, (h_n[k], c_n[k]), cache = F.lstm_forward(inp, (h, c), w["w_ih"], w["w_hh"], w["b_ih"],
                                                                w["b_hh"], w_hr=w["w_hr"], **kw)
                elif self.mode == "gru":
                    y, h_n[k], cache = F.gru_forward(inp, h, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], **kw)
                else:
                    y, h_n[k], cache = F.rnn_forward(inp, h, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"],
                                                     nonlinearity=self.nonlinearity, **kw)
                outs.append(y)
                caches.append(cache)
            out = outs[0] if D == 1 else np.concatenate(outs, axis=2)
            mask = None
            if training and self.dropout > 0 and layer < L - 1:
                if self.dropout >= 1:
                    mask = np.zeros(out.shape, dt)
                else:
                    keep = 1.0 - self.dropout
                    mask = (self.rng.random(out.shape) < keep).astype(dt) / dt.type(keep)
                out = out * mask
            layers.append((caches, mask))
            inp = out
        cache = None
        if training:
            cache = {"layers": layers, "batched": batched, "shape": (T, B, I), "used": False}
            self._cache = cache
        if batched and self.batch_first:
            out = out.transpose(1, 0, 2)
        if not batched:
            out, h_n = out[:, 0], h_n[:, 0]
            c_n = None if c_n is None else c_n[:, 0]
        return out, ((h_n, c_n) if lstm else h_n), cache

    def backward(self, d_out, d_states=None, cache=None):
        """Gradients of a training forward: d_out like out (or None), d_states like the
        final states (h_n, or (h_n, c_n) for an LSTM; None or None items are zeros).
        Returns (d_x, d_hx) shaped like x and hx, and sets `self.grads`."""
        who = type(self).__name__
        cache = self._take_cache(cache)
        dt, lstm = self.dtype, self.mode == "lstm"
        L, D, H, P = self.num_layers, self.num_directions, self.hidden_size, self._out_size
        T, B, I = cache["shape"]
        batched = cache["batched"]

        def arg(value, name, shape):
            if value is None:
                return None
            arr = _float_input(value, dt, name)
            want = shape
            if not batched:
                want = (shape[0],) + shape[2:]
            elif name == "d_out" and self.batch_first:
                want = (B, T) + shape[2:]
            if arr.shape != want:
                raise ValueError(f"{who}: {name} expected shape {_shape_str(want)}, got {_shape_str(arr.shape)}")
            if not batched:
                return arr[:, None, :]
            return arr.transpose(1, 0, 2) if (name == "d_out" and self.batch_first) else arr

        dy = arg(d_out, "d_out", (T, B, D * P))
        if lstm:
            if d_states is not None and not (isinstance(d_states, (tuple, list)) and len(d_states) == 2):
                raise TypeError(f"{who}: d_states expected a tuple (d_h_n, d_c_n) (or None)")
            dh_n, dc_n = (None, None) if d_states is None else d_states
            dc_n = arg(dc_n, "d_c_n", (L * D, B, H))
        else:
            dh_n, dc_n = d_states, None
        dh_n = arg(dh_n, "d_h_n", (L * D, B, P))
        d_h0 = np.empty((L * D, B, P), dt)
        d_c0 = np.empty((L * D, B, H), dt) if lstm else None
        grads = {}
        for layer in reversed(range(L)):
            caches, _ = cache["layers"][layer]
            d_inp = None
            for d in range(D):
                k = layer * D + d
                dy_d = None if dy is None else dy[:, :, d * P:(d + 1) * P]
                dh = None if dh_n is None else dh_n[k]
                if lstm:
                    g = F.lstm_backward(dy_d, (dh, None if dc_n is None else dc_n[k]), caches[d])
                    d_c0[k] = g["c0"]
                else:
                    g = _BACKWARD[self.mode](dy_d, dh, caches[d])
                d_h0[k] = g["h0"]
                d_inp = g["x"] if d_inp is None else d_inp + g["x"]
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                for key, torch_name in _TORCH_NAME.items():
                    if key in g and torch_name + sfx in self._params:
                        grads[torch_name + sfx] = g[key]
            if layer > 0:
                mask = cache["layers"][layer - 1][1]
                dy = d_inp if mask is None else d_inp * mask
            else:
                dy = d_inp
        self.grads = {n: grads[n] for n in self._params}
        d_x = dy
        if not batched:
            d_x, d_h0 = d_x[:, 0], d_h0[:, 0]
            d_c0 = None if d_c0 is None else d_c0[:, 0]
        elif self.batch_first:
            d_x = d_x.transpose(1, 0, 2)
        return d_x, ((d_h0, d_c0) if lstm else d_h0)

    # ---- inside a Sequential: the output sequence goes on, zero initial states --------
    def _seq_forward(self, x, training):
        out, _, cache = self.forward(x, None, training=training)
        return out, cache

    def _seq_backward(self, dy, cache):
        return self.backward(dy, None, cache)[0]


class RNN(RNNBase):
    """nn.RNN: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act tanh or relu."""
    mode = "rnn"


class GRU(RNNBase):
    """nn.GRU (gates r, z, n; n = tanh(W_in x + b_in + r * (W_hn h + b_hn)))."""
    mode = "gru"


class LSTM(RNNBase):
    """nn.LSTM (gates i, f, g, o; proj_size projects h with weight_hr)."""
    mode = "lstm"


# ---------------------------------------------------------------------------
# nn.RNNCell / nn.GRUCell / nn.LSTMCell

class RNNCellBase(_Module):
    """One step of a cell, with nn.*Cell's parameters and call."""

    mode = None

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", *, dtype=np.float32, seed=None):
        who = type(self).__name__
        self.input_size = _positive(input_size, f"{who}: input_size")
        self.hidden_size = _positive(hidden_size, f"{who}: hidden_size")
        self.bias = bool(bias)
        if self.mode == "rnn" and nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"{who}: nonlinearity expected 'tanh' or 'relu', got {nonlinearity!r}")
        if self.mode != "rnn" and nonlinearity != "tanh":
            raise ValueError(f"{who}: nonlinearity is an option of RNNCell only")
        self.nonlinearity = nonlinearity
        self._dtype = _dtype(dtype)
        self._init_module(seed)
        k = 1.0 / math.sqrt(self.hidden_size)
        for name, shape in self._param_shapes():
            self._params[name] = self.rng.uniform(-k, k, shape).astype(self._dtype)

    def _param_shapes(self):
        G, H = _GATES[self.mode], self.hidden_size
        out = [("weight_ih", (G * H, self.input_size)), ("weight_hh", (G * H, H))]
        if self.bias:
            out += [("bias_ih", (G * H,)), ("bias_hh", (G * H,))]
        return out

    def config(self):
        c = dict(input_size=self.input_size, hidden_size=self.hidden_size, bias=self.bias)
        if self.mode == "rnn":
            c["nonlinearity"] = self.nonlinearity
        return c

    def _copy_config(self, dtype):
        return type(self)(**self.config(), dtype=dtype)

    def __repr__(self):
        opts = ", ".join(f"{k}={v}" for k, v in self.config().items())
        return f"fastrnn.interop.torch.{type(self).__name__}({opts}, dtype={self.dtype})"

    def __call__(self, x, hx=None):
        return self.forward(x, hx, training=False)[0]

    def _state(self, value, name, B, batched):
        if value is None:
            return None
        arr = _float_input(value, self.dtype, name)
        want = (B, self.hidden_size) if batched else (self.hidden_size,)
        if arr.shape != want:
            raise ValueError(f"{type(self).__name__}: {name} expected shape {_shape_str(want)}, "
                             f"got {_shape_str(arr.shape)}")
        return arr if batched else arr[None]

    def forward(self, x, hx=None, *, training=False):
        """(new state, cache): h' (or (h', c') for LSTMCell), and a cache when training."""
        who = type(self).__name__
        x = _float_input(x, self.dtype, "x")
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(f"{who}: x expected shape (B, {self.input_size}) or ({self.input_size},), "
                             f"got {_shape_str(x.shape)}")
        batched = x.ndim == 2
        x2 = x if batched else x[None]
        B = x2.shape[0]
        p = self._params
        w = (p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh"))
        lstm = self.mode == "lstm"
        if lstm:
            if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise TypeError(f"{who}: hx expected a tuple (h, c) (or None), got {type(hx).__name__}")
            h, c = (None, None) if hx is None else hx
            h, c = self._state(h, "h", B, batched), self._state(c, "c", B, batched)
            _, (h1, c1), cache = F.lstm_forward(x2[None], (h, c), *w, training=training)
            state = (h1, c1) if batched else (h1[0], c1[0])
        else:
            h = self._state(hx, "h", B, batched)
            if self.mode == "gru":
                _, h1, cache = F.gru_forward(x2[None], h, *w, training=training)
            else:
                _, h1, cache = F.rnn_forward(x2[None], h, *w, nonlinearity=self.nonlinearity, training=training)
            state = h1 if batched else h1[0]
        if training:
            cache = {"cache": cache, "batched": batched, "B": B, "used": False}
            self._cache = cache
        return state, cache

    def backward(self, d_state, cache=None):
        """Gradients of a training forward: d_state like the new state (d_h', or
        (d_h', d_c') for LSTMCell; None items are zeros). Returns (d_x, d_hx) and
        sets `self.grads`."""
        who = type(self).__name__
        cache = self._take_cache(cache)
        batched, B = cache["batched"], cache["B"]
        lstm = self.mode == "lstm"
        if lstm:
            if d_state is not None and not (isinstance(d_state, (tuple, list)) and len(d_state) == 2):
                raise TypeError(f"{who}: d_state expected a tuple (d_h, d_c) (or None)")
            dh, dc = (None, None) if d_state is None else d_state
            dh, dc = self._state(dh, "d_h", B, batched), self._state(dc, "d_c", B, batched)
            g = F.lstm_backward(None, (dh, dc), cache["cache"])
        else:
            g = _BACKWARD[self.mode](None, self._state(d_state, "d_h", B, batched), cache["cache"])
        self.grads = {_TORCH_NAME[k]: g[k] for k in ("w_ih", "w_hh", "b_ih", "b_hh") if _TORCH_NAME[k] in self._params}
        d_x = g["x"][0]
        d_h = g["h0"]
        d_c = g.get("c0")
        if not batched:
            d_x, d_h = d_x[0], d_h[0]
            d_c = None if d_c is None else d_c[0]
        return d_x, ((d_h, d_c) if lstm else d_h)

    def _seq_forward(self, x, training):
        state, cache = self.forward(x, None, training=training)
        return (state[0] if self.mode == "lstm" else state), cache

    def _seq_backward(self, dy, cache):
        return self.backward((dy, None) if self.mode == "lstm" else dy, cache)[0]


class RNNCell(RNNCellBase):
    mode = "rnn"


class GRUCell(RNNCellBase):
    mode = "gru"


class LSTMCell(RNNCellBase):
    mode = "lstm"


# ---------------------------------------------------------------------------
# Linear, Embedding, Dropout, Identity and Sequential

class Linear(_Module):
    """nn.Linear on the last axis: y = x @ weight.T + bias."""

    def __init__(self, in_features, out_features, bias=True, *, dtype=np.float32, seed=None):
        self.in_features = _positive(in_features, "Linear: in_features")
        self.out_features = _positive(out_features, "Linear: out_features")
        self._dtype = _dtype(dtype)
        self._init_module(seed)
        k = 1.0 / math.sqrt(self.in_features)
        self._params["weight"] = self.rng.uniform(-k, k, (self.out_features, self.in_features)).astype(self._dtype)
        if bias:
            self._params["bias"] = self.rng.uniform(-k, k, self.out_features).astype(self._dtype)

    def config(self):
        return dict(in_features=self.in_features, out_features=self.out_features, bias="bias" in self._params)

    def _copy_config(self, dtype):
        return Linear(**self.config(), dtype=dtype)

    def __call__(self, x):
        return self.forward(x)[0]

    def forward(self, x, *, training=False):
        x = _float_input(x, self.dtype, "x")
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: x expected a last axis of {self.in_features}, got shape {_shape_str(x.shape)}")
        y = x @ self._params["weight"].T
        if "bias" in self._params:
            y = y + self._params["bias"]
        cache = {"x": x, "used": False} if training else None
        if training:
            self._cache = cache
        return y, cache

    def backward(self, dy, cache=None):
        cache = self._take_cache(cache)
        x = cache["x"]
        dy = _float_input(dy, self.dtype, "dy")
        x2, dy2 = x.reshape(-1, self.in_features), dy.reshape(-1, self.out_features)
        self.grads = {"weight": dy2.T @ x2}
        if "bias" in self._params:
            self.grads["bias"] = dy2.sum(axis=0)
        return dy @ self._params["weight"]

    _seq_forward = lambda self, x, training: self.forward(x, training=training)   # noqa: E731
    _seq_backward = backward


class Embedding(_Module):
    """nn.Embedding: integer indices -> rows of weight (num_embeddings, embedding_dim).
    The padding_idx row gets no gradient, as in PyTorch."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, scale_grad_by_freq=False, *,
                 dtype=np.float32, seed=None):
        self.num_embeddings = _positive(num_embeddings, "Embedding: num_embeddings")
        self.embedding_dim = _positive(embedding_dim, "Embedding: embedding_dim")
        if padding_idx is not None:
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(f"Embedding: padding_idx expected in [-{num_embeddings}, {num_embeddings}), "
                                 f"got {padding_idx}")
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        self.scale_grad_by_freq = bool(scale_grad_by_freq)
        self._dtype = _dtype(dtype)
        self._init_module(seed)
        w = self.rng.standard_normal((self.num_embeddings, self.embedding_dim)).astype(self._dtype)
        if padding_idx is not None:
            w[padding_idx] = 0
        self._params["weight"] = w

    def config(self):
        return dict(num_embeddings=self.num_embeddings, embedding_dim=self.embedding_dim,
                    padding_idx=self.padding_idx, scale_grad_by_freq=self.scale_grad_by_freq)

    def _copy_config(self, dtype):
        return Embedding(**self.config(), dtype=dtype)

    def __call__(self, x):
        return self.forward(x)[0]

    def forward(self, x, *, training=False):
        idx = np.asarray(x)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"Embedding: x expected integer indices, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_embeddings):
            raise IndexError(f"Embedding: x expected indices in [0, {self.num_embeddings}), "
                             f"got values in [{idx.min()}, {idx.max()}]")
        if training and self.scale_grad_by_freq:
            raise NotImplementedError("Embedding: training with scale_grad_by_freq=True is not supported")
        cache = {"x": idx, "used": False} if training else None
        if training:
            self._cache = cache
        return self._params["weight"][idx], cache

    def backward(self, dy, cache=None):
        """Sets grads["weight"]; returns None (integer input has no gradient)."""
        cache = self._take_cache(cache)
        idx = cache["x"]
        dy = _float_input(dy, self.dtype, "dy").reshape(-1, self.embedding_dim)
        g = np.zeros_like(self._params["weight"])
        np.add.at(g, idx.reshape(-1), dy)
        if self.padding_idx is not None:
            g[self.padding_idx] = 0
        self.grads = {"weight": g}
        return None

    _seq_forward = lambda self, x, training: self.forward(x, training=training)   # noqa: E731
    _seq_backward = backward


class Dropout(_Module):
    """nn.Dropout: identity in inference; in training zeros each element with
    probability p and scales the rest by 1 / (1 - p) (masks from `self.rng`)."""

    def __init__(self, p=0.5, *, seed=None):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"Dropout: p expected a number in [0, 1], got {p!r}")
        self.p = float(p)
        self._dtype = np.dtype(np.float32)
        self._init_module(seed)

    def config(self):
        return dict(p=self.p)

    def _copy_config(self, dtype):
        return Dropout(**self.config())

    def __call__(self, x):
        return self.forward(x)[0]

    def forward(self, x, *, training=False):
        x = np.asarray(x)
        if not training or self.p == 0:
            return x, ({"mask": None, "used": False} if training else None)
        if self.p >= 1:
            mask = np.zeros(x.shape, x.dtype)
        else:
            mask = (self.rng.random(x.shape) < 1 - self.p).astype(x.dtype) / x.dtype.type(1 - self.p)
        cache = {"mask": mask, "used": False}
        self._cache = cache
        return x * mask, cache

    def backward(self, dy, cache=None):
        cache = self._take_cache(cache)
        dy = np.asarray(dy)
        return dy if cache["mask"] is None else dy * cache["mask"]

    _seq_forward = lambda self, x, training: self.forward(x, training=training)   # noqa: E731
    _seq_backward = backward


class Identity(Dropout):
    """nn.Identity."""

    def __init__(self, *, seed=None):
        super().__init__(0.0, seed=seed)

    def config(self):
        return {}

    def _copy_config(self, dtype):
        return Identity()


class Sequential(_Module):
    """nn.Sequential of converted modules. A recurrent module passes on its output
    sequence only (zero initial states); a cell passes on h'. Parameter names are
    PyTorch's: "<index or name>.<parameter>"."""

    def __init__(self, *modules, names=None):
        if len(modules) == 1 and isinstance(modules[0], (list, tuple)):
            modules = tuple(modules[0])
        names = [str(i) for i in range(len(modules))] if names is None else [str(n) for n in names]
        if len(names) != len(modules):
            raise ValueError("Sequential: names expected one name per module")
        for name, m in zip(names, modules):
            if not hasattr(m, "_seq_forward"):
                raise TypeError(f"Sequential: module {name} ({type(m).__name__}) is not a fastrnn.interop.torch module")
        self.modules = OrderedDict(zip(names, modules))
        self._dtype = np.dtype(np.float32)
        self._init_module(None)

    @property
    def _params(self):
        return OrderedDict((f"{n}.{k}", v) for n, m in self.modules.items() for k, v in m._params.items())

    @_params.setter
    def _params(self, value):       # _init_module's assignment; the modules own the parameters
        pass

    @property
    def grads(self):
        return {f"{n}.{k}": v for n, m in self.modules.items() for k, v in m.grads.items()}

    @grads.setter
    def grads(self, value):
        if value:
            raise AttributeError("Sequential: grads are its modules'")
        for m in getattr(self, "modules", {}).values():
            m.grads = {}

    def set_rng(self, seed_or_generator):
        """Seed (or give) the generators of every module's dropout, one stream each."""
        rng = (seed_or_generator if isinstance(seed_or_generator, np.random.Generator)
               else np.random.default_rng(seed_or_generator))
        for m in self.modules.values():
            m.set_rng(np.random.default_rng(rng.integers(2 ** 63)))

    def weights_changed(self):
        for m in self.modules.values():
            m.weights_changed()

    def load_state_dict(self, state_dict, strict=True):
        given = _state_arrays(state_dict, "Sequential")
        _check_keys("Sequential", given, self._params, strict)
        subs = {n: {k[len(n) + 1:]: v for k, v in given.items() if k.startswith(n + ".")} for n in self.modules}
        for n, m in self.modules.items():        # every module checked before any changes
            m._checked_state(subs[n], strict)
        for n, m in self.modules.items():
            m.load_state_dict(subs[n], strict=strict)

    def astype(self, dtype):
        return Sequential(*[m.astype(dtype) for m in self.modules.values()], names=list(self.modules))

    def __repr__(self):
        inner = "".join(f"\n  ({n}): {m!r}" for n, m in self.modules.items())
        return f"fastrnn.interop.torch.Sequential({inner}\n)"

    def __len__(self):
        return len(self.modules)

    def __getitem__(self, i):
        return list(self.modules.values())[i]

    def __call__(self, x):
        return self.forward(x)[0]

    def forward(self, x, *, training=False):
        caches = []
        for m in self.modules.values():
            x, cache = m._seq_forward(x, training)
            caches.append(cache)
        cache = {"caches": caches, "used": False} if training else None
        if training:
            self._cache = cache
        return x, cache

    def backward(self, d_out, cache=None):
        """Returns d_x (None when the first module is an Embedding) and sets every module's grads."""
        cache = self._take_cache(cache)
        dy = d_out
        for m, c in zip(reversed(list(self.modules.values())), reversed(cache["caches"])):
            if dy is None:
                raise ValueError(f"Sequential: no gradient reaches {type(m).__name__} (after an Embedding)")
            dy = m._seq_backward(dy, c)
        return dy

    _seq_forward = lambda self, x, training: self.forward(x, training=training)   # noqa: E731
    _seq_backward = backward


# ---------------------------------------------------------------------------
# converters

def _module_dtype(module, dtype):
    if dtype is not None:
        return _dtype(dtype)
    for p in module.parameters():
        return _dtype(str(p.dtype).replace("torch.", ""))
    return np.dtype(np.float32)


def from_torch(module, *, dtype=None, seed=None):
    """A fastrnn object that computes what `module` computes (see the module docstring).

    `module`: nn.RNN, nn.GRU, nn.LSTM, nn.RNNCell, nn.GRUCell, nn.LSTMCell, or an
    nn.Sequential of those with nn.Linear, nn.Embedding, nn.Dropout, nn.Identity.
    The parameters are copied (float32 or float64, the module's dtype unless
    `dtype` says otherwise). `seed` seeds the dropout masks of training.
    """
    import torch
    nn = torch.nn
    if not isinstance(module, nn.Module):
        raise TypeError(f"from_torch: expected a torch.nn.Module, got {type(module).__name__}")
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        subs = [from_torch(m, dtype=dtype) for m in module._modules.values()]
        seq = Sequential(*subs, names=names)
        seq.set_rng(seed)
        return seq
    dt = _module_dtype(module, dtype)
    kind = type(module).__name__
    if isinstance(module, nn.RNNBase):
        if not isinstance(module, (nn.RNN, nn.GRU, nn.LSTM)):
            raise TypeError(f"from_torch: unsupported recurrent module {kind}")
        cls = GRU if isinstance(module, nn.GRU) else LSTM if isinstance(module, nn.LSTM) else RNN
        cfg = dict(input_size=module.input_size, hidden_size=module.hidden_size, num_layers=module.num_layers,
                   bias=module.bias, batch_first=module.batch_first, dropout=module.dropout,
                   bidirectional=module.bidirectional)
        if cls is LSTM:
            cfg["proj_size"] = module.proj_size
        if cls is RNN:
            cfg["nonlinearity"] = module.nonlinearity
        new = cls(**cfg, dtype=dt, seed=seed)
    elif isinstance(module, nn.RNNCellBase):
        cls = GRUCell if isinstance(module, nn.GRUCell) else LSTMCell if isinstance(module, nn.LSTMCell) else RNNCell
        cfg = dict(input_size=module.input_size, hidden_size=module.hidden_size, bias=module.bias)
        if cls is RNNCell:
            cfg["nonlinearity"] = module.nonlinearity
        new = cls(**cfg, dtype=dt, seed=seed)
    elif isinstance(module, nn.Linear):
        new = Linear(module.in_features, module.out_features, bias=module.bias is not None, dtype=dt, seed=seed)
    elif isinstance(module, nn.Embedding):
        if module.max_norm is not None:
            raise NotImplementedError("from_torch: Embedding with max_norm (it renormalises weights in place) "
                                      "is not supported")
        new = Embedding(module.num_embeddings, module.embedding_dim, padding_idx=module.padding_idx,
                        scale_grad_by_freq=module.scale_grad_by_freq, dtype=dt, seed=seed)
    elif isinstance(module, nn.Identity):
        return Identity(seed=seed)
    elif isinstance(module, nn.Dropout):
        return Dropout(module.p, seed=seed)
    else:
        raise TypeError(f"from_torch: unsupported module {kind}; supported: nn.RNN, nn.GRU, nn.LSTM, "
                        f"nn.RNNCell, nn.GRUCell, nn.LSTMCell, and nn.Sequential of those with "
                        f"nn.Linear, nn.Embedding, nn.Dropout, nn.Identity")
    sd = {k: _to_numpy(v, k).astype(dt) for k, v in module.state_dict().items()}
    new.load_state_dict(sd)
    return new


_KINDS = {"rnn": RNN, "gru": GRU, "lstm": LSTM, "rnn_cell": RNNCell, "gru_cell": GRUCell, "lstm_cell": LSTMCell}


def from_state_dict(state_dict, kind, *, dtype=None, seed=None, **config):
    """A fastrnn module from a PyTorch state dict of NumPy arrays (tensors work too).

    kind: "rnn", "gru", "lstm" (the nn.RNN/GRU/LSTM keys weight_ih_l0, ...) or
    "rnn_cell", "gru_cell", "lstm_cell" (weight_ih, weight_hh, bias_ih, bias_hh).
    config: the module's constructor options. input_size, hidden_size, num_layers,
    bidirectional, bias and proj_size are inferred from the keys and shapes when
    not given (given ones are checked); batch_first, dropout and nonlinearity are
    only given (defaults False, 0.0, "tanh"). Missing or unexpected keys raise a
    KeyError naming them; wrong shapes a ValueError naming the key.
    """
    if kind not in _KINDS:
        raise ValueError(f"from_state_dict: kind expected one of {sorted(_KINDS)}, got {kind!r}")
    cls = _KINDS[kind]
    sd = _state_arrays(state_dict, "from_state_dict")
    if "weight_ih_l0" not in sd and "weight_ih" not in sd:
        raise KeyError(f"from_state_dict: missing key {'weight_ih' if kind.endswith('cell') else 'weight_ih_l0'} "
                       f"(got keys {list(sd)})")
    cell = kind.endswith("_cell")
    w_ih = sd["weight_ih" if cell else "weight_ih_l0"]
    if w_ih.ndim != 2:
        raise ValueError(f"from_state_dict: {'weight_ih' if cell else 'weight_ih_l0'} expected a 2-d array, "
                         f"got shape {_shape_str(w_ih.shape)}")
    G = _GATES[kind.split("_")[0]]
    if w_ih.shape[0] % G:
        raise ValueError(f"from_state_dict: weight_ih expected {G} * hidden_size rows for {kind!r}, "
                         f"got shape {_shape_str(w_ih.shape)}")
    inferred = dict(input_size=w_ih.shape[1], hidden_size=w_ih.shape[0] // G)
    if cell:
        inferred["bias"] = "bias_ih" in sd or "bias_hh" in sd
    else:
        layers = set()
        for k in sd:
            for prefix in ("weight_ih_l", "weight_hh_l", "bias_ih_l", "bias_hh_l", "weight_hr_l"):
                if k.startswith(prefix):
                    idx = k[len(prefix):].replace("_reverse", "")
                    if idx.isdigit():
                        layers.add(int(idx))
        inferred["num_layers"] = max(layers) + 1
        inferred["bidirectional"] = any(k.endswith("_reverse") for k in sd)
        inferred["bias"] = any(k.startswith("bias_") for k in sd)
        if kind == "lstm":
            inferred["proj_size"] = sd["weight_hr_l0"].shape[0] if "weight_hr_l0" in sd else 0
    for key, value in inferred.items():
        if key in config and config[key] != value:
            raise ValueError(f"from_state_dict: {key}={config[key]!r} given, but the state dict has {key}={value!r}")
        config.setdefault(key, value)
    if dtype is None:
        dt = w_ih.dtype if w_ih.dtype in _FLOATS else np.dtype(np.float32)
    else:
        dt = _dtype(dtype)
    try:
        new = cls(**config, dtype=dt, seed=seed)
    except TypeError as e:
        raise TypeError(f"from_state_dict: bad config for {kind!r}: {e}") from None
    new.load_state_dict({k: v.astype(dt) for k, v in sd.items()})
    return new


def to_state_dict(model):
    """OrderedDict of PyTorch names -> NumPy copies, loadable into the matching torch
    module with `load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})`."""
    if not isinstance(model, _Module):
        raise TypeError(f"to_state_dict: expected a fastrnn.interop.torch module, got {type(model).__name__}")
    return model.state_dict()


def to_torch(model):
    """The matching torch.nn module with `model`'s weights (and dtype)."""
    import torch
    nn = torch.nn
    if isinstance(model, Sequential):
        return nn.Sequential(OrderedDict((n, to_torch(m)) for n, m in model.modules.items()))
    if isinstance(model, Identity):
        return nn.Identity()
    if isinstance(model, Dropout):
        return nn.Dropout(model.p)
    ctor = {RNN: nn.RNN, GRU: nn.GRU, LSTM: nn.LSTM, RNNCell: nn.RNNCell, GRUCell: nn.GRUCell,
            LSTMCell: nn.LSTMCell, Linear: nn.Linear, Embedding: nn.Embedding}.get(type(model))
    if ctor is None:
        raise TypeError(f"to_torch: expected a fastrnn.interop.torch module, got {type(model).__name__}")
    tdt = torch.float64 if model.dtype == np.float64 else torch.float32
    new = ctor(**model.config(), dtype=tdt)
    new.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in model.state_dict().items()})
    return new
