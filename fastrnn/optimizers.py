"""Optimizers: SGD, Adam, AdamW, RMSprop, Adagrad, with Keras 3's defaults and updates.

An optimizer updates a list of parameter arrays in place from a list of
gradient arrays of the same shapes:

    opt = optimizers.Adam(1e-3, clipnorm=1.0)
    opt.apply(params, grads)        # params[i] -= ...; the arrays keep their identity

Each optimizer follows Keras 3's update rule exactly (the formulas are in the
class docstrings), so a fastrnn model and a Keras model with the same weights,
gradients and optimizer configuration take the same steps. Where PyTorch's
optimizer of the same name computes something else, the docstring says how to
match it.

One `apply` does, in order (as Keras 3 does):

1. the learning rate for this step: the constant, or `schedule(iterations)`;
2. gradient clipping (`clipvalue`, `clipnorm` or `global_clipnorm`) on copies;
3. decoupled weight decay when `weight_decay` is set: `p -= p * weight_decay * lr`;
4. the optimizer's update, with its per-parameter state ("slots": moments etc.);
5. `iterations += 1`.

The state is created on the first `apply` (or by `build`/`set_state`), one set of
slots per parameter *position*, in that parameter's dtype; later calls must pass
the same number of parameters with the same shapes and dtypes. `get_state()` /
`set_state()` give the state as a dict of arrays (for `np.savez`), so training
resumes bit for bit; `get_config()` / `from_config()` give the hyperparameters as
JSON. The learning rate is part of the config, not of the state.

Every argument is checked, and every array before anything is written: a bad
call raises a ValueError/TypeError naming the argument and leaves the parameters
and the state untouched.
"""
import math
import re

import numpy as np

from . import _engine, _registry, _threads, schedules
from .schedules import check_flag, check_int, check_name, check_real

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "get", "serialize",
           "deserialize", "schedules"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_KEY = re.compile(r"^([a-z_]+)/(0|[1-9][0-9]*)$")

# Keras 3 config entries that fastrnn does not implement, with the value meaning "off":
# from_config accepts a Keras config that has them at these values.
_KERAS_ONLY_DEFAULTS = {"use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                        "loss_scale_factor": None, "gradient_accumulation_steps": None}


def _key_order(key):
    slot, _, index = key.partition("/")
    return (int(index) if index.isdigit() else -1, slot)


def _shape_str(shape):
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"



def _same_layout(arr, like):
    """`arr` contiguous in `like`'s memory order (a slot of a Fortran-ordered parameter
    is Fortran-ordered too, so the compiled update can walk both in one pass)."""
    if like.flags.f_contiguous and not like.flags.c_contiguous:
        return np.asfortranarray(arr)
    return np.ascontiguousarray(arr)


def _fusable(*arrays):
    """True when the arrays (None skipped) can go to a compiled element-wise update:
    one float dtype, one contiguous layout, writeable."""
    first = arrays[0]
    if first.dtype not in (np.float32, np.float64) or not (first.flags.c_contiguous or first.flags.f_contiguous):
        return False
    return all(a is None or (a.dtype == first.dtype and a.strides == first.strides and a.shape == first.shape)
               for a in arrays[1:])


class Optimizer:
    """Base class: learning rate (constant or schedule), clipping, weight decay, state.

    Args:
        learning_rate: a float >= 0, or a schedule: a callable of the step count
            (`iterations`, 0 for the first update) returning the rate, normally a
            `schedules.LearningRateSchedule` (only those can be serialized).
        clipnorm: if set (> 0), each gradient whose L2 norm exceeds it is rescaled
            to norm `clipnorm`.
        clipvalue: if set (> 0), each gradient element is clipped to
            [-clipvalue, clipvalue].
        global_clipnorm: if set (> 0), when the L2 norm of all gradients together
            exceeds it, every gradient is scaled by `global_clipnorm / norm`.
        weight_decay: if set (>= 0), decoupled weight decay before the update:
            `p -= p * weight_decay * lr` (Keras 3, for every optimizer).
        name: a str (default: the lower-case class name).

    At most one of clipnorm, clipvalue and global_clipnorm may be set (as in Keras 3).
    Clipping never hides non-finite gradients: a gradient whose norm is inf or NaN
    (or, with `global_clipnorm`, all gradients when the global norm is) is left
    as it is, and `clipvalue` leaves inf and NaN elements as they are, so the blow-up
    reaches the parameters where `TerminateOnNaN` can see it. (Keras turns such
    gradients into NaN or clips inf to `clipvalue`.) The gradients passed in are
    never modified; clipping works on copies.

    Subclasses define `_slot_names()` (the per-parameter state arrays), optionally
    `_slot_init(slot, param)`, and `_update(param, grad, lr, slots)`, and add their
    hyperparameters to `get_config()`.
    """

    def __init__(self, learning_rate, *, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 weight_decay=None, name=None):
        self._schedule = None
        self._lr = None
        self.learning_rate = learning_rate
        self.clipnorm = check_real("clipnorm", clipnorm, low=0.0, low_open=True, allow_none=True)
        self.clipvalue = check_real("clipvalue", clipvalue, low=0.0, low_open=True, allow_none=True)
        self.global_clipnorm = check_real("global_clipnorm", global_clipnorm, low=0.0, low_open=True,
                                          allow_none=True)
        given = [n for n in ("clipnorm", "clipvalue", "global_clipnorm") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"{', '.join(given)}: expected at most one of clipnorm, clipvalue and "
                             f"global_clipnorm, got clipnorm={clipnorm}, clipvalue={clipvalue}, "
                             f"global_clipnorm={global_clipnorm}")
        self.weight_decay = check_real("weight_decay", weight_decay, low=0.0, allow_none=True)
        self.name = check_name("name", name) or type(self).__name__.lower()
        self._iterations = 0
        self._slots = None          # list (one per parameter position) of {slot name: array}
        self._signature = None      # list of (shape, dtype) per position, once built

    # ---- learning rate -------------------------------------------------------------------
    @property
    def learning_rate(self):
        """The learning rate of the next update, as a float.

        For a schedule that is `schedule(iterations)`. Setting it to a float makes the
        rate that constant from now on: **it replaces a schedule** (this is what
        `ReduceLROnPlateau` and `LearningRateScheduler` rely on; Keras refuses to set
        a float over a schedule). Setting it to a schedule (a callable) installs it.
        """
        if self._schedule is None:
            return self._lr
        return self._scheduled_lr()

    @learning_rate.setter
    def learning_rate(self, value):
        if callable(value):
            self._schedule, self._lr = value, None
        else:
            if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "fiu":
                value = value.item()
            lr = check_real("learning_rate", value, low=0.0)
            self._schedule, self._lr = None, lr

    def _scheduled_lr(self):
        value = self._schedule(self._iterations)
        try:
            lr = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"learning_rate: the schedule returned {value!r} at step {self._iterations}, "
                            f"expected a float") from None
        if not (math.isfinite(lr) and lr >= 0):
            raise ValueError(f"learning_rate: the schedule returned {value!r} at step {self._iterations}, "
                             f"expected a finite float >= 0")
        return lr

    @property
    def iterations(self):
        """The number of updates applied so far (an int)."""
        return self._iterations

    @property
    def built(self):
        """True once the per-parameter state exists (after the first `apply`, `build` or `set_state`)."""
        return self._slots is not None

    # ---- subclass hooks ------------------------------------------------------------------
    def _slot_names(self):
        """Names of the state arrays kept per parameter, for this configuration."""
        return ()

    def _slot_init(self, slot, param):
        return np.zeros_like(param)

    def _update(self, param, grad, lr, slots):
        """Update `param` in place from `grad` (param's dtype, never written) and
        the learning rate `lr` (a scalar of param's dtype); `slots` maps slot names
        to this parameter's state arrays, updated in place."""
        raise NotImplementedError(f"{type(self).__name__}._update")

    # ---- building and checking -----------------------------------------------------------
    @staticmethod
    def _check_params(params):
        if isinstance(params, np.ndarray) or not isinstance(params, (list, tuple)):
            raise TypeError(f"params: expected a list of arrays, got {type(params).__name__}")
        for i, p in enumerate(params):
            if not isinstance(p, np.ndarray):
                raise TypeError(f"params[{i}]: expected a float32 or float64 ndarray (updated in place), "
                                f"got {type(p).__name__}")
            if p.dtype not in _FLOAT_DTYPES:
                raise TypeError(f"params[{i}]: expected dtype float32 or float64, got {p.dtype}")
            if not p.flags.writeable:
                raise ValueError(f"params[{i}]: expected a writeable array (it is updated in place), "
                                 f"got a read-only one")
        return list(params)

    def build(self, params):
        """Create the state for `params` (a list of arrays) if it does not exist yet;
        check that `params` match it otherwise. `apply` calls this."""
        params = self._check_params(params)
        signature = [(p.shape, p.dtype) for p in params]
        if self._signature is None:
            if self._slots is not None:         # restored by set_state before any apply
                self._check_signature(signature, self._state_signature())
            self._signature = signature
            if self._slots is None:
                self._slots = [{s: _same_layout(self._slot_init(s, p), p) for s in self._slot_names()}
                               for p in params]
        else:
            self._check_signature(signature, self._signature)

    def _state_signature(self):
        out = []
        for slots in self._slots:
            arr = next(iter(slots.values()))
            out.append((arr.shape, arr.dtype))
        return out

    def _check_signature(self, got, want):
        if len(got) != len(want):
            raise ValueError(f"params: expected {len(want)} arrays (this optimizer's state was built for "
                             f"{len(want)} parameters), got {len(got)}")
        for i, ((shape, dtype), (wshape, wdtype)) in enumerate(zip(got, want)):
            if shape != wshape:
                raise ValueError(f"params[{i}]: expected shape {_shape_str(wshape)} (the shape this "
                                 f"optimizer's state was built for), got {_shape_str(shape)}")
            if dtype != wdtype:
                raise TypeError(f"params[{i}]: expected dtype {wdtype} (the dtype this optimizer's state "
                                f"was built for), got {dtype}")

    @staticmethod
    def _check_grads(params, grads):
        if isinstance(grads, np.ndarray) or not isinstance(grads, (list, tuple)):
            raise TypeError(f"grads: expected a list of arrays, got {type(grads).__name__}")
        if len(grads) != len(params):
            raise ValueError(f"grads: expected {len(params)} arrays (one per parameter), got {len(grads)}")
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            if g is None:
                out.append(None)
                continue
            if not isinstance(g, np.ndarray):
                try:
                    g = np.asarray(g)
                except Exception as exc:
                    raise TypeError(f"grads[{i}]: expected an array, got {type(g).__name__} ({exc})") from None
            if g.dtype.kind != "f":
                raise TypeError(f"grads[{i}]: expected a float array, got dtype {g.dtype}")
            if g.shape != p.shape:
                raise ValueError(f"grads[{i}]: expected shape {_shape_str(p.shape)} (the shape of params[{i}]), "
                                 f"got {_shape_str(g.shape)}")
            if g.dtype != p.dtype:
                g = g.astype(p.dtype)
            out.append(g)
        return out

    # ---- the update ----------------------------------------------------------------------
    def apply(self, params, grads):
        """One update: `params[i]` (ndarrays, changed in place) from `grads[i]`.

        A `None` gradient skips its parameter (no decay, no update, its state kept).
        Gradients of another float dtype are cast to the parameter's dtype; they are
        never modified. Returns the new `iterations`.
        """
        params = self._check_params(params)
        grads = self._check_grads(params, grads)
        lr = self.learning_rate                     # checked before anything is written
        self.build(params)
        grads = self._clip(grads)
        if self.weight_decay:
            for p, g in zip(params, grads):
                if g is not None:
                    dt = p.dtype.type
                    decay = p * dt(self.weight_decay)
                    decay *= dt(lr)
                    p -= decay
        for p, g, slots in zip(params, grads, self._slots):
            if g is not None:
                self._update(p, g, p.dtype.type(lr), slots)
        self._iterations += 1
        return self._iterations

    def apply_gradients(self, grads_and_vars):
        """Keras-style spelling: `apply_gradients(zip(grads, params))`."""
        pairs = list(grads_and_vars)
        return self.apply([v for _, v in pairs], [g for g, _ in pairs])

    @staticmethod
    def _sq_norm(g):
        """The squared L2 norm of `g` as a Python float (inf/NaN when `g` has such values)."""
        flat = g.ravel()
        with np.errstate(over="ignore", invalid="ignore"):
            sq = float(np.dot(flat, flat))
        if not math.isfinite(sq) and flat.dtype != np.float64 and np.isfinite(flat).all():
            flat = flat.astype(np.float64)            # float32 overflow of finite values
            sq = float(np.dot(flat, flat))
        return sq

    def _clip(self, grads):
        if self.clipvalue is not None:
            out = []
            for g in grads:
                if g is not None:
                    c = g.dtype.type(self.clipvalue)
                    clipped = np.clip(g, -c, c)
                    np.copyto(clipped, g, where=np.isinf(g))    # NaN passes through np.clip already
                    g = clipped
                out.append(g)
            return out
        if self.clipnorm is not None:
            out = []
            for g in grads:
                if g is not None:
                    norm = math.sqrt(self._sq_norm(g))
                    if math.isfinite(norm) and norm > self.clipnorm:
                        g = g * g.dtype.type(self.clipnorm / norm)
                out.append(g)
            return out
        if self.global_clipnorm is not None:
            norm = math.sqrt(sum(self._sq_norm(g) for g in grads if g is not None))
            if math.isfinite(norm) and norm > self.global_clipnorm:
                scale = self.global_clipnorm / norm
                return [None if g is None else g * g.dtype.type(scale) for g in grads]
        return grads

    # ---- state ---------------------------------------------------------------------------
    def get_state(self):
        """The optimizer's state as a dict of NumPy arrays (copies).

        Keys: "iterations" (a 0-d int64 array) and "<slot>/<i>" for each slot of
        parameter position i (e.g. "m/0", "v/0" for Adam). Nothing but arrays, so
        `np.savez(..., **state)` / `np.load(allow_pickle=False)` round-trip it.
        """
        state = {"iterations": np.array(self._iterations, dtype=np.int64)}
        for i, slots in enumerate(self._slots or ()):
            for s, arr in slots.items():
                state[f"{s}/{i}"] = arr.copy()
        return state

    def set_state(self, state):
        """Restore a `get_state()` dict exactly (the arrays are copied).

        Checks the keys (this configuration's slots, for every position), shapes and
        dtypes (against the existing state, or else for consistency) before changing
        anything. On an optimizer that has not been applied yet, it builds the state;
        the next `apply` then checks its params against it.
        """
        if not hasattr(state, "keys") or not hasattr(state, "__getitem__"):
            raise TypeError(f"state: expected a dict of arrays, got {type(state).__name__}")
        keys = set(state.keys())
        if "iterations" not in keys:
            raise ValueError("state: expected an 'iterations' entry, got none")
        it = np.asarray(state["iterations"])
        if it.ndim != 0 or it.dtype.kind not in "iu":
            raise TypeError(f"state['iterations']: expected a 0-d integer array, got "
                            f"dtype {it.dtype}, shape {_shape_str(it.shape)}")
        iterations = check_int("state['iterations']", int(it), low=0)
        slot_names = tuple(self._slot_names())
        positions = {}
        for k in sorted(keys - {"iterations"}, key=lambda k: _key_order(k) if isinstance(k, str) else (-2, "")):
            m = _KEY.match(k) if isinstance(k, str) else None
            if m is None or m.group(1) not in slot_names:
                raise ValueError(f"state: unexpected key {k!r}; {type(self).__name__} with this "
                                 f"configuration keeps {list(slot_names) or 'no slots'} per parameter "
                                 f"(keys 'iterations' and '<slot>/<i>')")
            positions.setdefault(int(m.group(2)), {})[m.group(1)] = k
        if self._slots is not None and slot_names:
            n = len(self._slots)                    # built: the state must cover every parameter
        else:
            n = max(positions) + 1 if positions else 0
        want = {f"{s}/{i}" for i in range(n) for s in slot_names}
        missing = sorted(want - keys, key=_key_order)
        extra = sorted(keys - want - {"iterations"}, key=_key_order)
        if missing or extra:
            raise ValueError(f"state: expected the slots {list(slot_names)} for {n} parameters; "
                             f"missing {missing}, unexpected {extra}")
        restored = []
        for i in range(n):
            slots = {}
            for s in slot_names:
                key = f"{s}/{i}"
                arr = state[key]
                if not isinstance(arr, np.ndarray):
                    raise TypeError(f"state[{key!r}]: expected an ndarray, got {type(arr).__name__}")
                if self._slots is not None:             # the state this optimizer holds
                    ref = self._slots[i][s]
                    wshape, wdtype = ref.shape, ref.dtype
                elif slots:                             # this position's other slots
                    ref = next(iter(slots.values()))
                    wshape, wdtype = ref.shape, ref.dtype
                else:
                    wshape, wdtype = arr.shape, None
                if arr.dtype not in _FLOAT_DTYPES or (wdtype is not None and arr.dtype != wdtype):
                    raise TypeError(f"state[{key!r}]: expected dtype {wdtype or 'float32 or float64'}, "
                                    f"got {arr.dtype}")
                if arr.shape != wshape:
                    raise ValueError(f"state[{key!r}]: expected shape {_shape_str(wshape)}, "
                                     f"got {_shape_str(arr.shape)}")
                slots[s] = np.array(arr, dtype=arr.dtype, order="C", copy=True)
            restored.append(slots)
        self._iterations = iterations
        if n:
            self._slots = restored
        # else: no slots to restore (nothing applied yet, or an optimizer without slots)

    # ---- config --------------------------------------------------------------------------
    def get_config(self):
        """The hyperparameters as a JSON-able dict (a schedule is serialized)."""
        if self._schedule is None:
            lr = self._lr
        elif isinstance(self._schedule, schedules.LearningRateSchedule):
            lr = schedules.serialize(self._schedule)
        else:
            raise TypeError(f"learning_rate: a plain callable ({self._schedule!r}) cannot be serialized; "
                            f"subclass fastrnn.optimizers.schedules.LearningRateSchedule")
        return {"name": self.name, "learning_rate": lr, "weight_decay": self.weight_decay,
                "clipnorm": self.clipnorm, "global_clipnorm": self.global_clipnorm,
                "clipvalue": self.clipvalue}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """An optimizer from `get_config()`'s dict (a Keras 3 config works too when it
        uses no feature fastrnn lacks, such as EMA)."""
        if not isinstance(config, dict):
            raise TypeError(f"config: expected a dict, got {type(config).__name__}")
        config = dict(config)
        for key, off in _KERAS_ONLY_DEFAULTS.items():
            if key in config:
                value = config.pop(key)
                if value != off and not (key == "ema_momentum" and not config.get("use_ema")):
                    raise ValueError(f"config[{key!r}]: fastrnn does not support {key}; expected {off!r}, "
                                     f"got {value!r}")
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"], custom_objects)
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} learning_rate={self.learning_rate!r} " \
               f"iterations={self._iterations}>"


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum and Nesterov momentum (Keras 3).

    With `momentum == 0`: `p -= lr * g`. Otherwise, with a velocity `m` (slot
    "momentum", starting at 0):

        m = momentum * m - lr * g
        p += m                                  (nesterov=False)
        p += momentum * m - lr * g              (nesterov=True)

    Versus PyTorch's `torch.optim.SGD` (dampening=0): torch keeps
    `buf = momentum * buf + g` and steps `p -= lr * buf` (nesterov:
    `p -= lr * (g + momentum * buf)`). The sign and the learning rate sit in a
    different place (Keras's `m` is `-lr * buf`), so the two agree exactly while
    the learning rate is constant; when it changes, Keras's velocity keeps the old
    rates while torch rescales the whole buffer by the new one. torch's
    `weight_decay` is an L2 term added to the gradient; it equals this decoupled
    `weight_decay` only without momentum. Defaults: lr 0.01 (torch: 1e-3).

    Args:
        learning_rate: float or schedule, default 0.01.
        momentum: float in [0, 1], default 0.
        nesterov: bool, default False.
        and the keyword arguments of `Optimizer`.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, *, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, weight_decay=None, name=None):
        super().__init__(learning_rate, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm, weight_decay=weight_decay, name=name)
        self.momentum = check_real("momentum", momentum, low=0.0, high=1.0)
        self.nesterov = check_flag("nesterov", nesterov)

    def _slot_names(self):
        return ("momentum",) if self.momentum != 0 else ()

    def _update(self, param, grad, lr, slots):
        step = grad * lr
        if self.momentum == 0:
            param -= step
            return
        mu = param.dtype.type(self.momentum)
        m = slots["momentum"]
        m *= mu
        m -= step
        if self.nesterov:
            ahead = m * mu
            ahead -= step
            param += ahead
        else:
            param += m

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma & Ba), optionally AMSGrad, with Keras 3's update.

    With `t = iterations + 1` and slots `m`, `v` (and `v_hat` for AMSGrad), all
    starting at 0:

        m += (g - m) * (1 - beta_1)
        v += (g*g - v) * (1 - beta_2)
        v_hat = max(v_hat, v); use v_hat for v        (amsgrad=True)
        alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)
        p -= m * alpha / (sqrt(v) + epsilon)

    Versus PyTorch's `torch.optim.Adam`: torch divides by
    `sqrt(v / (1 - beta_2**t)) + eps`, i.e. it adds eps to the *bias-corrected*
    root, while Keras adds epsilon to the uncorrected one ("epsilon hat" of the
    paper). So Keras's `epsilon` equals torch's `eps * sqrt(1 - beta_2**t)`, which
    changes with t: the two agree exactly only when epsilon is 0, closely when it is
    negligible against sqrt(v), and on step 1 when `epsilon = eps * sqrt(1 - beta_2)`.
    AMSGrad takes the maximum of the uncorrected v in both. Defaults: epsilon 1e-7
    (torch: 1e-8). torch's Adam `weight_decay` is an L2 term added to the gradient;
    for decoupled decay use `AdamW` (or `weight_decay=` here, which is decoupled).

    Args:
        learning_rate: float or schedule, default 0.001.
        beta_1, beta_2: floats in [0, 1), defaults 0.9 and 0.999.
        epsilon: float >= 0, default 1e-7.
        amsgrad: bool, default False.
        and the keyword arguments of `Optimizer`.
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, *,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, weight_decay=None, name=None):
        super().__init__(learning_rate, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm, weight_decay=weight_decay, name=name)
        self.beta_1 = check_real("beta_1", beta_1, low=0.0, high=1.0, high_open=True)
        self.beta_2 = check_real("beta_2", beta_2, low=0.0, high=1.0, high_open=True)
        self.epsilon = check_real("epsilon", epsilon, low=0.0)
        self.amsgrad = check_flag("amsgrad", amsgrad)

    def _slot_names(self):
        return ("m", "v", "v_hat") if self.amsgrad else ("m", "v")

    def _update(self, param, grad, lr, slots):
        dt = param.dtype.type
        t = dt(self._iterations + 1)
        one = dt(1)
        alpha = lr * np.sqrt(one - dt(self.beta_2) ** t) / (one - dt(self.beta_1) ** t)
        m, v = slots["m"], slots["v"]
        v_hat = slots.get("v_hat") if self.amsgrad else None
        if _fusable(param, grad, m, v, v_hat):
            # the same operations in one compiled pass (fastrnn/_engine: src_c/optim_impl.h)
            _engine.adam(param, grad, m, v, v_hat, float(alpha), float(dt(1.0 - self.beta_1)),
                         float(dt(1.0 - self.beta_2)), float(dt(self.epsilon)), _threads.get_num_threads())
            return
        tmp = grad - m
        tmp *= dt(1.0 - self.beta_1)
        m += tmp
        np.multiply(grad, grad, out=tmp)
        tmp -= v
        tmp *= dt(1.0 - self.beta_2)
        v += tmp
        if self.amsgrad:
            v_hat = slots["v_hat"]
            np.maximum(v_hat, v, out=v_hat)
            v = v_hat
        np.sqrt(v, out=tmp)
        tmp += dt(self.epsilon)
        step = m * alpha
        step /= tmp
        param -= step

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), Keras 3's AdamW.

    Before each Adam update (see `Adam`): `p -= p * weight_decay * lr`.
    `weight_decay` is required (default 0.004, as Keras; torch's default is 0.01).

    Versus PyTorch's `torch.optim.AdamW`: torch also decays by `lr * weight_decay`
    before its Adam step (`p *= 1 - lr * weight_decay`), so only Adam's epsilon
    placement differs (see `Adam`).
    """

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, *, clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        if weight_decay is None:
            raise ValueError("weight_decay: expected a float >= 0 for AdamW, got None")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                         weight_decay=weight_decay, name=name)


class RMSprop(Optimizer):
    """RMSprop, optionally centered and with momentum, with Keras 3's update.

    Slots `v` (and `mean_grad` when centered, `momentum` when momentum > 0), all
    starting at 0:

        v = rho * v + (1 - rho) * g*g
        mean_grad = rho * mean_grad + (1 - rho) * g                      (centered)
        increment = lr * g / sqrt(v - mean_grad**2 + epsilon)            (centered)
        increment = lr * g / sqrt(v + epsilon)                           (otherwise)
        momentum_buf = momentum * momentum_buf + increment; p -= momentum_buf   (momentum > 0)
        p -= increment                                                   (otherwise)

    Versus PyTorch's `torch.optim.RMSprop` (with `alpha` = rho): torch adds eps
    *outside* the root, `g / (sqrt(v) + eps)` (centered: `sqrt(v - mean_grad**2) + eps`),
    so the two agree exactly only with epsilon = eps = 0. torch's momentum buffer
    holds `g / (sqrt(v) + eps)` and is multiplied by lr at the step, while Keras's
    holds `lr * g / ...`: they agree while lr is constant. Defaults: rho 0.9 (torch
    alpha 0.99), epsilon 1e-7 (torch 1e-8), lr 0.001 (torch 0.01).

    Args:
        learning_rate: float or schedule, default 0.001.
        rho: float in [0, 1), default 0.9.
        momentum: float in [0, 1], default 0.
        epsilon: float >= 0, default 1e-7.
        centered: bool, default False.
        and the keyword arguments of `Optimizer`.
    """

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, *,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, weight_decay=None, name=None):
        super().__init__(learning_rate, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm, weight_decay=weight_decay, name=name)
        self.rho = check_real("rho", rho, low=0.0, high=1.0, high_open=True)
        self.momentum = check_real("momentum", momentum, low=0.0, high=1.0)
        self.epsilon = check_real("epsilon", epsilon, low=0.0)
        self.centered = check_flag("centered", centered)

    def _slot_names(self):
        names = ["v"]
        if self.momentum > 0:
            names.append("momentum")
        if self.centered:
            names.append("mean_grad")
        return tuple(names)

    def _update(self, param, grad, lr, slots):
        dt = param.dtype.type
        rho, one_minus_rho = dt(self.rho), dt(1.0 - self.rho)
        v = slots["v"]
        v *= rho
        tmp = grad * grad
        tmp *= one_minus_rho
        v += tmp
        if self.centered:
            mg = slots["mean_grad"]
            mg *= rho
            np.multiply(grad, one_minus_rho, out=tmp)
            mg += tmp
            np.multiply(mg, mg, out=tmp)
            np.subtract(v, tmp, out=tmp)
        else:
            tmp[...] = v
        tmp += dt(self.epsilon)
        np.sqrt(tmp, out=tmp)
        increment = grad * lr
        increment /= tmp
        if self.momentum > 0:
            buf = slots["momentum"]
            buf *= dt(self.momentum)
            buf += increment
            param -= buf
        else:
            param -= increment

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


class Adagrad(Optimizer):
    """Adagrad, with Keras 3's update.

    Slot `accumulator`, starting at `initial_accumulator_value`:

        accumulator += g*g
        p -= lr * g / sqrt(accumulator + epsilon)

    Versus PyTorch's `torch.optim.Adagrad` (lr_decay=0): torch adds eps outside
    the root, `g / (sqrt(accumulator) + eps)`, and starts the accumulator at 0 by
    default; with equal `initial_accumulator_value` and epsilon = eps = 0 they agree
    exactly. Defaults: lr 0.001 (torch 0.01), initial_accumulator_value 0.1
    (torch 0), epsilon 1e-7 (torch 1e-10).

    Args:
        learning_rate: float or schedule, default 0.001.
        initial_accumulator_value: float >= 0, default 0.1.
        epsilon: float >= 0, default 1e-7.
        and the keyword arguments of `Optimizer`.
    """

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, *, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, weight_decay=None, name=None):
        super().__init__(learning_rate, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm, weight_decay=weight_decay, name=name)
        self.initial_accumulator_value = check_real("initial_accumulator_value", initial_accumulator_value,
                                                    low=0.0)
        self.epsilon = check_real("epsilon", epsilon, low=0.0)

    def _slot_names(self):
        return ("accumulator",)

    def _slot_init(self, slot, param):
        return np.full_like(param, self.initial_accumulator_value)

    def _update(self, param, grad, lr, slots):
        acc = slots["accumulator"]
        tmp = grad * grad
        acc += tmp
        np.add(acc, param.dtype.type(self.epsilon), out=tmp)
        np.sqrt(tmp, out=tmp)
        step = grad * lr
        step /= tmp
        param -= step

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


# ---- registry --------------------------------------------------------------------------

_CLASSES = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad}


def serialize(optimizer):
    """A JSON-able `{"class_name": ..., "config": ...}` dict for an optimizer."""
    return _registry.serialize(optimizer, Optimizer, "optimizer: expected an Optimizer, got {type}")


def deserialize(config, custom_objects=None):
    """The optimizer described by `serialize`'s dict (or Keras 3's).

    `custom_objects` maps class names to your own Optimizer or schedule classes.
    """
    name, kwargs = _registry.class_and_config(config)
    cls = (custom_objects or {}).get(name) or _CLASSES.get(str(name).lower())
    if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
        raise ValueError(f"class_name: expected one of {[c.__name__ for c in _CLASSES.values()]}, got {name!r}")
    return cls.from_config(dict(kwargs), custom_objects=custom_objects)


def get(identifier):
    """An optimizer from an instance (returned as is), a class (built with its
    defaults), a name ("sgd", "adam", "adamw", "rmsprop", "adagrad", any case) or
    a `{"class_name", "config"}` dict."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    if isinstance(identifier, str):
        cls = _CLASSES.get(identifier.lower())
        if cls is None:
            raise ValueError(f"optimizer: expected one of {sorted(_CLASSES)}, got {identifier!r}")
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise TypeError(f"optimizer: expected an Optimizer, its class, its name or a config dict, "
                    f"got {identifier!r}")
