"""The layer protocol every fastrnn layer follows.

fastrnn has no general autograd: each layer has a forward and a backward, and
a model chains them. A layer

- builds lazily: `build(input_shape)` runs on the first call and creates the
  weights with `add_weight` (plain NumPy arrays, reachable by name);
- runs forward with `forward(inputs, training=False, mask=None)`, which returns
  `(outputs, ctx)`: `ctx` is whatever backward needs for *this* call, so a
  layer shared by several places in a graph keeps each call's state apart;
- runs backward with `backward(ctx, d_outputs)`, which returns the gradient of
  the inputs and *adds* the weight gradients into `layer.grads` (zeroed by the
  model before each batch with `zero_grads()`);
- passes masks on with `compute_mask(inputs, mask)`: a mask is a bool array
  (batch, time), True where a step is real.

`inputs`/`outputs` are one array, or a list of arrays for layers with several
(`Concatenate`, a recurrent layer with `return_state`); gradients have the same
structure (None for an input that takes no gradient, like integer ids).
Shapes given to `build`/`compute_output_shape` have `None` for the batch size.

Weights are kept in Keras's order and shapes, so `get_weights()` matches a
Keras layer of the same configuration.
"""
import inspect

import numpy as np

from .. import _registry, initializers, regularizers

_NAME_COUNTS = {}
_REGISTRY = {}                    # class_name -> Layer subclass, for serialize/deserialize


def register(cls=None, *, name=None):
    """Class decorator: make a Layer subclass known to `deserialize` by its class
    name (or `name`). Registering another class under a taken name is an error;
    re-registering the same class (a module reload) replaces it."""
    def deco(c):
        if not (isinstance(c, type) and issubclass(c, Layer)):
            raise TypeError(f"register: expected a Layer subclass, got {c!r}")
        key = name or c.__name__
        old = _REGISTRY.get(key)
        if old is not None and (old.__module__, old.__qualname__) != (c.__module__, c.__qualname__):
            raise ValueError(f"register: the name {key!r} is taken by {old.__module__}.{old.__qualname__}")
        _REGISTRY[key] = c
        return c
    return deco if cls is None else deco(cls)


def registered_names():
    return sorted(_REGISTRY)


def get_class(name, custom_objects=None):
    """The Layer subclass registered under `name` (custom_objects first)."""
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"unknown layer class_name {name!r}; registered: {', '.join(registered_names())}")
    return cls


def serialize(layer):
    """`{"class_name": ..., "config": layer.get_config()}` (Keras's layout)."""
    return _registry.serialize(layer, Layer, "serialize: expected a Layer, got {type}")


def deserialize(config, custom_objects=None, who="deserialize"):
    """A new layer from a `{"class_name", "config"}` dict (its weights are not restored).
    `who` names the argument in errors (a wrapper passes e.g. "Bidirectional: layer")."""
    name, cfg = _registry.class_and_config(config, who, ValueError)
    cls = get_class(name, custom_objects)
    extra = {"custom_objects": custom_objects} if _takes_custom_objects(cls) else {}
    return _registry.build(cls, name, dict(cfg), **extra)


def _takes_custom_objects(cls):
    try:
        return "custom_objects" in inspect.signature(cls.from_config).parameters
    except (TypeError, ValueError):
        return False


def _unique_name(base):
    n = _NAME_COUNTS.get(base, 0)
    _NAME_COUNTS[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def _snake(name):
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def check_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype: expected float32 or float64, got {dt}")
    return dt


class Layer:
    """Base class: names, weights, gradients, config, and the eager call."""

    def __init__(self, *, name=None, trainable=True, dtype="float32", input_shape=None,
                 input_dim=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name: expected a str, got {type(name).__name__}")
        self.name = name or _unique_name(_snake(type(self).__name__))
        self.trainable = bool(trainable)
        self.dtype = check_dtype(dtype)
        if input_shape is None and input_dim is not None:
            input_shape = (input_dim,)
        self._input_shape_arg = None if input_shape is None else tuple(input_shape)
        self.built = False
        self.params = {}              # name -> array, in Keras's weight order
        self.grads = {}               # name -> array, same keys (trainable weights only)
        self._trainable_names = []
        self._regularizers = {}       # name -> regularizer
        self.supports_masking = False
        self.input_shape = None
        self.init_rng = None          # numpy Generator for weight initializers (a model sets it)

    # ---- weights -----------------------------------------------------------
    def add_weight(self, name, shape, initializer="zeros", regularizer=None, trainable=True, rng=None):
        """Create a weight of `shape` from an initializer (name, instance or callable)."""
        init = initializers.get(initializer)
        if rng is None:
            rng = self.init_rng
        value = np.asarray(init(tuple(shape), self.dtype, rng=rng), dtype=self.dtype)
        if value.shape != tuple(shape):
            raise ValueError(f"{self.name}.{name}: initializer returned shape {value.shape}, expected {tuple(shape)}")
        self.params[name] = np.ascontiguousarray(value)
        if trainable:
            self._trainable_names.append(name)
            self.grads[name] = np.zeros_like(value)
        reg = regularizers.get(regularizer)
        if reg is not None:
            self._regularizers[name] = reg
        return self.params[name]

    @property
    def trainable_weights(self):
        return [self.params[n] for n in self._trainable_names] if self.trainable else []

    @property
    def non_trainable_weights(self):
        names = [] if self.trainable else self._trainable_names
        return [self.params[n] for n in self.params if n not in self._trainable_names or n in names]

    @property
    def weights(self):
        return self.trainable_weights + self.non_trainable_weights

    def weight_names(self):
        """Weight names in the order of `weights`/`get_weights`."""
        tw = self._trainable_names if self.trainable else []
        return list(tw) + [n for n in self.params if n not in tw]

    def get_weights(self):
        return [self.params[n].copy() for n in self.weight_names()]

    def set_weights(self, weights):
        """Set the weights from a list like `get_weights()`'s (all checked before any changes)."""
        names = self.weight_names()
        if isinstance(weights, (str, bytes, dict, np.ndarray)) or not hasattr(weights, "__iter__"):
            raise TypeError(f"{self.name}.set_weights: expected a list of {len(names)} arrays "
                            f"({', '.join(names)}), got {type(weights).__name__}")
        weights = list(weights)
        if len(weights) != len(names):
            raise ValueError(f"{self.name}.set_weights: expected {len(names)} arrays ({', '.join(names)}), "
                             f"got {len(weights)}")
        arrays = []
        for n, w in zip(names, weights):
            try:
                w = np.asarray(w)
            except (TypeError, ValueError) as e:
                raise ValueError(f"{self.name}.set_weights: weight {n!r} expected an array of shape "
                                 f"{self.params[n].shape}, got {type(w).__name__} ({e})") from None
            if w.shape != self.params[n].shape:
                raise ValueError(f"{self.name}.set_weights: weight {n!r} expected shape "
                                 f"{self.params[n].shape}, got {w.shape}")
            if w.dtype.kind not in "fiu":
                raise TypeError(f"{self.name}.set_weights: weight {n!r} expected a real array, got dtype {w.dtype}")
            arrays.append(w)
        for n, w in zip(names, arrays):
            self.params[n][...] = w
        self.weights_changed()

    def weights_changed(self):
        """Called after the weights were changed in place (optimizer step, set_weights):
        layers that cache derived data (packed weights) drop it here."""

    def zero_grads(self):
        for g in self.grads.values():
            g.fill(0)

    def regularization_loss(self):
        """The sum of the weight regularizers' penalties."""
        return float(sum(reg(self.params[n]) for n, reg in self._regularizers.items()))

    def add_regularization_grads(self):
        """Add the regularizers' gradients into `grads`."""
        for n, reg in self._regularizers.items():
            if n in self.grads:
                self.grads[n] += reg.gradient(self.params[n])

    def count_params(self):
        return int(sum(p.size for p in self.params.values()))

    # ---- building and shapes -------------------------------------------------
    def build(self, input_shape):
        self.built = True

    def maybe_build(self, input_shape):
        if not self.built:
            self.input_shape = input_shape
            self.build(input_shape)
            self.built = True

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_mask(self, inputs, mask=None):
        """The mask of the outputs: by default a masking-aware layer passes it on."""
        return mask if self.supports_masking else None

    # ---- forward / backward ----------------------------------------------------
    def forward(self, inputs, training=False, mask=None):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, ctx, d_outputs):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def __call__(self, inputs, *args, **kwargs):
        """On NumPy arrays: build if needed and run forward (inference, unless
        training=True). On symbolic tensors (`fastrnn.Input`): add this layer to a graph."""
        from ..models import graph
        if graph.is_symbolic(inputs):
            return graph.call_layer(self, inputs, *args, **kwargs)
        training = kwargs.pop("training", False)
        mask = kwargs.pop("mask", None)
        inputs = self._eager_inputs(inputs, *args, **kwargs)
        self.maybe_build(_shape_of(inputs))
        outputs, _ = self.forward(inputs, training=training, mask=mask)
        return outputs

    def _eager_inputs(self, inputs, *args, **kwargs):
        if args or kwargs:
            raise TypeError(f"{self.name}: unexpected arguments {list(kwargs) or args}")
        return inputs

    # ---- config ------------------------------------------------------------------
    def get_config(self):
        cfg = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype.name}
        if self._input_shape_arg is not None:
            cfg["input_shape"] = list(self._input_shape_arg)
        return cfg

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} built={self.built}>"


def _shape_of(x):
    """(None, ...) shape(s) of an array or a list of arrays, for build()."""
    if isinstance(x, (list, tuple)):
        return [_shape_of(v) for v in x]
    if x is None:
        return None
    return (None,) + tuple(np.shape(x)[1:])
