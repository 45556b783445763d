"""Merge layers over a list of inputs: Concatenate and Add.

Masks follow Keras 3 (checked against keras 3.15 in the tests):
- `Add`: the OR of the input masks when every input has one, else None
  (a step is kept when any input has it).
- `Concatenate`: each input's mask is broadcast over its own features (an
  input without a mask counts as all valid), the broadcast masks are
  concatenated along `axis`, and the output mask is their OR over the last
  axis. Along the feature axis this is the OR of the masks, and all True as
  soon as one input has no mask; along the time axis the masks are joined.
Keras 2 used AND for both; fastrnn follows the Keras that is current.
"""
import numpy as np

from .base import Layer, register
from .core import as_float_input

__all__ = ["Concatenate", "Add"]


def _list_of_inputs(layer, inputs, arg="inputs"):
    if not isinstance(inputs, (list, tuple)) or len(inputs) < 1:
        raise ValueError(f"{layer.name}: {arg} expected a list of at least 1 array, "
                         f"got {type(inputs).__name__}")
    return list(inputs)


def _list_of_masks(layer, inputs, mask):
    if mask is None:
        return None
    if not isinstance(mask, (list, tuple)):
        raise ValueError(f"{layer.name}: mask expected a list with one entry (or None) per input, "
                         f"got {type(mask).__name__}")
    if len(mask) != len(inputs):
        raise ValueError(f"{layer.name}: mask expected {len(inputs)} entries (one per input), got {len(mask)}")
    return [None if m is None else np.asarray(m, dtype=bool) for m in mask]


class _Merge(Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self._built_shapes = None

    def _check_against_built(self, xs):
        if self._built_shapes is None:
            return
        if len(xs) != len(self._built_shapes):
            raise ValueError(f"{self.name}: inputs expected {len(self._built_shapes)} arrays "
                             f"(as built), got {len(xs)}")
        for i, (x, shape) in enumerate(zip(xs, self._built_shapes)):
            if shape is None:
                continue
            if x.ndim != len(shape) or any(w is not None and w != g for w, g in zip(shape[1:], x.shape[1:])):
                raise ValueError(f"{self.name}: inputs[{i}] expected shape {tuple(shape)} (as built), "
                                 f"got {x.shape}")
        batch = {x.shape[0] for x in xs if x.ndim}
        if len(batch) > 1:
            raise ValueError(f"{self.name}: inputs expected one batch size, got shapes "
                             f"{[x.shape for x in xs]}")

    def _cast_all(self, inputs):
        xs = _list_of_inputs(self, inputs)
        return [as_float_input(self, x, arg=f"inputs[{i}]") for i, x in enumerate(xs)]


@register
class Add(_Merge):
    """Elementwise sum of a list of inputs.

    Shapes must agree or broadcast (a dimension of 1 broadcasts; an input of
    lower rank gets axes inserted after the batch axis, as Keras does).
    """

    def build(self, input_shape):
        shapes = _list_of_inputs(self, input_shape, arg="input_shape")
        self._output_shape(shapes)          # raises on incompatible shapes
        self._built_shapes = [None if s is None else tuple(s) for s in shapes]
        self.built = True

    def _output_shape(self, shapes):
        rank = max(len(s) for s in shapes)
        expanded = [(s[0],) + (1,) * (rank - len(s)) + tuple(s[1:]) for s in shapes]
        out = []
        for axis in range(rank):
            dims = {s[axis] for s in expanded}
            known = {d for d in dims if d is not None and d != 1}
            if len(known) > 1:
                raise ValueError(f"{self.name}: inputs have shapes {[tuple(s) for s in shapes]} "
                                 f"that do not broadcast together (axis {axis})")
            if known:
                out.append(known.pop())
            elif None in dims:
                out.append(None)
            else:
                out.append(1)
        return tuple(out)

    def compute_output_shape(self, input_shape):
        return self._output_shape(_list_of_inputs(self, input_shape, arg="input_shape"))

    def forward(self, inputs, training=False, mask=None):
        xs = self._cast_all(inputs)
        self._check_against_built(xs)
        rank = max(x.ndim for x in xs)
        expanded = [x.reshape(x.shape[:1] + (1,) * (rank - x.ndim) + x.shape[1:]) for x in xs]
        try:
            out_shape = np.broadcast_shapes(*[e.shape for e in expanded])
        except ValueError:
            raise ValueError(f"{self.name}: inputs have shapes {[x.shape for x in xs]} that do not "
                             "broadcast together") from None
        y = np.zeros(out_shape, dtype=self.dtype) if len(xs) == 1 else expanded[0] + expanded[1]
        for e in (expanded if len(xs) == 1 else expanded[2:]):
            y += e
        return y, [(x.shape, e.shape) for x, e in zip(xs, expanded)]

    def backward(self, ctx, d_outputs):
        if d_outputs is None:
            return [None] * len(ctx)
        d = np.asarray(d_outputs, dtype=self.dtype)
        grads = []
        for i, (shape, exp_shape) in enumerate(ctx):
            g = d
            axes = tuple(a for a, (n_e, n_d) in enumerate(zip(exp_shape, d.shape)) if n_e == 1 and n_d != 1)
            if axes:
                g = g.sum(axis=axes, keepdims=True)
            g = g.reshape(shape)
            grads.append(g if i == 0 else g.copy())     # one array per input, never shared
        return grads

    def compute_mask(self, inputs, mask=None):
        masks = _list_of_masks(self, _list_of_inputs(self, inputs), mask)
        if masks is None or any(m is None for m in masks):
            return None
        out = masks[0]
        for m in masks[1:]:
            out = np.logical_or(out, m)
        return out


@register
class Concatenate(_Merge):
    """Joins a list of inputs along `axis` (counted with the batch axis; -1 = features)."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"{self.name}: axis expected an int, got {axis!r}")
        self.axis = int(axis)

    def _axis(self, rank):
        if not -rank <= self.axis < rank:
            raise ValueError(f"{self.name}: axis {self.axis} is out of range for inputs of rank {rank}")
        return self.axis % rank

    def _check_shapes(self, shapes, arg="inputs"):
        ranks = {len(s) for s in shapes}
        if len(ranks) != 1:
            raise ValueError(f"{self.name}: {arg} expected arrays of one rank, got shapes "
                             f"{[tuple(s) for s in shapes]}")
        rank = ranks.pop()
        axis = self._axis(rank)
        for d in range(rank):
            if d == axis:
                continue
            known = {s[d] for s in shapes if s[d] is not None}
            if len(known) > 1:
                raise ValueError(f"{self.name}: {arg} expected equal sizes except along axis {self.axis}, "
                                 f"got shapes {[tuple(s) for s in shapes]} (dimension {d})")
        return axis

    def build(self, input_shape):
        shapes = _list_of_inputs(self, input_shape, arg="input_shape")
        self._check_shapes(shapes, arg="input_shape")
        self._built_shapes = [tuple(s) for s in shapes]
        self.built = True

    def compute_output_shape(self, input_shape):
        shapes = _list_of_inputs(self, input_shape, arg="input_shape")
        axis = self._check_shapes(shapes, arg="input_shape")
        out = list(shapes[0])
        sizes = [s[axis] for s in shapes]
        out[axis] = None if any(n is None for n in sizes) else sum(sizes)
        for d in range(len(out)):
            if d != axis and out[d] is None:
                out[d] = next((s[d] for s in shapes if s[d] is not None), None)
        return tuple(out)

    def forward(self, inputs, training=False, mask=None):
        xs = self._cast_all(inputs)
        self._check_against_built(xs)
        axis = self._check_shapes([x.shape for x in xs])
        y = np.concatenate(xs, axis=axis)
        return y, (axis, [x.shape[axis] for x in xs])

    def backward(self, ctx, d_outputs):
        axis, sizes = ctx
        if d_outputs is None:
            return [None] * len(sizes)
        d = np.asarray(d_outputs, dtype=self.dtype)
        return np.split(d, np.cumsum(sizes)[:-1], axis=axis)

    def compute_mask(self, inputs, mask=None):
        xs = _list_of_inputs(self, inputs)
        masks = _list_of_masks(self, xs, mask)
        if masks is None or all(m is None for m in masks):
            return None
        shapes = [np.shape(x) for x in xs]
        axis = self._axis(len(shapes[0]))
        full = []
        for shape, m in zip(shapes, masks):
            if m is None:
                full.append(np.ones(shape, dtype=bool))
            elif m.ndim < len(shape):
                full.append(np.broadcast_to(m.reshape(m.shape + (1,) * (len(shape) - m.ndim)), shape))
            else:
                full.append(m)
        return np.any(np.concatenate(full, axis=axis), axis=-1)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
