"""Core layers: Dense, Embedding, Dropout, Activation, Flatten, Masking, TimeDistributed.

Each follows the protocol of `base.Layer`: `forward(inputs, training, mask)`
returns `(outputs, ctx)`, `backward(ctx, d_outputs)` returns the input
gradient and adds the weight gradients into `self.grads`. A `d_outputs` of
None means "no gradient reaches this output": backward returns None and adds
nothing. Weights have Keras's names, order and shapes.
"""
import math
import numbers

import numpy as np

from .._linalg import matmul
from .. import activations, initializers, regularizers
from .base import Layer, deserialize, register, serialize

__all__ = ["Dense", "Embedding", "Dropout", "Activation", "Flatten", "Masking", "TimeDistributed"]


# ---------------------------------------------------------------------------
# helpers shared by the layers (and by merge.py)

def positive_int(value, arg, who):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{who}: {arg} expected a positive int, got {value!r}")
    return int(value)


def check_seed(value, who):
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0):
        raise ValueError(f"{who}: seed expected a non-negative int or None, got {value!r}")
    return None if value is None else int(value)


def as_generator(rng, who):
    """A numpy Generator from one, or from an int seed."""
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        rng = np.random.default_rng(int(rng))
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{who}: rng expected a numpy.random.Generator or an int seed, "
                        f"got {type(rng).__name__}")
    return rng


def as_float_input(layer, x, arg="inputs"):
    """`x` as an array of the layer's dtype (copied only when the dtype differs)."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise TypeError(f"{layer.name}: {arg} expected a real-valued array, got dtype {x.dtype}")
    return x if x.dtype == layer.dtype else x.astype(layer.dtype)


def check_min_rank(layer, x, rank, arg="inputs", what=""):
    if x.ndim < rank:
        raise ValueError(f"{layer.name}: {arg} expected at least {rank} dimensions{what}, "
                         f"got shape {x.shape}")


def check_built_dims(layer, x, built_shape, arg="inputs", exact_rank=True):
    """Non-batch dims of `x` against the shape the layer was built with (None = any)."""
    if built_shape is None:
        return
    built = tuple(built_shape)
    if exact_rank and x.ndim != len(built):
        raise ValueError(f"{layer.name}: {arg} expected {len(built)} dimensions (shape {built}), "
                         f"got shape {x.shape}")
    for i, (want, got) in enumerate(zip(built[1:], x.shape[1:]), start=1):
        if want is not None and want != got:
            raise ValueError(f"{layer.name}: {arg} expected dimension {i} of size {want} "
                             f"(built for shape {built}), got shape {x.shape}")


def check_mask(layer, mask, lead_shape, arg="mask"):
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        if mask.dtype.kind not in "iub":
            raise TypeError(f"{layer.name}: {arg} expected a bool array, got dtype {mask.dtype}")
        mask = mask.astype(bool)
    if mask.shape != tuple(lead_shape):
        raise ValueError(f"{layer.name}: {arg} expected shape {tuple(lead_shape)}, got {mask.shape}")
    return mask


def serialize_initializer(value):
    if value is None or isinstance(value, str):
        return value
    return initializers.serialize(initializers.get(value))


def serialize_regularizer(value):
    if value is None or isinstance(value, str):
        return value
    return regularizers.serialize(regularizers.get(value))


def complete_initializer(value, fan_in):
    """Initializer object for `value`; a bare "torch_uniform" gets its fan_in."""
    init = initializers.get(value)
    if isinstance(init, initializers.TorchUniform):
        init = init.with_fan_in(fan_in)
    return init


# ---------------------------------------------------------------------------

@register
class Dense(Layer):
    """`activation(inputs @ kernel + bias)` over the last axis of any-rank input.

    kernel `(in, units)`, bias `(units,)` (Keras's layout: PyTorch's Linear
    weight is `kernel.T`). A `(B, T, F)` input gives `(B, T, units)`; masks pass through.
    "torch_uniform" as an initializer gives PyTorch Linear's U(-1/sqrt(in), 1/sqrt(in)).
    """

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = positive_int(units, "units", self.name)
        self.activation = activations.get(activation)
        if not isinstance(use_bias, (bool, np.bool_)):
            raise TypeError(f"{self.name}: use_bias expected a bool, got {use_bias!r}")
        self.use_bias = bool(use_bias)
        initializers.get(kernel_initializer)     # fail early on a bad name
        initializers.get(bias_initializer)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self._kernel_regularizer_arg = kernel_regularizer
        self._bias_regularizer_arg = bias_regularizer
        self.supports_masking = True

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 2:
            raise ValueError(f"{self.name}: input_shape expected at least 2 dimensions "
                             f"(batch, ..., features), got {input_shape}")
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError(f"{self.name}: the last dimension of input_shape must be known, got {input_shape}")
        self.add_weight("kernel", (in_dim, self.units), complete_initializer(self.kernel_initializer, in_dim),
                        self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), complete_initializer(self.bias_initializer, in_dim),
                            self.bias_regularizer)
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.units,)

    def forward(self, inputs, training=False, mask=None):
        x = as_float_input(self, inputs)
        check_min_rank(self, x, 2, what=" (batch, ..., features)")
        kernel = self.params["kernel"]
        in_dim = kernel.shape[0]
        if x.shape[-1] != in_dim:
            raise ValueError(f"{self.name}: inputs expected last dimension {in_dim}, got shape {x.shape}")
        lead = x.shape[:-1]
        x2 = x.reshape(-1, in_dim)
        z = matmul(x2, kernel)
        if self.use_bias:
            z += self.params["bias"]
        y = self.activation.forward(z)
        needs = self.activation.needs
        ctx = (x2, z if "x" in needs else None, y if "y" in needs else None, lead)
        return y.reshape(lead + (self.units,)), ctx

    def backward(self, ctx, d_outputs):
        if d_outputs is None:
            return None
        x2, z, y, lead = ctx
        d = np.asarray(d_outputs, dtype=self.dtype).reshape(-1, self.units)
        dz = self.activation.backward(d, x=z, y=y)
        if self.trainable:
            matmul(x2.T, dz, out=self.grads["kernel"], accumulate=True)
            if self.use_bias:
                self.grads["bias"] += dz.sum(axis=0)
        dx = matmul(dz, self.params["kernel"].T)
        return dx.reshape(lead + (x2.shape[1],))

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": serialize_initializer(self.kernel_initializer),
                "bias_initializer": serialize_initializer(self.bias_initializer),
                "kernel_regularizer": serialize_regularizer(self._kernel_regularizer_arg),
                "bias_regularizer": serialize_regularizer(self._bias_regularizer_arg)}


@register
class Embedding(Layer):
    """Integer ids `(...)` -> vectors `(..., output_dim)`: rows of `embeddings (input_dim, output_dim)`.

    With `mask_zero=True` id 0 is padding: `compute_mask` gives `ids != 0`
    (so `input_dim` must count the padding id). Backward returns None for the
    ids and adds each row's gradient into the rows it was read from.
    Ids must be integers (floats holding whole numbers are accepted, as Keras casts).
    """

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", mask_zero=False,
                 embeddings_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.input_dim = positive_int(input_dim, "input_dim", self.name)
        self.output_dim = positive_int(output_dim, "output_dim", self.name)
        initializers.get(embeddings_initializer)
        self.embeddings_initializer = embeddings_initializer
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self._embeddings_regularizer_arg = embeddings_regularizer
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero

    def build(self, input_shape=None):
        self.add_weight("embeddings", (self.input_dim, self.output_dim),
                        complete_initializer(self.embeddings_initializer, self.output_dim),
                        self.embeddings_regularizer)
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def _ids(self, inputs):
        ids = np.asarray(inputs)
        kind = ids.dtype.kind
        if kind == "f":
            if ids.size and not (np.all(np.isfinite(ids)) and np.all(ids == np.round(ids))):
                raise TypeError(f"{self.name}: inputs expected integer ids, got dtype {ids.dtype} "
                                f"with non-integral values")
        elif kind not in "iu":
            raise TypeError(f"{self.name}: inputs expected integer ids, got dtype {ids.dtype}")
        if ids.ndim < 1:
            raise ValueError(f"{self.name}: inputs expected at least 1 dimension (batch, ...), got a scalar")
        if ids.size:
            lo, hi = ids.min(), ids.max()
            if lo < 0 or hi >= self.input_dim:
                bad = lo if lo < 0 else hi
                bad = int(bad) if kind != "f" else float(bad)
                raise ValueError(f"{self.name}: inputs expected ids in [0, {self.input_dim - 1}] "
                                 f"(input_dim={self.input_dim}), got {bad}")
        return ids.astype(np.intp, copy=False)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return np.asarray(inputs) != 0

    def forward(self, inputs, training=False, mask=None):
        ids = self._ids(inputs)
        out = np.take(self.params["embeddings"], ids, axis=0)
        return out, ids

    def backward(self, ctx, d_outputs):
        if d_outputs is None or not self.trainable:
            return None
        ids = ctx.reshape(-1)
        d = np.asarray(d_outputs, dtype=self.dtype).reshape(-1, self.output_dim)
        g = self.grads["embeddings"]
        if ids.size <= 64:
            np.add.at(g, ids, d)
        else:
            # sort the ids, sum each run of equal ids, add once per distinct id
            order = np.argsort(ids, kind="stable")
            sorted_ids = ids[order]
            starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
            g[sorted_ids[starts]] += np.add.reduceat(d[order], starts, axis=0)
        return None

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
                "embeddings_initializer": serialize_initializer(self.embeddings_initializer),
                "embeddings_regularizer": serialize_regularizer(self._embeddings_regularizer_arg),
                "mask_zero": self.mask_zero}


@register
class Dropout(Layer):
    """Inverted dropout when training: zero a `rate` fraction, scale the rest by 1/(1 - rate).

    `noise_shape` (one entry per input dimension, None = the input's size)
    shares a mask along the dimensions given as 1, e.g. `(None, 1, F)` for the
    same features dropped at every step. The mask comes from the layer's own
    `numpy.random.Generator`, seeded from `seed`; `set_rng` replaces it (a
    model does so to make training reproducible). Identity at inference.
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate <= 1 \
                or math.isnan(rate):
            raise ValueError(f"{self.name}: rate expected a number in [0, 1], got {rate!r}")
        self.rate = float(rate)
        if noise_shape is not None:
            try:
                noise_shape = tuple(None if d is None else int(d) for d in noise_shape)
            except (TypeError, ValueError):
                raise ValueError(f"{self.name}: noise_shape expected a tuple of ints or None, "
                                 f"got {noise_shape!r}") from None
            if any(d is not None and d <= 0 for d in noise_shape):
                raise ValueError(f"{self.name}: noise_shape expected positive sizes, got {noise_shape}")
        self.noise_shape = noise_shape
        self.seed = check_seed(seed, self.name)
        self.rng = np.random.default_rng(self.seed)
        self.supports_masking = True

    def set_rng(self, rng):
        """Draw the masks from `rng` (a numpy Generator, or an int seed) from now on."""
        self.rng = as_generator(rng, self.name)

    def _noise_shape(self, x):
        if self.noise_shape is None:
            return x.shape
        if len(self.noise_shape) != x.ndim:
            raise ValueError(f"{self.name}: noise_shape {self.noise_shape} expected one entry per "
                             f"dimension of inputs, got inputs of shape {x.shape}")
        shape = tuple(x.shape[i] if d is None else d for i, d in enumerate(self.noise_shape))
        for i, d in enumerate(shape):
            if d != 1 and d != x.shape[i]:
                raise ValueError(f"{self.name}: noise_shape {self.noise_shape} does not broadcast "
                                 f"to inputs of shape {x.shape} (dimension {i})")
        return shape

    def forward(self, inputs, training=False, mask=None):
        x = as_float_input(self, inputs)
        if not training or self.rate == 0:
            return x, None
        shape = self._noise_shape(x)
        if self.rate >= 1:
            scale = np.zeros(shape, dtype=self.dtype)
        else:
            keep = self.rng.random(shape, dtype=self.dtype) >= self.dtype.type(self.rate)
            scale = keep.astype(self.dtype)
            scale *= self.dtype.type(1.0 / (1.0 - self.rate))
        return x * scale, scale

    def backward(self, ctx, d_outputs):
        if d_outputs is None:
            return None
        d = np.asarray(d_outputs, dtype=self.dtype)
        return d if ctx is None else d * ctx

    def get_config(self):
        return {**super().get_config(), "rate": self.rate,
                "noise_shape": None if self.noise_shape is None else list(self.noise_shape),
                "seed": self.seed}


@register
class Activation(Layer):
    """Applies an activation function (a name from `fastrnn.activations` or an
    ActivationFunction) elementwise; masks pass through."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)
        self.supports_masking = True

    def forward(self, inputs, training=False, mask=None):
        x = as_float_input(self, inputs)
        y = self.activation.forward(x)
        needs = self.activation.needs
        return y, (x if "x" in needs else None, y if "y" in needs else None)

    def backward(self, ctx, d_outputs):
        if d_outputs is None:
            return None
        x, y = ctx
        return self.activation.backward(np.asarray(d_outputs, dtype=self.dtype), x=x, y=y)

    def get_config(self):
        return {**super().get_config(), "activation": activations.serialize(self.activation)}


@register
class Flatten(Layer):
    """`(B, d1, d2, ...)` -> `(B, d1 * d2 * ...)`; `(B,)` -> `(B, 1)`. Drops masks (as Keras)."""

    def build(self, input_shape):
        self.built = True

    def compute_output_shape(self, input_shape):
        rest = tuple(input_shape)[1:]
        n = None if any(d is None for d in rest) else math.prod(rest)
        return (input_shape[0], n)

    def compute_mask(self, inputs, mask=None):
        return None

    def forward(self, inputs, training=False, mask=None):
        x = as_float_input(self, inputs)
        check_min_rank(self, x, 1, what=" (batch, ...)")
        check_built_dims(self, x, self.input_shape)
        return x.reshape(x.shape[0], math.prod(x.shape[1:])), x.shape

    def backward(self, ctx, d_outputs):
        if d_outputs is None:
            return None
        return np.asarray(d_outputs, dtype=self.dtype).reshape(ctx)


@register
class Masking(Layer):
    """Masks the steps whose features all equal `mask_value`.

    mask = any(inputs != mask_value, axis=-1); outputs are the inputs with the
    masked steps set to 0 (as Keras).
    """

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(mask_value, bool) or not isinstance(mask_value, numbers.Real):
            raise ValueError(f"{self.name}: mask_value expected a number, got {mask_value!r}")
        self.mask_value = float(mask_value)
        self.supports_masking = True

    def _keep(self, x):
        return np.any(x != x.dtype.type(self.mask_value), axis=-1)

    def compute_mask(self, inputs, mask=None):
        return self._keep(as_float_input(self, inputs))

    def forward(self, inputs, training=False, mask=None):
        x = as_float_input(self, inputs)
        check_min_rank(self, x, 2, what=" (batch, ..., features)")
        check_built_dims(self, x, self.input_shape)
        keep = self._keep(x)[..., None]
        return np.where(keep, x, x.dtype.type(0)), keep

    def backward(self, ctx, d_outputs):
        if d_outputs is None:
            return None
        d = np.asarray(d_outputs, dtype=self.dtype)
        return np.where(ctx, d, d.dtype.type(0))

    def get_config(self):
        return {**super().get_config(), "mask_value": self.mask_value}


@register
class TimeDistributed(Layer):
    """Applies `layer` to every time step: `(B, T, ...)` is folded to `(B*T, ...)`,
    run through `layer`, and unfolded to `(B, T, ...)`.

    The weights are the inner layer's (the same arrays: `params`, `grads` and
    the regularizers are shared), so `get_weights()` matches Keras's
    TimeDistributed. The mask `(B, T)` is folded to `(B*T,)` for the inner
    layer and passed on unchanged.
    """

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise TypeError(f"TimeDistributed: layer expected a fastrnn Layer instance, "
                            f"got {type(layer).__name__}")
        self.layer = layer
        kwargs.setdefault("trainable", layer.trainable)
        kwargs.setdefault("dtype", layer.dtype.name)
        super().__init__(**kwargs)
        # one set of weights: the inner layer's dicts (filled in place when it builds)
        self.params = layer.params
        self.grads = layer.grads
        self._trainable_names = layer._trainable_names
        self._regularizers = layer._regularizers
        self.supports_masking = True

    @property
    def trainable(self):
        return self.layer.trainable

    @trainable.setter
    def trainable(self, value):
        self.layer.trainable = bool(value)

    def weights_changed(self):
        self.layer.weights_changed()

    def _inner_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 3:
            raise ValueError(f"{self.name}: input_shape expected at least 3 dimensions (batch, time, ...), "
                             f"got {input_shape}")
        return (None,) + input_shape[2:]

    def build(self, input_shape):
        self.layer.maybe_build(self._inner_shape(input_shape))
        self.built = True

    def compute_output_shape(self, input_shape):
        inner = self.layer.compute_output_shape(self._inner_shape(input_shape))
        return (input_shape[0], input_shape[1]) + tuple(inner)[1:]

    def forward(self, inputs, training=False, mask=None):
        x = np.asarray(inputs)
        if x.ndim < 3:
            raise ValueError(f"{self.name}: inputs expected at least 3 dimensions (batch, time, ...), "
                             f"got shape {x.shape}")
        B, T = x.shape[:2]
        mask = check_mask(self, mask, (B, T))
        folded = x.reshape((B * T,) + x.shape[2:])
        inner_mask = None if mask is None else mask.reshape(B * T)
        y, inner_ctx = self.layer.forward(folded, training=training, mask=inner_mask)
        if isinstance(y, (list, tuple)):
            raise ValueError(f"{self.name}: the inner layer {self.layer.name} returned several outputs; "
                             "TimeDistributed needs a layer with one output")
        return y.reshape((B, T) + y.shape[1:]), (inner_ctx, B, T)

    def backward(self, ctx, d_outputs):
        if d_outputs is None:
            return None
        inner_ctx, B, T = ctx
        d = np.asarray(d_outputs)
        dx = self.layer.backward(inner_ctx, d.reshape((B * T,) + d.shape[2:]))
        return None if dx is None else dx.reshape((B, T) + dx.shape[1:])

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        return {**super().get_config(), "layer": serialize(self.layer)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        layer = deserialize(config.pop("layer"), custom_objects=custom_objects, who=f"{cls.__name__}: layer")
        return cls(layer, **config)
