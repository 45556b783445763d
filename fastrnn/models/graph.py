"""Symbolic tensors and the layer graph of a functional model.

    x = fastrnn.Input((None, 8))            # a SymbolicTensor of shape (None, None, 8)
    h = layers.LSTM(16, return_sequences=True)(x)
    y = layers.Dense(1)(h)                   # calling a layer on symbols records a Node
    model = fastrnn.Model(x, y)

A `SymbolicTensor` holds no data: a shape (None for the batch size and any
other size not known in advance), a dtype, and where it comes from (the `Node`
that produced it and its position among that node's outputs). Calling a layer
on symbolic tensors builds the layer (`maybe_build` with the symbolic shapes),
records one `Node` (the call: the layer, its input tensors, how they were
passed, its output tensors) and returns new symbolic tensors whose shapes come
from `compute_output_shape`. A layer called at several places (a shared layer)
gets one node per call; at run time each call keeps its own `ctx`, and the
weight gradients of all calls add up in the layer's `grads`.

How a node passes its inputs to `forward`:

- one tensor: `forward(x)`;
- a list of tensors: `forward([a, b, ...])` (merge layers, or a recurrent layer
  given `[x, h0, c0]`);
- `initial_state=`: `layer(x, initial_state=[h0, c0])` is recorded as the list
  `[x, h0, c0]` (the recurrent layers' list form); the mask given to the layer is
  then the mask of `x` alone.

Masks are computed at run time with `compute_mask` (they depend on the data,
e.g. `ids != 0`), see `fastrnn.models.model`.
"""
import numbers
import zlib

import numpy as np

from ..layers.base import Layer, _unique_name, register

__all__ = ["SymbolicTensor", "KerasTensor", "Node", "InputLayer", "Input", "is_symbolic", "call_layer",
           "shape_str"]


def shape_str(shape):
    """"(None, 10)"-style text for a shape, a list of shapes for several."""
    if isinstance(shape, list):
        return "[" + ", ".join(shape_str(s) for s in shape) + "]"
    if shape is None:
        return "?"
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class SymbolicTensor:
    """A placeholder for an array in a model under construction.

    `shape` is a tuple with None for unknown sizes (always the batch size,
    unless `Input(batch_size=...)` fixed it); `node` is the `Node` that
    produced it and `index` its position among the node's outputs.
    """

    __slots__ = ("shape", "dtype", "node", "index", "name")

    def __init__(self, shape, dtype, node=None, index=0, name=None):
        self.shape = tuple(None if d is None else int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.node = node
        self.index = index
        self.name = name

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def layer(self):
        """The layer whose call produced this tensor."""
        return None if self.node is None else self.node.layer

    def __repr__(self):
        src = "" if self.node is None else f", from {self.node.layer.name}:{self.index}"
        return f"<SymbolicTensor name={self.name!r} shape={shape_str(self.shape)} dtype={self.dtype.name}{src}>"

    # Symbols are graph handles: refuse the array operations a NumPy user might try.
    def __array__(self, *args, **kwargs):
        raise TypeError(f"{self!r} is symbolic: it has no values. Build a Model from it and call the "
                        "model on arrays")

    def __bool__(self):
        raise TypeError(f"{self!r} is symbolic: it has no truth value")

    def __len__(self):
        raise TypeError(f"{self!r} is symbolic: it has no length")


KerasTensor = SymbolicTensor      # the name Keras users know


class Node:
    """One call of a layer in a graph.

    inputs:        the input tensors, flat (x first, then any initial states)
    in_structure:  "single" (forward gets one array) or "list" (forward gets a list)
    n_states:      how many of the inputs came from `initial_state=`
    training:      None (follow the model), or the bool given at the call
    outputs:       the output tensors
    out_structure: "single" or "list" (forward returns a list)
    """

    __slots__ = ("layer", "inputs", "in_structure", "n_states", "training", "outputs", "out_structure")

    def __init__(self, layer, inputs, in_structure, n_states=0, training=None):
        self.layer = layer
        self.inputs = list(inputs)
        self.in_structure = in_structure
        self.n_states = n_states
        self.training = training
        self.outputs = []
        self.out_structure = "single"

    @property
    def is_input(self):
        return isinstance(self.layer, InputLayer)

    def input_shapes(self):
        """The shapes as `build`/`compute_output_shape` receive them."""
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if self.in_structure == "single" else shapes

    def output_shapes(self):
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if self.out_structure == "single" else shapes

    def __repr__(self):
        return f"<Node {self.layer.name} inputs={[shape_str(t.shape) for t in self.inputs]}>"


# ---------------------------------------------------------------------------
# Inputs

def _check_shape(shape, who):
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{who}: shape expected a tuple of ints (None for a size not known in advance), "
                        f"got {shape!r}") from None
    out = []
    for d in shape:
        if d is None:
            out.append(None)
        elif isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0:
            out.append(int(d))
        else:
            raise ValueError(f"{who}: shape expected non-negative ints or None, got {shape!r}")
    return tuple(out)


@register
class InputLayer(Layer):
    """The source of a model input: it holds the input's shape and dtype, has no
    weights, and passes its input on unchanged.

    `shape` excludes the batch size (`batch_size` fixes it, for stateful
    models). `dtype` may be any real dtype (ids for an `Embedding` are ints).
    """

    def __init__(self, shape=None, dtype="float32", name=None, batch_size=None):
        super().__init__(name=name or _unique_name("input_layer"))
        if shape is None:
            raise ValueError(f"{self.name}: shape is required (the input's shape without the batch size)")
        self.shape = _check_shape(shape, self.name)
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"{self.name}: dtype expected a NumPy dtype name, got {dtype!r}") from None
        if dt.kind not in "biuf":
            raise TypeError(f"{self.name}: dtype expected a real dtype (float, int or bool), got {dt}")
        self.dtype = dt
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
                                       or batch_size <= 0):
            raise ValueError(f"{self.name}: batch_size expected a positive int or None, got {batch_size!r}")
        self.batch_size = None if batch_size is None else int(batch_size)
        self.batch_shape = (self.batch_size,) + self.shape
        self.input_shape = self.batch_shape
        self.built = True
        self.supports_masking = True
        self._output_tensor = None

    @property
    def output(self):
        """The symbolic tensor this input layer produces (one per layer)."""
        if self._output_tensor is None:
            node = Node(self, [], "single")
            self._output_tensor = SymbolicTensor(self.batch_shape, self.dtype, node=node, index=0, name=self.name)
            node.outputs = [self._output_tensor]
        return self._output_tensor

    def compute_output_shape(self, input_shape):
        return self.batch_shape

    def forward(self, inputs, training=False, mask=None):
        return inputs, None

    def backward(self, ctx, d_outputs):
        return d_outputs

    def get_config(self):
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype.name,
                "batch_size": self.batch_size}


def Input(shape, dtype="float32", name=None, batch_size=None):
    """A symbolic model input of `shape` (without the batch size) and `dtype`.

    Use None for sizes known only at run time: `Input((None, 8))` takes
    sequences of any length with 8 features. `batch_size` fixes the batch size
    (stateful recurrent layers need it to be known).
    """
    layer = InputLayer(shape=shape, dtype=dtype, name=name, batch_size=batch_size)
    return layer.output


# ---------------------------------------------------------------------------
# Calling a layer on symbols

def is_symbolic(inputs):
    """True when `inputs` is a SymbolicTensor or a list/tuple holding one."""
    if isinstance(inputs, SymbolicTensor):
        return True
    if isinstance(inputs, (list, tuple)):
        return any(isinstance(t, SymbolicTensor) for t in inputs)
    return False


def _flat_symbols(value, who, arg):
    """`value` (a tensor or a list of tensors) as (list of tensors, was_list)."""
    if isinstance(value, SymbolicTensor):
        return [value], False
    if isinstance(value, (list, tuple)) and value:
        for i, t in enumerate(value):
            if not isinstance(t, SymbolicTensor):
                raise TypeError(f"{who}: {arg}[{i}] expected a symbolic tensor (from fastrnn.Input or a layer "
                                f"call), got {type(t).__name__}; do not mix arrays and symbolic tensors")
        return list(value), True
    raise TypeError(f"{who}: {arg} expected a symbolic tensor or a non-empty list of them, "
                    f"got {type(value).__name__}")


def _is_shape_list(shape):
    """True when compute_output_shape returned several shapes (a list of tuples)."""
    if isinstance(shape, list):
        return True
    return isinstance(shape, tuple) and len(shape) > 0 and all(isinstance(s, (tuple, list)) for s in shape)


def _compatible(built, given):
    """Do two shapes (or lists of shapes) agree on the feature size (the last
    dimension) where both know it? Other dimensions are the layer's business (a
    Dense takes inputs of any rank)."""
    if built is None or given is None:
        return True
    if _is_shape_list(built) or _is_shape_list(given):
        if not (_is_shape_list(built) and _is_shape_list(given)) or len(built) != len(given):
            return False
        return all(_compatible(b, g) for b, g in zip(built, given))
    if not built or not given:
        return len(built) == len(given)
    return built[-1] is None or given[-1] is None or built[-1] == given[-1]


def call_layer(layer, inputs, *args, **kwargs):
    """Record a call of `layer` on symbolic `inputs`; returns the symbolic output(s).

    Keyword arguments: `initial_state=` (a tensor or a list of tensors,
    appended to the inputs: the recurrent layers' list form) and `training=`
    (None: the model decides; True/False: always that, e.g. Monte-Carlo dropout).
    """
    who = layer.name
    if args:
        raise TypeError(f"{who}: unexpected positional arguments after the inputs ({len(args)} given)")
    training = kwargs.pop("training", None)
    initial_state = kwargs.pop("initial_state", None)
    if kwargs.get("mask") is not None:
        raise TypeError(f"{who}: mask= is not supported on symbolic tensors: masks flow through the graph "
                        "from Embedding(mask_zero=True) or Masking")
    kwargs.pop("mask", None)
    if kwargs:
        raise TypeError(f"{who}: unexpected keyword arguments {sorted(kwargs)} in a symbolic call "
                        "(supported: initial_state, training)")
    if training is not None and not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"{who}: training expected None or a bool, got {training!r}")

    flat, was_list = _flat_symbols(inputs, who, "inputs")
    n_states = 0
    if initial_state is not None:
        if was_list:
            raise ValueError(f"{who}: pass initial states either in the inputs list or as initial_state=, "
                             "not both")
        states, _ = _flat_symbols(initial_state, who, "initial_state")
        flat = flat + states
        n_states = len(states)
        was_list = True
    node = Node(layer, flat, "list" if was_list else "single", n_states=n_states,
                training=None if training is None else bool(training))
    in_shapes = node.input_shapes()

    if layer.built and layer.input_shape is not None and not _compatible(layer.input_shape, in_shapes):
        raise ValueError(f"{who}: this layer was built for input shape {shape_str(_as_list(layer.input_shape))}, "
                         f"and is now called on {shape_str(_as_list(in_shapes))}")
    was_built = layer.built
    layer.maybe_build(in_shapes)
    if not was_built and getattr(layer, "init_rng", None) is None:
        mark_unseeded_build(layer)
    out_shapes = layer.compute_output_shape(in_shapes)
    if _is_shape_list(out_shapes):
        node.out_structure = "list"
        out_shapes = [tuple(s) for s in out_shapes]
    else:
        out_shapes = [tuple(out_shapes)]
    dtype = layer.dtype
    node.outputs = [SymbolicTensor(s, dtype, node=node, index=i, name=f"{layer.name}:{i}")
                    for i, s in enumerate(out_shapes)]
    return node.outputs[0] if node.out_structure == "single" else list(node.outputs)


def _as_list(shape):
    return [tuple(s) for s in shape] if _is_shape_list(shape) else tuple(shape)


def fingerprint(layer):
    """A cheap digest of a layer's weights (to tell whether anything changed them)."""
    crc = 0
    for n in layer.weight_names():
        w = layer.params[n]
        crc = zlib.crc32(repr((n, w.shape, w.dtype.str)).encode(), crc)
        crc = zlib.crc32(np.ascontiguousarray(w).view(np.uint8).reshape(-1), crc)
    return crc


def mark_unseeded_build(layer):
    """Remember that graph construction drew `layer`'s weights without a seed, and
    what they were: a seed given later (to the model or to fit) redraws them while
    they are untouched (see fastrnn.models.model)."""
    layer._fastrnn_unseeded_init = fingerprint(layer)


# ---------------------------------------------------------------------------
# Walking a graph

def topological_nodes(outputs):
    """Every node that the `outputs` depend on, each after the nodes it reads from.

    Depth-first from the outputs in order, inputs of a node in order: the
    result is deterministic for a given graph.
    """
    order, state = [], {}          # state: id(node) -> 1 while visiting, 2 when done
    stack = []
    for t in reversed(outputs):
        stack.append((t.node, False))
    while stack:
        node, expanded = stack.pop()
        key = id(node)
        if expanded:
            state[key] = 2
            order.append(node)
            continue
        if state.get(key) == 2:
            continue
        if state.get(key) == 1:
            raise ValueError(f"the graph has a cycle through layer {node.layer.name!r}")
        state[key] = 1
        stack.append((node, True))
        for t in reversed(node.inputs):
            if state.get(id(t.node)) != 2:
                if state.get(id(t.node)) == 1:
                    raise ValueError(f"the graph has a cycle through layer {t.node.layer.name!r}")
                stack.append((t.node, False))
    return order
