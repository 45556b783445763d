"""Weight regularizers: penalties added to the loss, with their gradients.

fastrnn has no autograd, so a regularizer gives both its value and its
gradient:

    reg(w) -> float            the penalty
    reg.gradient(w) -> array   d penalty / d w, same shape and dtype as w

Keras semantics: `L1(l1)` is l1 * sum(|w|), `L2(l2)` is l2 * sum(w**2) (no 1/2),
`L1L2(l1, l2)` is their sum. The L1 gradient is l1 * sign(w) (0 at w = 0).

Names for `get`: "l1", "l2", "l1_l2" (also "l1l2" and the class names). The
names "l1" and "l2" give the class defaults (0.01); "l1_l2" gives
L1L2(l1=0.01, l2=0.01), as Keras 2's `l1_l2()` did (the class itself defaults to
zero penalties, as in Keras 3).
"""
import math
import numbers

import numpy as np

from . import _registry

__all__ = ["Regularizer", "L1", "L2", "L1L2", "get", "serialize", "deserialize"]


def _factor(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a non-negative number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a finite non-negative number, got {value}")
    return value


def _array(w):
    w = np.asarray(w)
    if w.dtype.kind != "f":
        raise TypeError(f"regularizer: expected a floating array, got dtype {w.dtype}")
    return w


class Regularizer(_registry.Configurable):
    """Base class: `__call__(w)` gives the penalty, `gradient(w)` its gradient."""

    def __call__(self, w):
        raise NotImplementedError(f"{type(self).__name__}.__call__")

    def gradient(self, w):
        raise NotImplementedError(f"{type(self).__name__}.gradient")


class L1L2(Regularizer):
    """l1 * sum(|w|) + l2 * sum(w**2)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(l1, "l1")
        self.l2 = _factor(l2, "l2")

    def __call__(self, w):
        w = _array(w)
        penalty = 0.0
        if self.l1:
            penalty += self.l1 * float(np.sum(np.abs(w), dtype=np.float64))
        if self.l2:
            penalty += self.l2 * float(np.sum(np.square(w, dtype=np.float64)))
        return penalty

    def gradient(self, w):
        w = _array(w)
        grad = np.zeros(w.shape, np.float64)
        if self.l1:
            grad += self.l1 * np.sign(w)
        if self.l2:
            grad += 2.0 * self.l2 * w
        return grad.astype(w.dtype)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """l1 * sum(|w|)."""

    def __init__(self, l1=0.01):
        super().__init__(l1=l1, l2=0.0)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    """l2 * sum(w**2)."""

    def __init__(self, l2=0.01):
        super().__init__(l1=0.0, l2=l2)

    def get_config(self):
        return {"l2": self.l2}


_CLASSES = _registry.by_class_name((L1, L2, L1L2))
_NAMES = {"l1": L1, "l2": L2, "l1_l2": lambda: L1L2(0.01, 0.01), "l1l2": lambda: L1L2(0.01, 0.01)}


def serialize(regularizer):
    """`{"class_name": ..., "config": {...}}` of a regularizer (Keras's layout)."""
    return _registry.serialize(regularizer, Regularizer, "serialize: expected a Regularizer, got {type}")


def deserialize(config, custom_objects=None):
    """A regularizer from a name or a `{"class_name", "config"}` dict."""
    custom_objects = custom_objects or {}

    def by_name(name):
        make = custom_objects.get(name) or _NAMES.get(name) or _CLASSES.get(name)
        if make is None:
            raise ValueError(f"unknown regularizer {name!r}; known names: {', '.join(sorted(_NAMES))}")
        return make

    def by_class_name(name):
        cls = custom_objects.get(name) or _CLASSES.get(name)
        if cls is None:
            raise ValueError(f"unknown regularizer class {name!r}; known: {', '.join(sorted(_CLASSES))}")
        return cls

    return _registry.deserialize(config, by_name, by_class_name)


def get(identifier):
    """A regularizer from None (-> None), a name, an instance, a class or a dict.

    Any object with `__call__(w)` and `gradient(w)` is accepted as it is; a plain
    function is refused, since training needs the gradient too.
    """
    if identifier is None:
        return None
    if isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, (str, dict)):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Regularizer):
        return identifier()
    if callable(identifier) and callable(getattr(identifier, "gradient", None)):
        return identifier
    raise TypeError(f"regularizer: expected None, a name ({', '.join(sorted(_NAMES))}), a Regularizer "
                    f"or a dict, got {type(identifier).__name__} {identifier!r} (a plain function "
                    "has no gradient: subclass fastrnn.regularizers.Regularizer)")
