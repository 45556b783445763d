"""Activation functions, each with its forward and its backward.

Every activation is an `ActivationFunction` object: calling it runs the
forward, `backward(dy, x=..., y=...)` returns the gradient of the input given
the gradient of the output, the input `x` and/or the output `y`. `needs` says
which of the two the backward reads ("x", "y" or "" for none), so a layer
keeps only that one for its backward.

    from fastrnn import activations
    y = activations.get("relu")(x)
    dx = activations.relu.backward(dy, x=x, y=y)
    activations.softmax(x, axis=1)          # a keyword makes a configured copy

Names follow Keras 3: linear, relu, sigmoid, tanh, softmax, log_softmax, elu,
selu, gelu (exact by default, `approximate=True` for the tanh form), softplus,
softsign, swish (alias silu), hard_sigmoid (relu6(x + 3) / 6), hard_swish
(alias hard_silu), leaky_relu (negative_slope 0.2), exponential.

All forwards are numerically stable (softmax subtracts the maximum, sigmoid
and softplus never exponentiate a large positive number) and keep the dtype
of a float32 or float64 input.
"""
import math

import numpy as np

__all__ = ["ActivationFunction", "get", "serialize", "deserialize", "erf",
           "linear", "relu", "sigmoid", "tanh", "softmax", "log_softmax", "elu", "selu",
           "gelu", "softplus", "softsign", "swish", "silu", "hard_sigmoid", "hard_swish",
           "hard_silu", "leaky_relu", "exponential"]

_SQRT_PI = math.sqrt(math.pi)
_SQRT_2 = math.sqrt(2.0)


def _float(x):
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float32)
    return x


def _erf_erfc(a):
    """erf(a) and erfc(a) in float64 for a >= 0 (full double precision).

    |a| < 2: the everywhere-positive series erf(a) = 2/sqrt(pi) exp(-a^2)
    sum_n (2a^2)^n a / (1*3*...*(2n+1)), 30 terms; a >= 2: the continued
    fraction erfc(a) = exp(-a^2)/sqrt(pi) / (a + (1/2)/(a + 1/(a + (3/2)/(a + ...)))),
    50 levels. Both reach ~1e-15 relative against math.erf/math.erfc.
    """
    a = np.asarray(a, dtype=np.float64)
    erf_v = np.empty_like(a)
    erfc_v = np.empty_like(a)
    small = a < 2.0
    if small.any():
        s_a = a[small]
        z = s_a * s_a
        term = s_a.copy()
        acc = s_a.copy()
        two_z = 2.0 * z
        for n in range(1, 31):
            term *= two_z
            term /= 2 * n + 1
            acc += term
        e = (2.0 / _SQRT_PI) * np.exp(-z) * acc
        erf_v[small] = e
        erfc_v[small] = 1.0 - e
    big = ~small
    if big.any():
        b_a = a[big]
        with np.errstate(over="ignore", under="ignore"):
            f = b_a.copy()
            for k in range(50, 0, -1):
                f = b_a + (0.5 * k) / f
            c = np.exp(-(b_a * b_a)) / (_SQRT_PI * f)
        erfc_v[big] = c
        erf_v[big] = 1.0 - c
    return erf_v, erfc_v


def erf(x):
    """The error function, elementwise (NumPy has none); float64 accuracy ~1e-15."""
    x = _float(x)
    e, _ = _erf_erfc(np.abs(x))
    return (np.sign(x) * e).astype(x.dtype, copy=False)


def _normal_cdf(x):
    """Phi(x) = P(N(0,1) <= x), accurate in both tails, in float64."""
    x64 = np.asarray(x, dtype=np.float64)
    _, c = _erf_erfc(np.abs(x64) / _SQRT_2)
    return np.where(x64 >= 0, 1.0 - 0.5 * c, 0.5 * c)


def _sigmoid(x):
    """1 / (1 + exp(-x)) without overflow: exp of -|x| only."""
    e = np.exp(-np.abs(x))
    out = np.where(x >= 0, 1.0, e)
    out /= 1.0 + e
    return out.astype(x.dtype, copy=False)


class ActivationFunction:
    """One activation: `self(x)` is the forward, `backward(dy, x, y)` its gradient."""

    name = None
    needs = "x"           # what backward reads: "x", "y", or "" (nothing)

    def __call__(self, x, **kwargs):
        if kwargs:
            return type(self)(**{**self.get_config(), **kwargs})(x)
        return self.forward(_float(x))

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy, x=None, y=None):
        raise NotImplementedError

    def get_config(self):
        return {}

    def _require(self, x, y):
        if "x" in self.needs and x is None:
            raise ValueError(f"activation {self.name}: backward needs the input x")
        if "y" in self.needs and y is None:
            raise ValueError(f"activation {self.name}: backward needs the output y")

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self), tuple(sorted(self.get_config().items()))))

    def __repr__(self):
        cfg = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"<activation {self.name}({cfg})>"


class Linear(ActivationFunction):
    name = "linear"
    needs = ""

    def forward(self, x):
        return x

    def backward(self, dy, x=None, y=None):
        return dy


class ReLU(ActivationFunction):
    """max(x, 0); Keras's options: `negative_slope` below `threshold`, `max_value` cap.

    The gradient at the kink is 0 (as PyTorch and TensorFlow)."""
    name = "relu"

    def __init__(self, negative_slope=0.0, max_value=None, threshold=0.0):
        self.negative_slope = float(negative_slope)
        self.max_value = None if max_value is None else float(max_value)
        self.threshold = float(threshold)
        if self.negative_slope < 0:
            raise ValueError(f"relu: negative_slope expected >= 0, got {negative_slope}")
        plain = self.negative_slope == 0 and self.max_value is None and self.threshold == 0
        self.needs = "y" if plain else "x"

    def forward(self, x):
        if self.needs == "y":
            return np.maximum(x, 0, dtype=x.dtype)
        t = x.dtype.type(self.threshold)
        y = np.where(x > t, x, self.negative_slope * (x - t)).astype(x.dtype, copy=False)
        if self.max_value is not None:
            np.minimum(y, x.dtype.type(self.max_value), out=y)
        return y

    def backward(self, dy, x=None, y=None):
        self._require(x, y)
        if self.needs == "y":
            return np.where(y > 0, dy, 0).astype(dy.dtype, copy=False)
        g = np.where(x > self.threshold, 1.0, self.negative_slope)
        if self.max_value is not None:
            g = np.where(x >= self.max_value, 0.0, g)
        return (dy * g).astype(dy.dtype, copy=False)

    def get_config(self):
        return {"negative_slope": self.negative_slope, "max_value": self.max_value,
                "threshold": self.threshold}


class LeakyReLU(ActivationFunction):
    """x if x > 0 else negative_slope * x (Keras 3 default slope 0.2)."""
    name = "leaky_relu"

    def __init__(self, negative_slope=0.2):
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        return np.where(x > 0, x, x * x.dtype.type(self.negative_slope)).astype(x.dtype, copy=False)

    def backward(self, dy, x=None, y=None):
        self._require(x, y)
        return np.where(x > 0, dy, dy * dy.dtype.type(self.negative_slope)).astype(dy.dtype, copy=False)

    def get_config(self):
        return {"negative_slope": self.negative_slope}


class Sigmoid(ActivationFunction):
    name = "sigmoid"
    needs = "y"

    def forward(self, x):
        return _sigmoid(x)

    def backward(self, dy, x=None, y=None):
        self._require(x, y)
        return dy * y * (1 - y)


class Tanh(ActivationFunction):
    name = "tanh"
    needs = "y"

    def forward(self, x):
        return np.tanh(x)

    def backward(self, dy, x=None, y=None):
        self._require(x, y)
        return dy * (1 - y * y)


class Softmax(ActivationFunction):
    """exp(x - max) / sum(exp(x - max)) along `axis`."""
    name = "softmax"
    needs = "y"

    def __init__(self, axis=-1):
        self.axis = axis if isinstance(axis, int) else tuple(axis)

    def forward(self, x):
        e = np.exp(x - np.max(x, axis=self.axis, keepdims=True))
        e /= np.sum(e, axis=self.axis, keepdims=True)
        return e

    def backward(self, dy, x=None, y=None):
        self._require(x, y)
        return y * (dy - np.sum(dy * y, axis=self.axis, keepdims=True))

    def get_config(self):
        return {"axis": self.axis if isinstance(self.axis, int) else list(self.axis)}


class LogSoftmax(ActivationFunction):
    """x - max - log(sum(exp(x - max))) along `axis`."""
    name = "log_softmax"
    needs = "y"

    def __init__(self, axis=-1):
        self.axis = axis if isinstance(axis, int) else tuple(axis)

    def forward(self, x):
        s = x - np.max(x, axis=self.axis, keepdims=True)
        s -= np.log(np.sum(np.exp(s), axis=self.axis, keepdims=True))
        return s

    def backward(self, dy, x=None, y=None):
        self._require(x, y)
        return dy - np.exp(y) * np.sum(dy, axis=self.axis, keepdims=True)

    def get_config(self):
        return {"axis": self.axis if isinstance(self.axis, int) else list(self.axis)}


class ELU(ActivationFunction):
    """x if x > 0 else alpha * (exp(x) - 1)."""
    name = "elu"
    needs = "x"

    def __init__(self, alpha=1.0):
        self.alpha = float(alpha)

    def forward(self, x):
        neg = self.alpha * np.expm1(np.minimum(x, 0))
        return np.where(x > 0, x, neg).astype(x.dtype, copy=False)

    def backward(self, dy, x=None, y=None):
        self._require(x, y)
        return (dy * np.where(x > 0, 1.0, self.alpha * np.exp(np.minimum(x, 0)))).astype(dy.dtype, copy=False)

    def get_config(self):
        return {"alpha": self.alpha}


class SELU(ActivationFunction):
    """scale * elu(x, alpha) with the self-normalising constants."""
    name = "selu"
    needs = "x"
    alpha = 1.6732632423543772848170429916717
    scale = 1.0507009873554804934193349852946

    def forward(self, x):
        neg = (self.scale * self.alpha) * np.expm1(np.minimum(x, 0))
        return np.where(x > 0, self.scale * x, neg).astype(x.dtype, copy=False)

    def backward(self, dy, x=None, y=None):
        self._require(x, y)
        g = np.where(x > 0, self.scale, (self.scale * self.alpha) * np.exp(np.minimum(x, 0)))
        return (dy * g).astype(dy.dtype, copy=False)


class GELU(ActivationFunction):
    """x * Phi(x) (exact, Keras 3's and PyTorch's default) or the tanh approximation
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) with `approximate=True`."""
    name = "gelu"
    needs = "x"
    _C = math.sqrt(2.0 / math.pi)

    def __init__(self, approximate=False):
        self.approximate = bool(approximate)

    def forward(self, x):
        if self.approximate:
            t = np.tanh(self._C * (x + 0.044715 * x * x * x))
            return (0.5 * x * (1 + t)).astype(x.dtype, copy=False)
        return (x * _normal_cdf(x)).astype(x.dtype, copy=False)

    def backward(self, dy, x=None, y=None):
        self._require(x, y)
        if self.approximate:
            inner = self._C * (x + 0.044715 * x * x * x)
            t = np.tanh(inner)
            g = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * self._C * (1 + 3 * 0.044715 * x * x)
        else:
            x64 = np.asarray(x, dtype=np.float64)
            g = _normal_cdf(x64) + x64 * np.exp(-0.5 * x64 * x64) / math.sqrt(2 * math.pi)
        return (dy * g).astype(dy.dtype, copy=False)

    def get_config(self):
        return {"approximate": self.approximate}


class Softplus(ActivationFunction):
    """log(1 + exp(x)), as max(x, 0) + log1p(exp(-|x|))."""
    name = "softplus"
    needs = "x"

    def forward(self, x):
        return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))

    def backward(self, dy, x=None, y=None):
        self._require(x, y)
        return dy * _sigmoid(x)


class Softsign(ActivationFunction):
    """x / (1 + |x|)."""
    name = "softsign"
    needs = "x"

    def forward(self, x):
        return x / (1 + np.abs(x))

    def backward(self, dy, x=None, y=None):
        self._require(x, y)
        d = 1 + np.abs(x)
        return dy / (d * d)


class Swish(ActivationFunction):
    """x * sigmoid(x) (also called silu)."""
    name = "swish"
    needs = "x"

    def forward(self, x):
        return x * _sigmoid(x)

    def backward(self, dy, x=None, y=None):
        self._require(x, y)
        s = _sigmoid(x)
        return dy * (s * (1 + x * (1 - s)))


class HardSigmoid(ActivationFunction):
    """relu6(x + 3) / 6 = clip(x / 6 + 1/2, 0, 1) (Keras 3 and PyTorch)."""
    name = "hard_sigmoid"
    needs = "x"

    def forward(self, x):
        return np.clip(x / 6 + 0.5, 0, 1).astype(x.dtype, copy=False)

    def backward(self, dy, x=None, y=None):
        self._require(x, y)
        return np.where((x > -3) & (x < 3), dy / 6, 0).astype(dy.dtype, copy=False)


class HardSwish(ActivationFunction):
    """x * hard_sigmoid(x)."""
    name = "hard_swish"
    needs = "x"

    def forward(self, x):
        return (x * np.clip(x / 6 + 0.5, 0, 1)).astype(x.dtype, copy=False)

    def backward(self, dy, x=None, y=None):
        self._require(x, y)
        g = np.where(x <= -3, 0.0, np.where(x >= 3, 1.0, x / 3 + 0.5))
        return (dy * g).astype(dy.dtype, copy=False)


class Exponential(ActivationFunction):
    name = "exponential"
    needs = "y"

    def forward(self, x):
        return np.exp(x)

    def backward(self, dy, x=None, y=None):
        self._require(x, y)
        return dy * y


class _CustomActivation(ActivationFunction):
    """A user callable. Its backward is `fn.backward(dy, x=x, y=y)` when the callable
    has one; otherwise the activation works for inference only."""
    needs = "xy"

    def __init__(self, fn):
        self.fn = fn
        self.name = getattr(fn, "__name__", type(fn).__name__)

    def forward(self, x):
        return np.asarray(self.fn(x))

    def backward(self, dy, x=None, y=None):
        bw = getattr(self.fn, "backward", None)
        if bw is None:
            raise NotImplementedError(
                f"activation {self.name!r}: a custom callable needs a `backward(dy, x=..., y=...)` "
                f"attribute to be trained; subclass fastrnn.activations.ActivationFunction")
        return bw(dy, x=x, y=y)

    def __eq__(self, other):
        return isinstance(other, _CustomActivation) and other.fn is self.fn

    def __hash__(self):
        return hash(self.fn)


linear = Linear()
relu = ReLU()
leaky_relu = LeakyReLU()
sigmoid = Sigmoid()
tanh = Tanh()
softmax = Softmax()
log_softmax = LogSoftmax()
elu = ELU()
selu = SELU()
gelu = GELU()
softplus = Softplus()
softsign = Softsign()
swish = Swish()
silu = swish
hard_sigmoid = HardSigmoid()
hard_swish = HardSwish()
hard_silu = hard_swish
exponential = Exponential()

_CLASSES = {c.name: c for c in (Linear, ReLU, LeakyReLU, Sigmoid, Tanh, Softmax, LogSoftmax, ELU,
                                SELU, GELU, Softplus, Softsign, Swish, HardSigmoid, HardSwish,
                                Exponential)}
_ALIASES = {"silu": "swish", "hard_silu": "hard_swish", "identity": "linear", "relu6": None}
_DEFAULTS = {f.name: f for f in (linear, relu, leaky_relu, sigmoid, tanh, softmax, log_softmax, elu,
                                 selu, gelu, softplus, softsign, swish, hard_sigmoid, hard_swish,
                                 exponential)}


def names():
    """The names `get` accepts."""
    return sorted(set(_DEFAULTS) | {k for k, v in _ALIASES.items() if v})


def get(identifier):
    """An `ActivationFunction` from a name, None (linear), a config dict, an
    ActivationFunction, or a callable (inference only unless it has `backward`)."""
    if identifier is None:
        return linear
    if isinstance(identifier, ActivationFunction):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key == "relu6":
            return ReLU(max_value=6.0)
        key = _ALIASES.get(key, key)
        if key not in _DEFAULTS:
            raise ValueError(f"activation: unknown name {identifier!r}; expected one of {names()}")
        return _DEFAULTS[key]
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if callable(identifier):
        return _CustomActivation(identifier)
    raise TypeError(f"activation: expected a name, a callable or None, got {type(identifier).__name__}")


def serialize(activation):
    """The name of a default-configured activation, or {"class_name", "config"}."""
    act = get(activation)
    if isinstance(act, _CustomActivation):
        return act.name
    if act == _DEFAULTS.get(act.name):
        return act.name
    return {"class_name": act.name, "config": act.get_config()}


def deserialize(config):
    if isinstance(config, str):
        return get(config)
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"activation: expected a name or a dict with 'class_name', got {config!r}")
    name = config["class_name"]
    cls = _CLASSES.get(_ALIASES.get(name, name))
    if cls is None:
        raise ValueError(f"activation: unknown class_name {name!r}; expected one of {sorted(_CLASSES)}")
    return cls(**config.get("config", {}))
