"""Weight initializers: Keras 3's set, plus PyTorch's default for RNNs.

An initializer is a callable object

    init(shape, dtype="float32", rng=None) -> numpy.ndarray

that returns a fresh array of `shape` and `dtype`. `rng` is a
`numpy.random.Generator` (an int is taken as a seed; None draws from a fresh
`default_rng()`): a model passes one seeded generator to all its layers, so
`seed=` makes the initial weights, and so training, reproducible bit for bit.
An initializer built with its own `seed=` ignores `rng` and gives the same
values on every call, as a seeded Keras initializer does.

Random values are drawn in float64 and then cast, so a float32 and a float64
model built from the same generator start from the same weights (rounded).

Fans follow Keras (`compute_fans`): a 2-d shape `(fan_in, fan_out)` is a
Dense kernel in Keras's `(inputs, units)` layout; a longer shape is a
convolution kernel `(*receptive_field, in, out)`; a 1-d shape has
fan_in = fan_out = its size.

Names for `get`: "zeros", "ones", "constant", "identity", "random_uniform",
"random_normal", "truncated_normal", "variance_scaling", "glorot_uniform",
"glorot_normal", "he_normal", "he_uniform", "lecun_normal", "lecun_uniform",
"orthogonal", "torch_uniform" (and the class names, as in Keras).

PyTorch's default for its RNN and Linear layers is `uniform(-1/sqrt(n),
1/sqrt(n))` where n is the hidden size (RNNs) or the input size (Linear); the
shape alone does not say which, so `TorchUniform` takes it explicitly:
`TorchUniform(fan_in=H)`, or `TorchUniform(bound=b)`. A layer that receives the
bare name "torch_uniform" completes it with `init.with_fan_in(H)`.
"""
import functools
import inspect
import math
import numbers

import numpy as np

from . import _registry

__all__ = [
    "Initializer", "Zeros", "Ones", "Constant", "Identity", "RandomUniform", "RandomNormal",
    "TruncatedNormal", "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeNormal",
    "HeUniform", "LecunNormal", "LecunUniform", "Orthogonal", "TorchUniform",
    "compute_fans", "get", "serialize", "deserialize",
]

# Standard deviation of a standard normal truncated to [-2, 2]:
# sqrt(1 - 2 a phi(a) / (2 Phi(a) - 1)) with a = 2. VarianceScaling divides by it
# so that the values *after* truncation have the requested standard deviation.
_TRUNCATION = 2.0
_TRUNCATED_STD = math.sqrt(
    1.0 - 2.0 * _TRUNCATION * math.exp(-_TRUNCATION ** 2 / 2) / math.sqrt(2 * math.pi)
    / math.erf(_TRUNCATION / math.sqrt(2)))


# ---------------------------------------------------------------------------
# argument checks

def _shape(shape):
    """A tuple of non-negative ints from an int or a sequence of ints."""
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"shape: expected a tuple of ints, got {type(shape).__name__}") from None
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 0:
            raise ValueError(f"shape: expected non-negative ints, got {shape!r}")
    return tuple(int(d) for d in dims)


def _float_dtype(dtype, who):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{who}: dtype: expected a floating dtype, got {dtype!r}") from None
    if dt.kind != "f":
        raise TypeError(f"{who}: dtype: expected a floating dtype (float32, float64), got {dt}")
    return dt


def _real(value, name, *, positive=False, non_negative=False):
    """A finite float from a real number, checked for sign."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name}: expected a positive number, got {value}")
    if non_negative and value < 0:
        raise ValueError(f"{name}: expected a non-negative number, got {value}")
    return value


def _seed(seed):
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise TypeError(f"seed: expected None or a non-negative int, got {seed!r}")
    return int(seed)


def _generator(rng, seed):
    """The generator to draw from: the initializer's own seed first, then `rng`."""
    if seed is not None:
        return np.random.default_rng(seed)
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng: expected a numpy.random.Generator, an int seed or None, "
                    f"got {type(rng).__name__}")


def compute_fans(shape, input_axes=None, output_axes=None):
    """(fan_in, fan_out) of a weight shape, as Keras computes them.

    With `input_axes` and `output_axes` the fans are the products of those
    axes. Otherwise: () -> (1, 1); (n,) -> (n, n); (a, b) -> (a, b); a longer
    shape is a convolution kernel (*receptive_field, in, out), whose fans are
    in and out times the receptive field size.
    """
    shape = _shape(shape)
    if input_axes is not None and output_axes is not None:
        return (int(np.prod([shape[a] for a in input_axes], dtype=np.int64)),
                int(np.prod([shape[a] for a in output_axes], dtype=np.int64)))
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[:-2], dtype=np.int64))
    return shape[-2] * receptive, shape[-1] * receptive


# ---------------------------------------------------------------------------
# base classes

class Initializer(_registry.Configurable):
    """Base class. Subclasses implement `__call__(shape, dtype="float32", rng=None)`
    and `get_config()`; `from_config` rebuilds an instance from its config."""

    def __call__(self, shape, dtype="float32", rng=None):
        raise NotImplementedError(f"{type(self).__name__}.__call__")


class _RandomInitializer(Initializer):
    """Shared plumbing of the random initializers: shape, dtype, generator, cast."""

    def __init__(self, seed=None):
        self.seed = _seed(seed)

    def __call__(self, shape, dtype="float32", rng=None):
        shape = _shape(shape)
        dtype = _float_dtype(dtype, type(self).__name__)
        values = self._sample(shape, _generator(rng, self.seed))
        values = np.asarray(values, dtype=np.float64).reshape(shape)
        return np.ascontiguousarray(values, dtype=dtype)

    def _sample(self, shape, rng):
        """float64 values of `shape` drawn from `rng`."""
        raise NotImplementedError

    def get_config(self):
        return {"seed": self.seed}


def _truncated_normal(shape, mean, stddev, rng):
    """Normal(mean, stddev) redrawn until every value is within 2 stddev of the mean."""
    values = rng.standard_normal(shape)
    outside = np.abs(values) > _TRUNCATION
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > _TRUNCATION
    return mean + stddev * values


# ---------------------------------------------------------------------------
# constants

class Zeros(Initializer):
    """All zeros (any numeric dtype)."""

    def __call__(self, shape, dtype="float32", rng=None):
        return np.zeros(_shape(shape), dtype=np.dtype(dtype))


class Ones(Initializer):
    """All ones (any numeric dtype)."""

    def __call__(self, shape, dtype="float32", rng=None):
        return np.ones(_shape(shape), dtype=np.dtype(dtype))


class Constant(Initializer):
    """Every element `value` (a scalar, or an array that broadcasts to the shape)."""

    def __init__(self, value=0.0):
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"value: expected a number or an array of numbers, got {value!r}")
        self.value = arr.item() if arr.ndim == 0 else arr.copy()

    def __call__(self, shape, dtype="float32", rng=None):
        shape = _shape(shape)
        try:
            out = np.broadcast_to(np.asarray(self.value), shape)
        except ValueError:
            raise ValueError(f"Constant: value of shape {np.shape(self.value)} does not "
                             f"broadcast to shape {shape}") from None
        return out.astype(np.dtype(dtype))

    def get_config(self):
        return {"value": self.value.tolist() if isinstance(self.value, np.ndarray) else self.value}


class Identity(Initializer):
    """`gain` times the identity matrix (2-d shapes only; non-square gives eye(rows, cols))."""

    def __init__(self, gain=1.0):
        self.gain = _real(gain, "gain")

    def __call__(self, shape, dtype="float32", rng=None):
        shape = _shape(shape)
        if len(shape) != 2:
            raise ValueError(f"Identity: shape: expected a 2-d shape, got {shape}")
        return (self.gain * np.eye(*shape)).astype(_float_dtype(dtype, "Identity"))

    def get_config(self):
        return {"gain": self.gain}


# ---------------------------------------------------------------------------
# plain distributions

class RandomUniform(_RandomInitializer):
    """Uniform in [minval, maxval)."""

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval = _real(minval, "minval")
        self.maxval = _real(maxval, "maxval")
        if self.minval > self.maxval:
            raise ValueError(f"RandomUniform: minval ({self.minval}) must not exceed maxval ({self.maxval})")

    def _sample(self, shape, rng):
        return rng.uniform(self.minval, self.maxval, shape)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, **super().get_config()}


class RandomNormal(_RandomInitializer):
    """Normal(mean, stddev)."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean = _real(mean, "mean")
        self.stddev = _real(stddev, "stddev", non_negative=True)

    def _sample(self, shape, rng):
        return self.mean + self.stddev * rng.standard_normal(shape)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, **super().get_config()}


class TruncatedNormal(_RandomInitializer):
    """Normal(mean, stddev), values further than 2 stddev from the mean redrawn (as Keras).

    `stddev` is the parameter of the normal before truncation; the values
    that come out have a standard deviation of about 0.88 * stddev.
    """

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean = _real(mean, "mean")
        self.stddev = _real(stddev, "stddev", non_negative=True)

    def _sample(self, shape, rng):
        return _truncated_normal(shape, self.mean, self.stddev, rng)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, **super().get_config()}


class TorchUniform(_RandomInitializer):
    """PyTorch's RNN/Linear default: uniform in [-bound, bound], bound = 1/sqrt(fan_in).

    Give exactly one of `bound` and `fan_in` (H for an RNN layer's weights and
    biases; in_features for a Linear layer). Built without either (the name
    "torch_uniform"), it must be completed with `with_fan_in(n)` before use.
    """

    def __init__(self, bound=None, fan_in=None, seed=None):
        super().__init__(seed)
        if bound is not None and fan_in is not None:
            raise ValueError(f"TorchUniform: give bound or fan_in, not both (got bound={bound}, fan_in={fan_in})")
        self.bound = None if bound is None else _real(bound, "bound", positive=True)
        if fan_in is not None and (isinstance(fan_in, bool) or not isinstance(fan_in, numbers.Integral)
                                   or fan_in <= 0):
            raise ValueError(f"fan_in: expected a positive int, got {fan_in!r}")
        self.fan_in = None if fan_in is None else int(fan_in)

    @property
    def limit(self):
        """The bound in use, or None while neither bound nor fan_in is known."""
        if self.bound is not None:
            return self.bound
        if self.fan_in is not None:
            return 1.0 / math.sqrt(self.fan_in)
        return None

    def with_fan_in(self, fan_in):
        """This initializer when its bound is already known, else a copy with `fan_in`."""
        if self.limit is not None:
            return self
        return TorchUniform(fan_in=fan_in, seed=self.seed)

    def _sample(self, shape, rng):
        limit = self.limit
        if limit is None:
            raise ValueError(
                "TorchUniform: the bound 1/sqrt(fan_in) needs the fan, which the shape does not "
                "give; use TorchUniform(fan_in=H) (or bound=...), or a layer that knows its "
                "hidden size completes the name 'torch_uniform' with .with_fan_in(H)")
        return rng.uniform(-limit, limit, shape)

    def get_config(self):
        return {"bound": self.bound, "fan_in": self.fan_in, **super().get_config()}


# ---------------------------------------------------------------------------
# variance scaling (Glorot, He, LeCun)

class VarianceScaling(_RandomInitializer):
    """Values with variance `scale / n`, n the fan_in, fan_out or their mean (`mode`).

    distribution "truncated_normal" (alias "normal"): a normal truncated at 2
    stddev whose stddev before truncation is sqrt(scale / n) / 0.8796..., so
    that the values have the variance scale / n; "untruncated_normal": a plain
    normal with stddev sqrt(scale / n); "uniform": uniform in [-limit, limit]
    with limit = sqrt(3 * scale / n). n is at least 1.
    """

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None,
                 input_axes=None, output_axes=None):
        super().__init__(seed)
        self.scale = _real(scale, "scale", positive=True)
        if mode not in self._MODES:
            raise ValueError(f"mode: expected one of {self._MODES}, got {mode!r}")
        if not isinstance(distribution, str):
            raise TypeError(f"distribution: expected a str, got {type(distribution).__name__}")
        distribution = distribution.lower()
        if distribution == "normal":
            distribution = "truncated_normal"
        if distribution not in self._DISTRIBUTIONS:
            raise ValueError(f"distribution: expected one of {self._DISTRIBUTIONS}, got {distribution!r}")
        if (input_axes is None) != (output_axes is None):
            raise ValueError("input_axes and output_axes: give both or neither")
        self.mode = mode
        self.distribution = distribution
        self.input_axes = None if input_axes is None else [int(a) for a in input_axes]
        self.output_axes = None if output_axes is None else [int(a) for a in output_axes]

    def parameters(self, shape):
        """The distribution's parameter for `shape`: {"limit": l} for "uniform",
        else {"stddev": s} (before truncation for "truncated_normal")."""
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, n)
        if self.distribution == "uniform":
            return {"limit": math.sqrt(3.0 * variance)}
        if self.distribution == "truncated_normal":
            return {"stddev": math.sqrt(variance) / _TRUNCATED_STD}
        return {"stddev": math.sqrt(variance)}

    def _sample(self, shape, rng):
        p = self.parameters(shape)
        if self.distribution == "uniform":
            return rng.uniform(-p["limit"], p["limit"], shape)
        if self.distribution == "truncated_normal":
            return _truncated_normal(shape, 0.0, p["stddev"], rng)
        return p["stddev"] * rng.standard_normal(shape)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": self.seed, "input_axes": self.input_axes, "output_axes": self.output_axes}


class _FixedVarianceScaling(VarianceScaling):
    """A VarianceScaling whose scale, mode and distribution are fixed by the class."""

    _SCALE = _MODE = _DISTRIBUTION = None

    def __init__(self, seed=None, input_axes=None, output_axes=None):
        super().__init__(self._SCALE, self._MODE, self._DISTRIBUTION, seed=seed,
                         input_axes=input_axes, output_axes=output_axes)

    def get_config(self):
        return {"seed": self.seed, "input_axes": self.input_axes, "output_axes": self.output_axes}


class GlorotUniform(_FixedVarianceScaling):
    """Uniform in [-l, l], l = sqrt(6 / (fan_in + fan_out)) (Xavier uniform)."""
    _SCALE, _MODE, _DISTRIBUTION = 1.0, "fan_avg", "uniform"


class GlorotNormal(_FixedVarianceScaling):
    """Truncated normal with standard deviation sqrt(2 / (fan_in + fan_out)) (Xavier normal)."""
    _SCALE, _MODE, _DISTRIBUTION = 1.0, "fan_avg", "truncated_normal"


class HeNormal(_FixedVarianceScaling):
    """Truncated normal with standard deviation sqrt(2 / fan_in) (Kaiming normal)."""
    _SCALE, _MODE, _DISTRIBUTION = 2.0, "fan_in", "truncated_normal"


class HeUniform(_FixedVarianceScaling):
    """Uniform in [-l, l], l = sqrt(6 / fan_in) (Kaiming uniform)."""
    _SCALE, _MODE, _DISTRIBUTION = 2.0, "fan_in", "uniform"


class LecunNormal(_FixedVarianceScaling):
    """Truncated normal with standard deviation sqrt(1 / fan_in)."""
    _SCALE, _MODE, _DISTRIBUTION = 1.0, "fan_in", "truncated_normal"


class LecunUniform(_FixedVarianceScaling):
    """Uniform in [-l, l], l = sqrt(3 / fan_in)."""
    _SCALE, _MODE, _DISTRIBUTION = 1.0, "fan_in", "uniform"


# ---------------------------------------------------------------------------
# orthogonal

class Orthogonal(_RandomInitializer):
    """`gain` times a random orthogonal matrix (Saxe et al.).

    The shape is viewed as a matrix (prod(shape[:-1]), shape[-1]). Q comes
    from the QR decomposition of a standard normal (max, min) matrix, with the
    signs of its columns fixed by diag(R) so that Q is uniformly distributed;
    it is transposed when there are fewer rows than columns. So the result W
    has orthonormal columns (WᵀW = gain² I) when rows >= columns, and
    orthonormal rows (WWᵀ = gain² I) otherwise. Needs at least 2 dimensions.
    """

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        self.gain = _real(gain, "gain")

    def _sample(self, shape, rng):
        if len(shape) < 2:
            raise ValueError(f"Orthogonal: shape: expected at least 2 dimensions, got {shape}")
        rows = int(np.prod(shape[:-1], dtype=np.int64))
        cols = shape[-1]
        a = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.where(np.diag(r) < 0, -1.0, 1.0)
        if rows < cols:
            q = q.T
        return self.gain * q

    def get_config(self):
        return {"gain": self.gain, **super().get_config()}


# ---------------------------------------------------------------------------
# plain callables

class _FunctionInitializer(Initializer):
    """Adapts a plain callable `fn(shape, dtype)` (or `fn(shape, dtype, rng=...)`)
    to the initializer protocol."""

    def __init__(self, fn):
        self.fn = fn
        self._takes_rng = _accepts_keyword(fn, "rng")

    def __call__(self, shape, dtype="float32", rng=None):
        if self._takes_rng:
            return self.fn(shape, dtype, rng=rng)
        return self.fn(shape, dtype)

    def get_config(self):
        raise TypeError(f"the initializer {self.fn!r} is a plain callable and has no config; "
                        "subclass fastrnn.initializers.Initializer to make it serializable")

    def __repr__(self):
        return f"<initializer {self.fn!r}>"


def _accepts_keyword(fn, name):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is p.VAR_KEYWORD or (p.name == name and p.kind is not p.POSITIONAL_ONLY)
               for p in params)


# ---------------------------------------------------------------------------
# names, get, serialize

_CLASSES = (Zeros, Ones, Constant, Identity, RandomUniform, RandomNormal, TruncatedNormal,
            VarianceScaling, GlorotUniform, GlorotNormal, HeNormal, HeUniform, LecunNormal,
            LecunUniform, Orthogonal, TorchUniform)

_SNAKE_NAMES = {
    "zeros": Zeros, "ones": Ones, "constant": Constant, "identity": Identity,
    "random_uniform": RandomUniform, "random_normal": RandomNormal,
    "truncated_normal": TruncatedNormal, "variance_scaling": VarianceScaling,
    "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
    "he_normal": HeNormal, "he_uniform": HeUniform,
    "lecun_normal": LecunNormal, "lecun_uniform": LecunUniform,
    "orthogonal": Orthogonal, "torch_uniform": TorchUniform,
}
_ALIASES = {"zero": Zeros, "one": Ones, "uniform": RandomUniform, "normal": RandomNormal,
            "xavier_uniform": GlorotUniform, "xavier_normal": GlorotNormal,
            "kaiming_normal": HeNormal, "kaiming_uniform": HeUniform,
            "OrthogonalInitializer": Orthogonal, "IdentityInitializer": Identity}
_NAMES = {**_SNAKE_NAMES, **_ALIASES, **_registry.by_class_name(_CLASSES)}


def _lookup(name, custom_objects):
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    cls = _NAMES.get(name) or _NAMES.get(name.lower())
    if cls is None:
        raise ValueError(f"unknown initializer {name!r}; known names: {', '.join(sorted(_SNAKE_NAMES))}")
    return cls


def serialize(initializer):
    """`{"class_name": ..., "config": {...}}` of an initializer (Keras's layout)."""
    return _registry.serialize(initializer, Initializer, "serialize: expected an Initializer, got {type}")


def deserialize(config, custom_objects=None):
    """An initializer from a name or a `{"class_name", "config"}` dict.

    `custom_objects` maps extra names to classes. Extra keys of a Keras
    config ("module", "registered_name") are ignored.
    """
    return _registry.deserialize(config, functools.partial(_lookup, custom_objects=custom_objects))


def get(identifier):
    """An initializer from a name, an instance, a class, a `{"class_name", "config"}`
    dict or a plain callable `fn(shape, dtype)`. None gives None."""
    if identifier is None:
        return None
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, (str, dict)):
        return deserialize(identifier)
    if isinstance(identifier, type):
        if issubclass(identifier, Initializer):
            return identifier()
        raise TypeError(f"initializer: the class {identifier.__name__} is not an Initializer")
    if callable(identifier):
        return _FunctionInitializer(identifier)
    raise TypeError(f"initializer: expected a name, an Initializer, a dict or a callable, "
                    f"got {type(identifier).__name__} {identifier!r}")
