"""Recurrent layers: SimpleRNN, GRU, LSTM and Bidirectional, with Keras 3's names,
defaults, weights and masking semantics, running on `fastrnn.functional`.

    from fastrnn import layers
    lstm = layers.LSTM(64, return_sequences=True, dropout=0.1, recurrent_dropout=0.1)
    y = lstm(x)                                      # x (B, T, F) -> y (B, T, 64)
    y, h, c = layers.LSTM(64, return_state=True)(x, initial_state=[h0, c0])
    bi = layers.Bidirectional(layers.GRU(32), merge_mode="concat")

One base class, `Recurrent`, serves the three cells; a cell only says how its
Keras weights map to the engine's (gate order, biases, extras).

Weights (Keras's names, shapes and order; G gates, H units, I input features):

    kernel (I, G*H), recurrent_kernel (H, G*H), bias:
      SimpleRNN (H,); LSTM (4H,) gates i, f, c, o;
      GRU gates z, r, h: reset_after=True (2, 3H) [input bias, recurrent bias], False (3H,)
    LSTM extras, not in Keras: peepholes=True adds "peephole_kernel" (3, H), rows i, f, o
    (i and f see c_{t-1}, o sees c_t); proj_units=P adds "projection_kernel" (H, P), and then
    recurrent_kernel is (P, 4H) and the outputs and h are P wide. Both start from
    kernel_initializer and take no regularizer.

The engine wants PyTorch's layout (w_ih (G*H, I), GRU gates r, z, n). The
Keras-layout arrays in `params` are the master copies (optimizers update them
in place); the layer keeps the engine-layout copies and their packed form
(`functional.pack_weights`) until `weights_changed()` (called by the model
after each optimizer step, and by `set_weights`), so inference calls pay no
conversion or packing, and training converts once per batch. Gradients are
mapped back to the Keras layout.

Keras 3 semantics matched (keras/src/layers/rnn/rnn.py and the backends' rnn loop):
- Masks (B, T) bool (from Embedding(mask_zero=True) or Masking): a masked step
  leaves the states untouched, and its output is the previous step's output
  (the last processed one; zeros before the first), so without
  return_sequences the output is the output of the last processed step (zeros
  for a row with no valid step; the returned h state is then the initial h).
  `zero_output_for_mask=True` gives zeros at masked steps instead (Bidirectional
  sets it when it returns sequences, as Keras does). A mask where every row is
  right-padded reaches the engine as `lengths`, any other as `step_mask`; the
  carried outputs are an index map over the engine's outputs.
  compute_mask: the mask passes through with return_sequences, else None
  (a list [mask, None, ...] with return_state); like Keras, it is not reversed
  with go_backwards.
- go_backwards: the sequence (and its mask) is processed from the last step to
  the first, and the output sequence is in processing order, i.e. reversed.
- dropout: one Bernoulli mask per sequence on the inputs (B, I), scaled by
  1/(1 - rate), only when training; recurrent_dropout: one mask per sequence on
  h (B, H, or P) where it enters the recurrent products (variational), only
  when training. Keras draws a separate mask per gate when recurrent_dropout > 0
  (its implementation 1) and one shared mask otherwise; fastrnn always shares
  one mask between the gates (both masks: the engine takes one recurrent mask).
  Masks come from the layer's own numpy Generator (seeded from `seed`; `set_rng`).
- stateful: the final states of a call are the next call's initial states (the
  batch size must stay the same); they are carried as constants, so gradients
  stop at batch boundaries (truncated BPTT). `reset_states()` zeros them.
- Initial states: `layer(x, initial_state=[h0, c0])` or
  `layer.forward([x, h0, c0])`; their gradients are returned by backward.

Not supported: activations other than tanh (relu for SimpleRNN) and sigmoid
gates, `unroll`, constraints.
"""
import inspect
import numbers
import threading

import numpy as np

from .. import functional as F
from .. import initializers, regularizers
from .._threads import get_num_threads
from .base import Layer, deserialize, register, serialize
from .core import (as_float_input, as_generator, check_mask, check_seed, complete_initializer, positive_int,
                   serialize_initializer, serialize_regularizer)

__all__ = ["Recurrent", "SimpleRNN", "GRU", "LSTM", "Bidirectional"]

_ENGINE_LOCK = threading.Lock()      # publishes a layer's engine-weights cache (see Recurrent._engine_and_packed)
_FORWARD = {"rnn": F.rnn_forward, "gru": F.gru_forward, "lstm": F.lstm_forward}
_BACKWARD = {"rnn": F.rnn_backward, "gru": F.gru_backward, "lstm": F.lstm_backward}


# ---------------------------------------------------------------------------
# argument checks

def _flag(value, arg, who):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{who}: {arg} expected a bool, got {value!r}")
    return bool(value)


def _rate(value, arg, who):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{who}: {arg} expected a number in [0, 1), got {value!r}")
    return float(value)


def _fixed(value, allowed, arg, who):
    if value not in allowed:
        raise ValueError(f"{who}: {arg} expected {' or '.join(map(repr, allowed))} "
                         f"(the engine's cell), got {value!r}")
    return value


def _split_inputs(who, inputs, n_states, states):
    """(x, initial states, whether a list came) of a call's inputs: an array, or a
    list [x] or [x, *states] with `n_states` states (`states` says which)."""
    if not isinstance(inputs, (list, tuple)):
        return inputs, [], False
    if not inputs:
        raise ValueError(f"{who}: inputs expected an array or a list [sequences, states...], got an empty list")
    init = list(inputs[1:])
    if init and len(init) != n_states:
        raise ValueError(f"{who}: initial_state expected {n_states} arrays ({states}), got {len(init)}")
    return inputs[0], init, True


def _sequence_shape(input_shape):
    """The sequence's shape from a build/output-shape argument: one shape, or a
    list [sequence shape, state shapes...]."""
    if isinstance(input_shape, (list, tuple)) and input_shape and \
            all(s is None or isinstance(s, (list, tuple)) for s in input_shape):
        return tuple(input_shape[0])
    return tuple(input_shape)


def _first_mask(mask):
    if isinstance(mask, (list, tuple)):
        return mask[0] if mask else None
    return mask


# ---------------------------------------------------------------------------
# masked steps: Keras carries the last processed step's output

def _carry_index(mp):
    """For a processing-order mask mp (B, T): idx[b, t], the last processed step
    <= t (-1 before the first), or None when every masked step comes before the
    first processed one (then the engine's zero outputs already are Keras's)."""
    T = mp.shape[1]
    idx = np.where(mp, np.arange(T), -1)
    np.maximum.accumulate(idx, axis=1, out=idx)
    if not np.any((idx >= 0) & ~mp):
        return None
    return idx


def _carry_forward(seq, idx):
    """seq (B, T, P) in processing order -> Keras's outputs: seq[b, idx[b, t]], 0 where idx < 0."""
    out = np.take_along_axis(seq, np.maximum(idx, 0)[:, :, None], axis=1)
    out[idx < 0] = 0
    return out


def _carry_backward(d, mp):
    """The gradient of `_carry_forward`: each processed step s collects d over the
    steps that carry its output (s up to the next processed step of its row)."""
    B, T, P = d.shape
    starts = mp.copy()
    starts[:, 0] = True                          # a row's leading masked run is its own segment
    starts = np.flatnonzero(starts)              # flat b*T + t, increasing
    sums = np.add.reduceat(np.ascontiguousarray(d).reshape(B * T, P), starts, axis=0)
    keep = mp.reshape(-1)[starts]                # segments that start at a processed step
    out = np.zeros((B * T, P), d.dtype)
    out[starts[keep]] = sums[keep]
    return out.reshape(B, T, P)


class _Call:
    """One forward call of a recurrent layer, and the ctx its backward gets.

    x (B, T, I) the engine's input (after input dropout); is_list / n_init: the
    inputs were a list with n_init initial states, `given[i]` whether state i
    was an array; h0s the engine's initial states (given, carried or None);
    mask (B, T) or None, mp the same in processing order (reversed with
    go_backwards); lengths / step_mask what the engine got for it; dmask (B, I),
    rmask (B, P) the dropout masks or None; fw, packed the engine weights used;
    num_threads the engine's thread count (None: the global setting); y, states,
    cache the engine's results (y and states are dropped once the outputs are
    made); idx the carried-output index map (or None), alive (B,) the rows
    whose last output is not zero (or None: all).
    """

    __slots__ = ("x", "B", "T", "is_list", "n_init", "given", "h0s", "mask", "mp", "lengths", "step_mask",
                 "dmask", "rmask", "fw", "packed", "training", "num_threads", "y", "states",
                 "cache", "idx", "alive")

    def __init__(self):
        self.num_threads = None
        self.cache = self.idx = self.alive = None


# ---------------------------------------------------------------------------

class Recurrent(Layer):
    """Base class of SimpleRNN, GRU and LSTM: options, weights, masks, dropout,
    states and the calls to `fastrnn.functional`.

    A cell sets `_family` ("rnn", "gru", "lstm"), `_gates` (G) and `_perm`
    (engine gate block j is Keras gate block _perm[j], or None), and may
    override the bias mapping (`_biases_to_engine`, `_add_bias_grads`) and the
    extras (`_build_extras`, `_extras_to_engine`, `_add_extra_grads`).
    """

    _family = None
    _gates = 1
    _perm = None
    _activations = ("tanh",)      # the activations the engine runs for this cell

    def __init__(self, units, *, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 dropout=0.0, recurrent_dropout=0.0, seed=None, return_sequences=False,
                 return_state=False, go_backwards=False, stateful=False, zero_output_for_mask=False,
                 **kwargs):
        super().__init__(**kwargs)
        who = self.name
        self.units = positive_int(units, "units", who)
        self.use_bias = _flag(use_bias, "use_bias", who)
        for arg, value in (("kernel_initializer", kernel_initializer),
                           ("recurrent_initializer", recurrent_initializer),
                           ("bias_initializer", bias_initializer)):
            try:
                initializers.get(value)
            except (TypeError, ValueError) as e:
                raise type(e)(f"{who}: {arg}: {e}") from None
        self.kernel_initializer = kernel_initializer
        self.recurrent_initializer = recurrent_initializer
        self.bias_initializer = bias_initializer
        self._regularizer_args = {"kernel": kernel_regularizer, "recurrent_kernel": recurrent_regularizer,
                                  "bias": bias_regularizer}
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.dropout = _rate(dropout, "dropout", who)
        self.recurrent_dropout = _rate(recurrent_dropout, "recurrent_dropout", who)
        self.seed = check_seed(seed, who)
        self.rng = np.random.default_rng(self.seed)
        self.return_sequences = _flag(return_sequences, "return_sequences", who)
        self.return_state = _flag(return_state, "return_state", who)
        self.go_backwards = _flag(go_backwards, "go_backwards", who)
        self.stateful = _flag(stateful, "stateful", who)
        self.zero_output_for_mask = _flag(zero_output_for_mask, "zero_output_for_mask", who)
        self.supports_masking = True
        self.states = None            # stateful: the carried states, [h (B, P)] (+ [c (B, H)])
        self._engine = None           # (engine-layout weights, their pack_weights), rebuilt after weights_changed()
        self._weights_version = 0     # counts weights_changed(): a build from older weights is not kept
        self.activation = _fixed(activation, self._activations, "activation", who)

    # ---- sizes -----------------------------------------------------------------
    @property
    def output_units(self):
        """P: the width of the outputs and of h (units, or LSTM's proj_units)."""
        return self.units

    @property
    def state_size(self):
        """Widths of the states: [P] (SimpleRNN, GRU) or [P, H] (LSTM)."""
        return [self.output_units] + ([self.units] if self._family == "lstm" else [])

    _STATE_NAMES = ("h", "c")

    def set_rng(self, rng):
        """Draw the dropout masks from `rng` (a numpy Generator, or an int seed) from now on."""
        self.rng = as_generator(rng, self.name)

    # ---- weights -----------------------------------------------------------------
    def _bias_shape(self):
        return (self._gates * self.units,)

    def _bias_init(self):
        return complete_initializer(self.bias_initializer, self.units)

    def build(self, input_shape):
        shape = _sequence_shape(input_shape)
        if len(shape) != 3:
            raise ValueError(f"{self.name}: input_shape expected 3 dimensions (batch, timesteps, features), "
                             f"got {shape}")
        in_dim = shape[-1]
        if in_dim is None:
            raise ValueError(f"{self.name}: the last dimension (features) of input_shape must be known, "
                             f"got {shape}")
        G, H = self._gates, self.units
        self.add_weight("kernel", (in_dim, G * H), complete_initializer(self.kernel_initializer, H),
                        self.kernel_regularizer)
        self.add_weight("recurrent_kernel", (self.output_units, G * H),
                        complete_initializer(self.recurrent_initializer, H), self.recurrent_regularizer)
        if self._perm is None:
            # Without a gate reordering the engine's layout is the transpose of Keras's: keep
            # the weights (and their gradients) as transposed views of engine-layout arrays,
            # so that no call copies them (Keras's shapes, names and values are unchanged).
            for name in ("kernel", "recurrent_kernel"):
                self.params[name] = np.ascontiguousarray(self.params[name].T).T
                self.grads[name] = np.zeros_like(self.params[name])
        if self.use_bias:
            self.add_weight("bias", self._bias_shape(), self._bias_init(), self.bias_regularizer)
        self._build_extras()
        self.weights_changed()
        self.built = True

    def _build_extras(self):
        pass

    def weights_changed(self):
        with _ENGINE_LOCK:
            self._weights_version += 1
            self._engine = None

    # The engine-layout weights and their packed form are one tuple, published by one
    # attribute assignment once both are built, so a thread never pairs one set of
    # weights with another's packing (a call would then be refused: the packing is
    # checked against its source arrays). Threads that find no cache build their own
    # copy (conversion and packing read the master weights only); the first to finish
    # publishes it, unless weights_changed() was called meanwhile.
    @property
    def _engine_weights(self):
        e = self._engine
        return None if e is None else e[0]

    @property
    def _packed(self):
        e = self._engine
        return None if e is None else e[1]

    def _gates_to_engine(self, a):
        """Keras (rows, G*H) -> engine (G*H, rows), contiguous, gates reordered."""
        if self._perm is None:
            return np.ascontiguousarray(a.T)
        rows = a.shape[0]
        return np.ascontiguousarray(a.reshape(rows, self._gates, self.units)[:, list(self._perm)]
                                    .reshape(rows, -1).T)

    def _gates_from_engine(self, g):
        """Engine (G*H, rows) -> Keras (rows, G*H) (a view when no reordering)."""
        if self._perm is None:
            return g.T
        return g.reshape(self._gates, self.units, -1)[np.argsort(self._perm)].reshape(g.shape).T

    def _vector_to_engine(self, b):
        return np.array(b) if self._perm is None else b.reshape(self._gates, -1)[list(self._perm)].reshape(-1)

    def _vector_from_engine(self, g):
        return g if self._perm is None else g.reshape(self._gates, -1)[np.argsort(self._perm)].reshape(-1)

    def _biases_to_engine(self):
        """(b_ih, b_hh) for the engine from the Keras bias (one input bias by default)."""
        return self._vector_to_engine(self.params["bias"]), None

    def _add_bias_grads(self, grads):
        self.grads["bias"] += self._vector_from_engine(grads["b_ih"])

    def _extras_to_engine(self):
        return {}

    def _add_extra_grads(self, grads):
        pass

    def _engine_options(self):
        return {}

    def engine_weights(self):
        """The engine-layout weights {w_ih, w_hh, b_ih, b_hh, ...} (cached until weights_changed())."""
        return self._engine_and_packed()[0]

    def _engine_and_packed(self):
        """(engine weights, their functional.PackedWeights), built once per weights_changed(); thread-safe."""
        e = self._engine
        if e is not None:
            return e
        if not self.built:
            raise ValueError(f"{self.name}: the layer is not built yet")
        version = self._weights_version
        p = self.params
        fw = {"w_ih": self._gates_to_engine(p["kernel"]), "w_hh": self._gates_to_engine(p["recurrent_kernel"])}
        fw["b_ih"], fw["b_hh"] = self._biases_to_engine() if self.use_bias else (None, None)
        fw.update(self._extras_to_engine())
        opts = self._engine_options()
        packed = F.pack_weights(self._family, fw["w_ih"], fw["w_hh"], w_hr=fw.get("w_hr"),
                                linear_before_reset=opts.get("linear_before_reset", True))
        e = (fw, packed)
        with _ENGINE_LOCK:
            if self._weights_version == version:
                if self._engine is None:
                    self._engine = e
                else:
                    e = self._engine        # another thread published first: share its copy
        return e

    def _add_grads(self, grads):
        self.grads["kernel"] += self._gates_from_engine(grads["w_ih"])
        self.grads["recurrent_kernel"] += self._gates_from_engine(grads["w_hh"])
        if self.use_bias:
            self._add_bias_grads(grads)
        self._add_extra_grads(grads)

    # ---- states ----------------------------------------------------------------------
    def _state_shapes(self, B):
        return [(B, n) for n in self.state_size]

    def reset_states(self, states=None):
        """Stateful layers: zero the carried states, or set them to `states`
        (a list of arrays [h] or [h, c], which also sets the batch size)."""
        if states is None:
            if self.states is not None:           # new arrays: a call's ctx may hold the old ones
                self.states = [np.zeros_like(s) for s in self.states]
            return
        if not self.stateful:
            raise ValueError(f"{self.name}: reset_states(states) needs stateful=True; "
                             "pass initial states with initial_state= instead")
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        if len(states) != len(self.state_size):
            raise ValueError(f"{self.name}: states expected {len(self.state_size)} arrays "
                             f"({', '.join(self._STATE_NAMES[:len(self.state_size)])}), got {len(states)}")
        B = np.shape(states[0])[0] if np.ndim(states[0]) else None
        new = []
        for i, (s, shape) in enumerate(zip(states, self._state_shapes(B))):
            s = as_float_input(self, s, arg=f"states[{i}]")
            if s.shape != shape:
                raise ValueError(f"{self.name}: states[{i}] ({self._STATE_NAMES[i]}) expected shape {shape}, "
                                 f"got {s.shape}")
            new.append(np.array(s))
        self.states = new

    reset_state = reset_states

    # ---- shapes and masks ------------------------------------------------------------
    def compute_output_shape(self, input_shape):
        shape = _sequence_shape(input_shape)
        B = shape[0]
        out = (B, shape[1], self.output_units) if self.return_sequences else (B, self.output_units)
        if self.return_state:
            return [out] + [(B, n) for n in self.state_size]
        return out

    def compute_mask(self, inputs, mask=None):
        mask = _first_mask(mask)
        out = mask if self.return_sequences else None
        if self.return_state:
            return [out] + [None] * len(self.state_size)
        return out

    # ---- the call ------------------------------------------------------------------------
    def _eager_inputs(self, inputs, *args, initial_state=None, **kwargs):
        if args or kwargs:
            raise TypeError(f"{self.name}: unexpected arguments {list(kwargs) or list(args)}")
        if initial_state is None:
            return inputs
        if isinstance(inputs, (list, tuple)):
            raise ValueError(f"{self.name}: give the initial states either in the inputs list or as "
                             "initial_state=, not both")
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        return [inputs] + states

    def forward(self, inputs, training=False, mask=None):
        c = self._prepare(inputs, training, mask)
        self._execute(c)
        return self._finish(c)

    def _prepare(self, inputs, training, mask):
        """Checks, masks, dropout and initial states: everything before the engine."""
        if not self.built:
            raise ValueError(f"{self.name}: the layer is not built yet (call it, or build(input_shape))")
        c = _Call()
        c.training = bool(training)
        n_states = len(self.state_size)
        x, init, c.is_list = _split_inputs(self.name, inputs, n_states, ", ".join(self._STATE_NAMES[:n_states]))
        c.n_init = len(init)
        x = as_float_input(self, x)
        if x.ndim != 3:
            raise ValueError(f"{self.name}: inputs expected 3 dimensions (batch, timesteps, features), "
                             f"got shape {x.shape}")
        in_dim = self.params["kernel"].shape[0]
        if x.shape[2] != in_dim:
            raise ValueError(f"{self.name}: inputs expected {in_dim} features (the last dimension, as built), "
                             f"got shape {x.shape}")
        B, T = x.shape[:2]
        c.B, c.T = B, T

        # initial states: given, carried (stateful), or zeros
        shapes = self._state_shapes(B)
        c.given = [False] * n_states
        if init:
            h0s = []
            for i, (s, shape) in enumerate(zip(init, shapes)):
                if s is not None:
                    s = as_float_input(self, s, arg=f"initial_state[{i}]")
                    if s.shape != shape:
                        raise ValueError(f"{self.name}: initial_state[{i}] ({self._STATE_NAMES[i]}) expected "
                                         f"shape {shape}, got {s.shape}")
                    c.given[i] = True
                h0s.append(s)
        elif self.stateful:
            if self.states is None:
                self.states = [np.zeros(s, self.dtype) for s in shapes]
            elif self.states[0].shape[0] != B:
                raise ValueError(f"{self.name}: a stateful layer expected inputs with batch size "
                                 f"{self.states[0].shape[0]} (that of its carried states), got shape {x.shape}; "
                                 "keep the batch size fixed, or call reset_states(states) with new states")
            h0s = list(self.states)
        else:
            h0s = [None] * n_states
        c.h0s = h0s

        # the mask: lengths when right-padded, else a step mask
        mask = check_mask(self, _first_mask(mask), (B, T))
        c.lengths = c.step_mask = c.mp = None
        if mask is not None and T > 0:
            n = mask.sum(axis=1)
            if n.min() == T:
                mask = None
            elif np.array_equal(mask, np.arange(T) < n[:, None]):
                c.lengths = n.astype(np.int64)
            else:
                c.step_mask = mask
        else:
            mask = None
        c.mask = mask
        if mask is not None:
            c.mp = mask[:, ::-1] if self.go_backwards else mask        # processing order

        # dropout: one mask per sequence, only when training
        c.dmask = c.rmask = None
        if c.training and self.dropout > 0:
            c.dmask = self._dropout_mask((B, in_dim), self.dropout)
            x = x * c.dmask[:, None, :]
        if c.training and self.recurrent_dropout > 0:
            c.rmask = self._dropout_mask((B, self.output_units), self.recurrent_dropout)
        c.x = x
        c.fw, c.packed = self._engine_and_packed()
        return c

    def _dropout_mask(self, shape, rate):
        keep = self.rng.random(shape) >= rate
        return keep.astype(self.dtype) * self.dtype.type(1.0 / (1.0 - rate))

    def _engine_forward(self, c, training):
        fw = c.fw
        kw = dict(reverse=self.go_backwards, lengths=c.lengths, step_mask=c.step_mask,
                  recurrent_mask=c.rmask, batch_first=True, training=training,
                  num_threads=c.num_threads, packed=c.packed, **self._engine_options())
        args = (c.x, tuple(c.h0s) if self._family == "lstm" else c.h0s[0],
                fw["w_ih"], fw["w_hh"], fw["b_ih"], fw["b_hh"])
        if self._family == "lstm":
            kw.update(w_peep=fw.get("w_peep"), w_hr=fw.get("w_hr"))
            y, states, cache = F.lstm_forward(*args, **kw)
            return y, list(states), cache
        y, h_n, cache = _FORWARD[self._family](*args, **kw)
        return y, [h_n], cache

    def _execute(self, c):
        """The engine call (releases the GIL: Bidirectional runs two at once)."""
        c.y, c.states, c.cache = self._engine_forward(c, c.training)

    def _finish(self, c):
        """Keras's outputs from the engine's: order, carried outputs at masked steps, states."""
        y, states = c.y, c.states
        c.y = None
        mp = c.mp
        if self.return_sequences:
            out = y[:, ::-1] if self.go_backwards else y
            if mp is not None and not self.zero_output_for_mask:
                c.idx = _carry_index(mp)
                if c.idx is not None:
                    out = _carry_forward(out, c.idx)
        else:
            alive = None
            if mp is not None:
                alive = mp[:, -1] if self.zero_output_for_mask else mp.any(axis=1)
                if alive.all():
                    alive = None
            c.alive = alive
            h = states[0]
            if alive is not None:
                out = h * alive[:, None].astype(self.dtype)
            else:
                out = h.copy() if self.return_state else h
        if self.stateful:
            self.states = [s.copy() for s in states]
        c.states = None
        outputs = [out] + states if self.return_state else out
        return outputs, c

    def backward(self, ctx, d_outputs):
        c = ctx
        n_states = len(self.state_size)
        if self.return_state:
            if not isinstance(d_outputs, (list, tuple)) or len(d_outputs) != 1 + n_states:
                raise ValueError(f"{self.name}: d_outputs expected a list of {1 + n_states} arrays or None "
                                 f"(output, states), got {type(d_outputs).__name__}")
            d_out, d_states = d_outputs[0], list(d_outputs[1:])
        else:
            d_out, d_states = d_outputs, [None] * n_states
        P = self.output_units
        dstates = []
        for i, (d, shape) in enumerate(zip(d_states, self._state_shapes(c.B))):
            if d is not None:
                d = self._grad_array(d, shape, f"d_outputs[{i + 1}]")
            dstates.append(d)
        dy = None
        if d_out is not None:
            if self.return_sequences:
                d = self._grad_array(d_out, (c.B, c.T, P), "d_outputs")
                if c.idx is not None:
                    d = _carry_backward(d, c.mp)
                dy = d[:, ::-1] if self.go_backwards else d
            else:
                d = self._grad_array(d_out, (c.B, P), "d_outputs")
                if c.alive is not None:
                    d = d * c.alive[:, None].astype(self.dtype)
                dstates[0] = d if dstates[0] is None else dstates[0] + d
        if dy is None and all(d is None for d in dstates):
            return [None] * (1 + c.n_init) if c.is_list else None

        cache = c.cache
        c.cache = None
        if cache is None:            # an inference forward (or a spent cache): run it again, saving
            _, _, cache = self._engine_forward(c, True)
        dh_n = tuple(dstates) if self._family == "lstm" else dstates[0]
        grads = _BACKWARD[self._family](dy, dh_n, cache)
        if self.trainable:
            self._add_grads(grads)
        dx = grads["x"]
        if c.dmask is not None:
            dx = dx * c.dmask[:, None, :]
        if not c.is_list:
            return dx
        ds = [grads[("h0", "c0")[i]] if c.given[i] else None for i in range(c.n_init)]
        return [dx] + ds

    def _grad_array(self, d, shape, arg):
        d = np.asarray(d, dtype=self.dtype)
        if d.shape != tuple(shape):
            raise ValueError(f"{self.name}: {arg} expected shape {tuple(shape)}, got {d.shape}")
        return d

    # ---- config ------------------------------------------------------------------------------
    def get_config(self):
        return {**super().get_config(), "units": self.units, "use_bias": self.use_bias,
                "kernel_initializer": serialize_initializer(self.kernel_initializer),
                "recurrent_initializer": serialize_initializer(self.recurrent_initializer),
                "bias_initializer": serialize_initializer(self.bias_initializer),
                "kernel_regularizer": serialize_regularizer(self._regularizer_args["kernel"]),
                "recurrent_regularizer": serialize_regularizer(self._regularizer_args["recurrent_kernel"]),
                "bias_regularizer": serialize_regularizer(self._regularizer_args["bias"]),
                "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout, "seed": self.seed,
                "return_sequences": self.return_sequences, "return_state": self.return_state,
                "go_backwards": self.go_backwards, "stateful": self.stateful,
                "zero_output_for_mask": self.zero_output_for_mask, "activation": self.activation}


_RECURRENT_ARGS = frozenset(inspect.signature(Recurrent.__init__).parameters) - {"self", "kwargs"}


def _recurrent_args(args):
    """What a cell's constructor passes on to `Recurrent.__init__`: those of its
    arguments (its `locals()`) that Recurrent takes, and its **kwargs."""
    return {**{k: v for k, v in args.items() if k in _RECURRENT_ARGS}, **args["kwargs"]}


# ---------------------------------------------------------------------------
# the cells

@register
class SimpleRNN(Recurrent):
    """Fully connected RNN: h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias).

    activation "tanh" or "relu". Weights: kernel (I, H), recurrent_kernel (H, H), bias (H,).
    """

    _family = "rnn"
    _gates = 1
    _activations = ("tanh", "relu")

    def __init__(self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, dropout=0.0, recurrent_dropout=0.0,
                 seed=None, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, **kwargs):
        super().__init__(**_recurrent_args(locals()))

    def _engine_options(self):
        return {"nonlinearity": self.activation}


@register
class GRU(Recurrent):
    """Gated recurrent unit, Keras's gates z, r, h (update, reset, candidate).

    reset_after=True (Keras 3's default, cuDNN's form): h~ = tanh(x W_h + b_xh + r * (h W_rh + b_rh)),
    bias (2, 3H) = [input bias, recurrent bias]. reset_after=False: h~ = tanh(x W_h + (r * h) W_rh + b_h),
    bias (3H,). h_t = z * h_{t-1} + (1 - z) * h~. kernel (I, 3H), recurrent_kernel (H, 3H).
    """

    _family = "gru"
    _gates = 3
    _perm = (1, 0, 2)          # engine r, z, n <- Keras z, r, h

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 return_sequences=False, return_state=False, go_backwards=False, stateful=False,
                 reset_after=True, **kwargs):
        super().__init__(**_recurrent_args(locals()))
        self.recurrent_activation = _fixed(recurrent_activation, ("sigmoid",), "recurrent_activation", self.name)
        self.reset_after = _flag(reset_after, "reset_after", self.name)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _biases_to_engine(self):
        b = self.params["bias"]
        if self.reset_after:
            return self._vector_to_engine(b[0]), self._vector_to_engine(b[1])
        return self._vector_to_engine(b), None

    def _add_bias_grads(self, grads):
        if self.reset_after:
            self.grads["bias"][0] += self._vector_from_engine(grads["b_ih"])
            self.grads["bias"][1] += self._vector_from_engine(grads["b_hh"])
        else:
            self.grads["bias"] += self._vector_from_engine(grads["b_ih"])

    def _engine_options(self):
        return {"linear_before_reset": self.reset_after}

    def get_config(self):
        return {**super().get_config(), "recurrent_activation": self.recurrent_activation,
                "reset_after": self.reset_after}


@register
class LSTM(Recurrent):
    """Long short-term memory, Keras's gates i, f, c, o; states [h, c].

    kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,); unit_forget_bias=True
    starts the forget-gate bias at 1. Extras (not in Keras): peepholes=True adds
    peephole_kernel (3, H) (i and f see c_{t-1}, o sees c_t); proj_units=P adds
    projection_kernel (H, P), h_t = (o * tanh(c_t)) @ projection_kernel (PyTorch's
    proj_size), and then recurrent_kernel is (P, 4H) and the outputs and h are P wide.
    """

    _family = "lstm"
    _gates = 4

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, dropout=0.0, recurrent_dropout=0.0,
                 seed=None, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, peepholes=False, proj_units=None, **kwargs):
        super().__init__(**_recurrent_args(locals()))
        self.recurrent_activation = _fixed(recurrent_activation, ("sigmoid",), "recurrent_activation", self.name)
        self.unit_forget_bias = _flag(unit_forget_bias, "unit_forget_bias", self.name)
        self.peepholes = _flag(peepholes, "peepholes", self.name)
        self.proj_units = None if proj_units is None else positive_int(proj_units, "proj_units", self.name)

    @property
    def output_units(self):
        return self.units if self.proj_units is None else self.proj_units

    def _bias_init(self):
        base = complete_initializer(self.bias_initializer, self.units)
        if not self.unit_forget_bias:
            return base
        H = self.units

        def forget_bias_one(shape, dtype, rng=None):         # i, f = 1, c, o
            return np.concatenate([base((H,), dtype, rng=rng), np.ones(H, dtype),
                                   base((2 * H,), dtype, rng=rng)])
        return forget_bias_one

    def _build_extras(self):
        init = complete_initializer(self.kernel_initializer, self.units)
        if self.peepholes:
            self.add_weight("peephole_kernel", (3, self.units), init)
        if self.proj_units is not None:
            self.add_weight("projection_kernel", (self.units, self.proj_units), init)

    def _extras_to_engine(self):
        p = self.params
        return {"w_peep": np.array(p["peephole_kernel"]) if self.peepholes else None,
                "w_hr": np.ascontiguousarray(p["projection_kernel"].T) if self.proj_units else None}

    def _add_extra_grads(self, grads):
        if self.peepholes:
            self.grads["peephole_kernel"] += grads["w_peep"]
        if self.proj_units is not None:
            self.grads["projection_kernel"] += grads["w_hr"].T

    def get_config(self):
        return {**super().get_config(), "recurrent_activation": self.recurrent_activation,
                "unit_forget_bias": self.unit_forget_bias, "peepholes": self.peepholes,
                "proj_units": self.proj_units}


# ---------------------------------------------------------------------------
# Bidirectional

# Running the two directions at once (two Python threads, each with half of the
# threads; the engine releases the GIL) or one after the other (each with all of
# them). Measured on this 2-core AMD EPYC (1 thread per core, 2 MiB L2 per core),
# shared with other jobs, float32, I = H, return_sequences=True, minimum of
# 25-60 interleaved runs, ms, sequential vs concurrent:
#   B=32 T=100 H=256  LSTM: inference 17.4 vs 17.4 (medians 18.1 vs 21.2),
#                           backward 41.9 vs 46.9, training step 58.0 vs 61.7
#                     GRU:  inference 14.6 vs 13.3 (medians 14.9 vs 17.0),
#                           backward 33.9 vs 39.7, training step 47.0 vs 57.4
#   B=32 T=100 H=128  LSTM: inference 7.6 vs 5.3, backward 13.1 vs 10.5
#   B=32 T=100 H=64   LSTM: inference 3.2 vs 2.1, backward 5.9 vs 3.5
#   B=1  T=100 H=256  LSTM: inference 1.30 vs 1.43, backward 3.75 vs 2.91
#   B=8  T=50  H=32   LSTM: inference 0.18 vs 0.25, backward 0.29 vs 0.34 (a thread start ~60 us)
#   B=4  T=100 H=128  SimpleRNN: inference 0.35 vs 0.42, backward 0.68 vs 0.65
# So for the B=32, T=100, H=256 case one direction after the other is faster
# (training clearly, inference a tie with a worse median): once the per-step
# recurrent product is large (B*G*H > 16384) one direction on two threads beats
# two directions on one thread each. Below that, concurrency wins once a
# direction has about 2e7 multiply-adds; at B=1 only the backward gains, and a
# training call's backward runs with the thread count of its forward, so a
# training call at B=1 is concurrent and an inference call is not.
_CONCURRENT_MIN_WORK = 2e7          # multiply-adds of one direction's forward pass
_CONCURRENT_MAX_STEP_WORK = 16384   # B * G * H


def _run_pair(f1, f2, concurrent):
    """f1() and f2(): f2 in a second Python thread when `concurrent` (the engine
    releases the GIL), else one after the other. Returns (f1(), f2())."""
    if not concurrent:
        return f1(), f2()
    box = {}

    def target():
        try:
            box["value"] = f2()
        except BaseException as e:              # re-raised in the caller's thread
            box["error"] = e

    thread = threading.Thread(target=target, name="fastrnn-bidirectional", daemon=True)
    thread.start()
    try:
        r1 = f1()
    finally:
        thread.join()
    if "error" in box:
        raise box["error"]
    return r1, box["value"]


def _removeprefix(s, prefix):
    return s[len(prefix):] if s.startswith(prefix) else s


@register
class Bidirectional(Layer):
    """Runs a recurrent layer forwards and a copy backwards and merges the outputs.

    `layer` (a SimpleRNN, GRU or LSTM) is a template, as in Keras: the layer
    makes its own forward copy (named "forward_<name>") and a backward copy
    ("backward_<name>", go_backwards flipped), or uses `backward_layer`. Their
    weights are this layer's: the forward layer's then the backward layer's,
    named "forward/<weight>" and "backward/<weight>".

    merge_mode "concat" (default), "sum", "mul", "ave", or None (a list of the two
    outputs). With return_sequences the backward outputs are put back in time
    order before merging, and masked steps give zeros (Keras forces
    zero_output_for_mask then). return_state: [output(s)..., forward states...,
    backward states...]; initial states come in the same order. stateful,
    return_sequences and return_state come from `layer`.
    """

    def __init__(self, layer, merge_mode="concat", backward_layer=None, **kwargs):
        if not isinstance(layer, Recurrent):
            raise TypeError(f"Bidirectional: layer expected a fastrnn recurrent layer (SimpleRNN, GRU, LSTM), "
                            f"got {type(layer).__name__}")
        if backward_layer is not None and not isinstance(backward_layer, Recurrent):
            raise TypeError(f"Bidirectional: backward_layer expected a fastrnn recurrent layer or None, "
                            f"got {type(backward_layer).__name__}")
        if merge_mode not in ("concat", "sum", "mul", "ave", None):
            raise ValueError(f"Bidirectional: merge_mode expected 'concat', 'sum', 'mul', 'ave' or None, "
                             f"got {merge_mode!r}")
        kwargs.setdefault("dtype", layer.dtype.name)
        self._trainable = True
        self.forward_layer = self.backward_layer = None
        super().__init__(**kwargs)
        cfg = layer.get_config()
        cfg["name"] = "forward_" + _removeprefix(layer.name, "forward_")
        self.forward_layer = type(layer).from_config(cfg)
        if backward_layer is None:
            cfg = layer.get_config()
            cfg["go_backwards"] = not layer.go_backwards
            cfg["name"] = "backward_" + _removeprefix(layer.name, "backward_")
            backward_layer = type(layer).from_config(cfg)
        self.backward_layer = backward_layer
        fwd, bwd = self.forward_layer, self.backward_layer
        if fwd.go_backwards == bwd.go_backwards:
            raise ValueError(f"{self.name}: backward_layer expected go_backwards={not fwd.go_backwards} "
                             f"(the opposite of the forward layer's), got {bwd.go_backwards}")
        for attr in ("stateful", "return_sequences", "return_state"):
            if getattr(fwd, attr) != getattr(bwd, attr):
                raise ValueError(f"{self.name}: backward_layer expected {attr}={getattr(fwd, attr)} "
                                 f"(as the forward layer), got {getattr(bwd, attr)}")
        if fwd.dtype != bwd.dtype or fwd.dtype != self.dtype:
            raise ValueError(f"{self.name}: dtype expected the layers' dtype {fwd.dtype}, "
                             f"got {self.dtype} (backward layer {bwd.dtype})")
        for sub in (fwd, bwd):
            sub.zero_output_for_mask = sub.return_sequences
            sub.trainable = self._trainable
        self.merge_mode = merge_mode
        self.return_sequences = fwd.return_sequences
        self.return_state = fwd.return_state
        self.stateful = fwd.stateful
        self.supports_masking = True
        self.set_rng(np.random.default_rng(layer.seed))

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)
        for sub in (self.forward_layer, self.backward_layer):
            if sub is not None:
                sub.trainable = self._trainable

    def set_rng(self, rng):
        """Both directions draw their dropout masks from `rng` (forward first)."""
        rng = as_generator(rng, self.name)
        self.forward_layer.set_rng(rng)
        self.backward_layer.set_rng(rng)

    @property
    def states(self):
        f, b = self.forward_layer.states, self.backward_layer.states
        return None if f is None or b is None else list(f) + list(b)

    def reset_states(self, states=None):
        """Zero the carried states of both directions, or set them to `states`
        (forward states then backward states)."""
        if states is None:
            self.forward_layer.reset_states()
            self.backward_layer.reset_states()
            return
        states = list(states)
        n = len(self.forward_layer.state_size)
        if len(states) != 2 * n:
            raise ValueError(f"{self.name}: states expected {2 * n} arrays (forward then backward states), "
                             f"got {len(states)}")
        self.forward_layer.reset_states(states[:n])
        self.backward_layer.reset_states(states[n:])

    reset_state = reset_states

    def build(self, input_shape):
        shape = _sequence_shape(input_shape)
        self.params, self.grads, self._trainable_names, self._regularizers = {}, {}, [], {}
        for prefix, sub in (("forward", self.forward_layer), ("backward", self.backward_layer)):
            if self.init_rng is not None:
                sub.init_rng = self.init_rng
            sub.maybe_build(shape)
            for n in sub.weight_names():
                key = f"{prefix}/{n}"
                self.params[key] = sub.params[n]
                if n in sub.grads:
                    self.grads[key] = sub.grads[n]
                if n in sub._trainable_names:
                    self._trainable_names.append(key)
                if n in sub._regularizers:
                    self._regularizers[key] = sub._regularizers[n]
        self.built = True

    def weights_changed(self):
        self.forward_layer.weights_changed()
        self.backward_layer.weights_changed()

    def compute_output_shape(self, input_shape):
        shape = self.forward_layer.compute_output_shape(input_shape)
        if self.return_state:
            shape, states = shape[0], list(shape[1:])
        if self.merge_mode == "concat":
            shape = tuple(shape[:-1]) + (None if shape[-1] is None else 2 * shape[-1],)
        outs = [tuple(shape), tuple(shape)] if self.merge_mode is None else [tuple(shape)]
        if self.return_state:
            return outs + states + states
        return outs if self.merge_mode is None else outs[0]

    def compute_mask(self, inputs, mask=None):
        mask = _first_mask(mask) if self.return_sequences else None
        outs = [mask, mask] if self.merge_mode is None else [mask]
        if self.return_state:
            return outs + [None] * (2 * len(self.forward_layer.state_size))
        return outs if self.merge_mode is None else outs[0]

    def _eager_inputs(self, inputs, *args, initial_state=None, **kwargs):
        return Recurrent._eager_inputs(self, inputs, *args, initial_state=initial_state, **kwargs)

    def _concurrent(self, c):
        """Run the two directions in two threads? See the measurements above `_CONCURRENT_MIN_WORK`."""
        if get_num_threads() < 2:
            return False
        sub = self.forward_layer
        G, H, P = sub._gates, sub.units, sub.output_units
        work = c.T * c.B * G * H * (c.x.shape[2] + P)
        return work >= _CONCURRENT_MIN_WORK and c.B * G * H <= _CONCURRENT_MAX_STEP_WORK \
            and (c.training or c.B > 1)

    def forward(self, inputs, training=False, mask=None):
        fwd, bwd = self.forward_layer, self.backward_layer
        n = len(fwd.state_size)
        x, states, is_list = _split_inputs(self.name, inputs, 2 * n, "forward then backward states")
        if is_list:
            f_in, b_in = [x] + states[:n], [x] + states[n:]
        else:
            f_in = b_in = x
        cf = fwd._prepare(f_in, training, mask)            # in order: the dropout draws are reproducible
        cb = bwd._prepare(b_in, training, mask)
        concurrent = self._concurrent(cf)
        if concurrent:
            total = get_num_threads()
            cf.num_threads, cb.num_threads = max(1, total // 2), max(1, total - total // 2)
        _run_pair(lambda: fwd._execute(cf), lambda: bwd._execute(cb), concurrent)
        out_f, cf = fwd._finish(cf)
        out_b, cb = bwd._finish(cb)
        if self.return_state:
            (y_f, *states_f), (y_b, *states_b) = out_f, out_b
        else:
            y_f, y_b, states_f, states_b = out_f, out_b, [], []
        if self.return_sequences:
            y_b = y_b[:, ::-1]
        mode = self.merge_mode
        if mode == "concat":
            merged = [np.concatenate([y_f, y_b], axis=-1)]
        elif mode == "sum":
            merged = [y_f + y_b]
        elif mode == "ave":
            merged = [(y_f + y_b) * self.dtype.type(0.5)]
        elif mode == "mul":
            merged = [y_f * y_b]
        else:
            merged = [y_f, y_b]
        ctx = (cf, cb, (y_f, y_b) if mode == "mul" else None, y_f.shape[-1], is_list, concurrent)
        if self.return_state:
            return merged + states_f + states_b, ctx
        return (merged if mode is None else merged[0]), ctx

    def backward(self, ctx, d_outputs):
        cf, cb, kept, P, is_list, concurrent = ctx
        n = len(self.forward_layer.state_size)
        n_out = 2 if self.merge_mode is None else 1
        if self.return_state or self.merge_mode is None:
            expected = n_out + (2 * n if self.return_state else 0)
            if not isinstance(d_outputs, (list, tuple)) or len(d_outputs) != expected:
                raise ValueError(f"{self.name}: d_outputs expected a list of {expected} arrays or None, "
                                 f"got {type(d_outputs).__name__}")
            d_outputs = list(d_outputs)
        else:
            d_outputs = [d_outputs]
        d_merged, d_states = d_outputs[:n_out], d_outputs[n_out:]
        mode = self.merge_mode
        if mode is None:
            d_f, d_b = d_merged
        elif d_merged[0] is None:
            d_f = d_b = None
        else:
            d = np.asarray(d_merged[0], dtype=self.dtype)
            if mode == "concat":
                if d.shape[-1] != 2 * P:
                    raise ValueError(f"{self.name}: d_outputs expected last dimension {2 * P}, "
                                 f"got shape {d.shape}")
                d_f, d_b = d[..., :P], d[..., P:]
            elif mode == "sum":
                d_f = d_b = d
            elif mode == "ave":
                d_f = d_b = d * self.dtype.type(0.5)
            else:
                d_f, d_b = d * kept[1], d * kept[0]
        if self.return_sequences and d_b is not None:
            d_b = np.asarray(d_b)[:, ::-1]
        if self.return_state:
            d_f, d_b = [d_f] + d_states[:n], [d_b] + d_states[n:]
        g_f, g_b = _run_pair(lambda: self.forward_layer.backward(cf, d_f),
                             lambda: self.backward_layer.backward(cb, d_b), concurrent)
        g_f = g_f if isinstance(g_f, list) else [g_f]
        g_b = g_b if isinstance(g_b, list) else [g_b]
        dx = g_f[0] if g_b[0] is None else (g_b[0] if g_f[0] is None else g_f[0] + g_b[0])
        if not is_list:
            return dx
        return [dx] + g_f[1:] + g_b[1:]

    def get_config(self):
        return {**super().get_config(), "layer": serialize(self.forward_layer), "merge_mode": self.merge_mode,
                "backward_layer": serialize(self.backward_layer)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        layer = deserialize(config.pop("layer"), custom_objects=custom_objects, who=f"{cls.__name__}: layer")
        backward = config.pop("backward_layer", None)
        if backward is not None:
            backward = deserialize(backward, custom_objects=custom_objects, who=f"{cls.__name__}: backward_layer")
        return cls(layer, backward_layer=backward, **config)
