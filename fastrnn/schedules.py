"""Learning-rate schedules: the learning rate as a function of the optimizer step.

A schedule is a callable `schedule(step) -> float`, where `step` is the
optimizer's `iterations` (0 on the first update). Pass one as an optimizer's
`learning_rate`:

    from fastrnn import optimizers
    lr = optimizers.schedules.ExponentialDecay(0.1, decay_steps=1000, decay_rate=0.96)
    opt = optimizers.SGD(lr, momentum=0.9)

The classes follow Keras 3 (`keras.optimizers.schedules`): same names,
arguments, defaults and values, and their configs are interchangeable with
Keras's (`serialize` gives `{"class_name", "config"}`; `deserialize` also
accepts Keras's form, whose extra "module"/"registered_name" keys are ignored).
Values are computed in float64 and returned as Python floats.

Write your own by subclassing `LearningRateSchedule` and implementing
`__call__` and `get_config`; `deserialize(config, custom_objects={...})`
finds it by class name.
"""
import math
import numbers

import numpy as np

from . import _registry

__all__ = ["LearningRateSchedule", "ExponentialDecay", "CosineDecay", "PiecewiseConstantDecay",
           "serialize", "deserialize"]


# ---- argument checks (shared with fastrnn.optimizers) ------------------------------------

def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_real(name, value, *, low=None, high=None, low_open=False, high_open=False, allow_none=False):
    """`value` as a finite Python float within [low, high] (open ends where asked).

    Raises TypeError for a non-number and ValueError for a value out of range; both
    name the argument, the expected range and the actual value.
    """
    if value is None and allow_none:
        return None
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    lb = "(" if (low_open or low is None) else "["
    rb = ")" if (high_open or high is None) else "]"
    want = f"a finite float in {lb}{lo}, {hi}{rb}" + (" or None" if allow_none else "")
    if not _is_real(value):
        raise TypeError(f"{name}: expected {want}, got {value!r} ({type(value).__name__})")
    v = float(value)
    bad = (not math.isfinite(v)
           or (low is not None and (v <= low if low_open else v < low))
           or (high is not None and (v >= high if high_open else v > high)))
    if bad:
        raise ValueError(f"{name}: expected {want}, got {value!r}")
    return v


def check_int(name, value, *, low=None):
    """`value` as a Python int >= low (bools are refused)."""
    want = "an int" + ("" if low is None else f" >= {low}")
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name}: expected {want}, got {value!r} ({type(value).__name__})")
    if low is not None and value < low:
        raise ValueError(f"{name}: expected {want}, got {value!r}")
    return int(value)


def check_flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def check_name(name, value):
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name}: expected a str or None, got {value!r} ({type(value).__name__})")
    return value


def _step(step):
    """The step as a float (a Python or NumPy number, or a 0-d array)."""
    try:
        s = float(step)
    except (TypeError, ValueError):
        raise TypeError(f"step: expected a number, got {step!r} ({type(step).__name__})") from None
    if math.isnan(s):
        raise ValueError(f"step: expected a number, got {step!r}")
    return s


# ---- schedules -------------------------------------------------------------------------

class LearningRateSchedule(_registry.Configurable):
    """Base class: a serializable callable `schedule(step) -> learning rate`.

    Subclasses implement `__call__(step)` (returning a float) and `get_config()`
    (a JSON-able dict of the constructor's arguments); `from_config(config)`
    calls the constructor with it.
    """

    def __call__(self, step):
        raise NotImplementedError(f"{type(self).__name__}.__call__")

    _repr_hidden = ("name",)

    def get_config(self):
        raise NotImplementedError(f"{type(self).__name__}.get_config")

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = object.__hash__


class ExponentialDecay(LearningRateSchedule):
    """`initial_learning_rate * decay_rate ** (step / decay_steps)`.

    With `staircase=True` the exponent is `floor(step / decay_steps)`, so the rate
    drops in steps every `decay_steps` updates (Keras 3 semantics).
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        self.initial_learning_rate = check_real("initial_learning_rate", initial_learning_rate, low=0.0)
        self.decay_steps = _positive_steps("decay_steps", decay_steps)
        self.decay_rate = check_real("decay_rate", decay_rate, low=0.0)
        self.staircase = check_flag("staircase", staircase)
        self.name = check_name("name", name)

    def __call__(self, step):
        p = _step(step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Cosine decay, with an optional linear warmup first (Keras 3 semantics).

    Without warmup (`warmup_target=None`), with `s = min(step, decay_steps)`:

        lr = initial_learning_rate * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps)) + alpha)

    so it falls from `initial_learning_rate` to `alpha * initial_learning_rate` and
    stays there. With `warmup_target`, the rate first rises linearly from
    `initial_learning_rate` to `warmup_target` over `warmup_steps` steps
    (`lr = initial + (target - initial) * step / warmup_steps`), then the cosine
    decay above runs from `warmup_target` over the next `decay_steps` steps.
    `warmup_steps` is ignored when `warmup_target` is None, as in Keras (and with
    `warmup_steps=0` the decay simply starts from `warmup_target`).
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        self.initial_learning_rate = check_real("initial_learning_rate", initial_learning_rate, low=0.0)
        self.decay_steps = _positive_steps("decay_steps", decay_steps)
        self.alpha = check_real("alpha", alpha, low=0.0, high=1.0)
        self.name = check_name("name", name)
        self.warmup_target = check_real("warmup_target", warmup_target, low=0.0, allow_none=True)
        self.warmup_steps = check_real("warmup_steps", warmup_steps, low=0.0)
        if float(self.warmup_steps).is_integer():
            self.warmup_steps = int(self.warmup_steps)

    def _decay(self, s, start):
        cosine = 0.5 * (1.0 + math.cos(math.pi * s / self.decay_steps))
        return start * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step):
        s = _step(step)
        if self.warmup_target is None:
            return self._decay(min(s, self.decay_steps), self.initial_learning_rate)
        s = min(s, self.decay_steps + self.warmup_steps)
        if s < self.warmup_steps:
            delta = self.warmup_target - self.initial_learning_rate
            return delta * (s / self.warmup_steps) + self.initial_learning_rate
        return self._decay(s - self.warmup_steps, self.warmup_target)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


class PiecewiseConstantDecay(LearningRateSchedule):
    """A step function: `values[0]` while `step <= boundaries[0]`, `values[i]` while
    `boundaries[i-1] < step <= boundaries[i]`, `values[-1]` after the last boundary
    (Keras 3 semantics: each boundary belongs to the interval that ends there).

    `boundaries` must be increasing and one shorter than `values`.
    """

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        if not isinstance(boundaries, (list, tuple)) or not boundaries:
            raise TypeError(f"boundaries: expected a non-empty list of numbers, got {boundaries!r}")
        if not isinstance(values, (list, tuple)):
            raise TypeError(f"values: expected a list of floats, got {values!r}")
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"values: expected {len(boundaries) + 1} values (one more than boundaries), "
                             f"got {len(values)}")
        bounds = [check_real(f"boundaries[{i}]", b) for i, b in enumerate(boundaries)]
        for i in range(1, len(bounds)):
            if bounds[i] <= bounds[i - 1]:
                raise ValueError(f"boundaries: expected increasing values, got {list(boundaries)!r}")
        self.boundaries = [int(b) if b.is_integer() else b for b in bounds]
        self.values = [check_real(f"values[{i}]", v, low=0.0) for i, v in enumerate(values)]
        self.name = check_name("name", name)

    def __call__(self, step):
        s = _step(step)
        for boundary, value in zip(self.boundaries, self.values):
            if s <= boundary:
                return value
        return self.values[-1]

    def get_config(self):
        return {"boundaries": list(self.boundaries), "values": list(self.values), "name": self.name}


def _positive_steps(name, value):
    v = check_real(name, value, low=0.0, low_open=True)
    return int(v) if v.is_integer() else v


# ---- serialization -----------------------------------------------------------------------

_BUILTIN = _registry.by_class_name((ExponentialDecay, CosineDecay, PiecewiseConstantDecay))


def serialize(schedule):
    """A JSON-able `{"class_name": ..., "config": ...}` dict for a schedule."""
    return _registry.serialize(schedule, LearningRateSchedule,
                               "schedule: expected a LearningRateSchedule, got {obj!r} ({type}); subclass "
                               "LearningRateSchedule to make a custom schedule serializable")


def deserialize(config, custom_objects=None):
    """The schedule described by `serialize`'s dict (or Keras's).

    `custom_objects` maps class names to your own `LearningRateSchedule` subclasses.
    """
    name, kwargs = _registry.class_and_config(config)
    classes = {**_BUILTIN, **(custom_objects or {})}
    if name not in classes:
        raise ValueError(f"class_name: expected one of {sorted(classes)}, got {name!r}")
    cls = classes[name]
    if not (isinstance(cls, type) and issubclass(cls, LearningRateSchedule)):
        raise TypeError(f"custom_objects[{name!r}]: expected a LearningRateSchedule subclass, got {cls!r}")
    return cls.from_config(dict(kwargs))
