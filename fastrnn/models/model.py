"""Functional `Model` and `Sequential`: graphs of layers run forward and backward.

    x = fastrnn.Input((None, 8))
    y = layers.Dense(1)(layers.LSTM(32)(x))
    model = fastrnn.Model(x, y)                                   # functional
    model = fastrnn.Sequential([layers.LSTM(32), layers.Dense(1)])  # a stack, built from the first input

There is no autograd. A model runs its layer calls (graph nodes) in
topological order, keeping each call's `ctx`, and runs backward in the
reverse order: each node's `backward(ctx, d_outputs)` adds its weight
gradients into `layer.grads` and returns the input gradients, which are
summed where a tensor feeds several consumers (a shared layer, a skip
connection, a state passed to two layers).

Masks are computed at run time: after each call, `layer.compute_mask(inputs,
mask)` gives the mask of its outputs; the masks of the model's outputs are
passed to the losses and metrics.

Seeds (how to make a run reproducible, bit for bit):

- `Model(..., seed=s)` / `Sequential(..., seed=s)`: the weights are drawn
  from `s`. A functional model's layers are built when they are called on
  symbolic tensors, before the model exists; the model then redraws, from `s`,
  the weights that graph construction drew without a seed (weights a user set,
  or drew with a seeded `init_rng`, are kept). A Sequential model draws its
  weights from `s` when it builds.
- `fit(..., seed=s)` seeds the shuffling and every Dropout/recurrent layer's
  random masks (a generator per layer and epoch, so resuming at an epoch with
  `initial_epoch` continues exactly), and draws from `s` the weights that the
  model drew without a seed and that nothing has changed since (the model is
  not trained, set_weights/load_weights were not called): so
  `Sequential([...]).fit(x, y, seed=s)` is reproducible even after `summary()`.
  Without `seed=`, fit uses the model's seed when it has one.
Layer k of `model.layers` (and its nested layers j) draw its initial weights
from `default_rng([s, 1, k, j])`, epoch e shuffles with `default_rng([s, 2, e])`
and draws masks from `default_rng([s, 3, e, k, j])`.
"""
import numbers

import numpy as np

from ..layers.base import Layer, _unique_name
from . import graph
from .graph import InputLayer, SymbolicTensor, fingerprint, shape_str
from .training import INIT_STREAM as _INIT_STREAM, MASK_STREAM as _MASK_STREAM, TrainingMixin

__all__ = ["Model", "Sequential"]


def check_seed(seed, who="seed"):
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"{who}: expected a non-negative int or None, got {seed!r}")
    return int(seed)


def sublayers(layer):
    """`layer` and the layers nested in it (a wrapper's inner layers), depth first."""
    out, seen, stack = [], set(), [layer]
    while stack:
        cur = stack.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        out.append(cur)
        inner = [v for v in vars(cur).values() if isinstance(v, Layer)]
        for v in vars(cur).values():
            if isinstance(v, (list, tuple)):
                inner.extend(x for x in v if isinstance(x, Layer))
        stack.extend(reversed(inner))
    return out


def seed_layer_init(layer, seed, k):
    """Give `layer` and its nested layers generators for their initial weights."""
    for j, sub in enumerate(sublayers(layer)):
        sub.init_rng = np.random.default_rng([seed, _INIT_STREAM, k, j])


def redraw_if_untouched(layer, seed, k):
    """Redraw from `seed` the weights of `layer` when graph construction drew
    them without a seed and nothing changed them since. Returns True if it did."""
    mark = getattr(layer, "_fastrnn_unseeded_init", None)
    if mark is None or not layer.built or fingerprint(layer) != mark:
        return False
    try:
        clone = type(layer).from_config(layer.get_config())
    except Exception as exc:   # a custom layer whose config does not rebuild it
        raise ValueError(f"{layer.name}: cannot redraw its weights from a seed: rebuilding it from its "
                         f"config failed ({exc}); pass init_rng to the layer instead") from None
    seed_layer_init(clone, seed, k)
    clone.maybe_build(layer.input_shape)
    layer.set_weights(clone.get_weights())
    layer._fastrnn_unseeded_init = None
    return True


class Model(TrainingMixin):
    """A functional model: the graph from `inputs` (from `fastrnn.Input`) to `outputs`.

    `inputs`/`outputs` are one symbolic tensor or a list of them; calling the
    model, `predict` and `fit` take (and give) arrays in the same structure
    (a dict keyed by input/output name works too). `seed`: see the module
    docstring.
    """

    def __init__(self, inputs=None, outputs=None, name=None, seed=None):
        if inputs is None or outputs is None:
            raise TypeError("Model(inputs, outputs): both are required (symbolic tensors from fastrnn.Input "
                            "and layer calls); for a stack of layers use fastrnn.Sequential")
        self._init_model(name or _unique_name("functional"), seed)
        self._set_graph(inputs, outputs)
        if self.seed is not None:
            for k, layer in enumerate(self.layers):
                redraw_if_untouched(layer, self.seed, k)

    def _init_model(self, name, seed):
        if not isinstance(name, str) or not name:
            raise TypeError(f"name: expected a non-empty str, got {name!r}")
        self.name = name
        self.seed = check_seed(seed)
        self.built = False
        self._init_training()

    # ---- the graph -----------------------------------------------------------------------
    def _set_graph(self, inputs, outputs):
        who = self.name
        self._single_input = isinstance(inputs, SymbolicTensor)
        self._single_output = isinstance(outputs, SymbolicTensor)
        ins = [inputs] if self._single_input else list(inputs) if isinstance(inputs, (list, tuple)) else None
        outs = [outputs] if self._single_output else list(outputs) if isinstance(outputs, (list, tuple)) else None
        if not ins:
            raise TypeError(f"{who}: inputs expected a symbolic tensor from fastrnn.Input or a non-empty list of "
                            f"them, got {type(inputs).__name__}")
        if not outs:
            raise TypeError(f"{who}: outputs expected a symbolic tensor or a non-empty list of them, "
                            f"got {type(outputs).__name__}")
        for i, t in enumerate(ins):
            if not isinstance(t, SymbolicTensor) or t.node is None or not t.node.is_input:
                raise TypeError(f"{who}: inputs[{i}] expected a tensor made by fastrnn.Input, got {t!r}")
        for i, t in enumerate(outs):
            if not isinstance(t, SymbolicTensor):
                raise TypeError(f"{who}: outputs[{i}] expected a symbolic tensor, got {type(t).__name__}")
        if len({id(t) for t in ins}) != len(ins):
            raise ValueError(f"{who}: the same input tensor is given twice in inputs")

        nodes = graph.topological_nodes(outs)
        given = {id(t) for t in ins}
        for node in nodes:
            if node.is_input and id(node.outputs[0]) not in given:
                raise ValueError(f"{who}: the graph is disconnected: the outputs depend on the input "
                                 f"{node.layer.name!r} {shape_str(node.outputs[0].shape)}, which is not in "
                                 f"inputs ({', '.join(t.node.layer.name for t in ins)})")
        self.inputs, self.outputs = ins, outs
        self._nodes = [n for n in nodes if not n.is_input]
        self._input_layers = [t.node.layer for t in ins]

        layers, seen = list(self._input_layers), {id(l) for l in self._input_layers}
        for node in self._nodes:
            if id(node.layer) not in seen:
                seen.add(id(node.layer))
                layers.append(node.layer)
        names = {}
        for layer in layers:
            if layer.name in names:
                raise ValueError(f"{who}: two different layers are named {layer.name!r}; layer names in a model "
                                 "must be unique")
            names[layer.name] = layer
        self._all_layers = layers
        self._by_name = names

        # slots: every tensor gets an index in the value list of a run
        slot = {}
        for t in ins:
            slot[id(t)] = len(slot)
        for node in self._nodes:
            for t in node.outputs:
                slot[id(t)] = len(slot)
        self._n_slots = len(slot)
        self._input_slots = [slot[id(t)] for t in ins]
        self._output_slots = [slot[id(t)] for t in outs]
        self._plan = [(node, [slot[id(t)] for t in node.inputs], [slot[id(t)] for t in node.outputs])
                      for node in self._nodes]
        self.input_names = [l.name for l in self._input_layers]
        names, count = [], {}
        for t in outs:
            base = t.node.layer.name
            count[base] = count.get(base, 0) + 1
            names.append(base if count[base] == 1 else f"{base}_{count[base] - 1}")
        self.output_names = names
        self.built = True
        if self.compiled:
            self._loss_fns = None         # the outputs changed: resolve the compile arguments again

    # ---- structure -----------------------------------------------------------------------
    @property
    def layers(self):
        """The model's layers: the input layers, then every other layer in the order the graph runs them."""
        return list(self._all_layers) if self.built else []

    def _weighted_layers(self):
        """Every layer once, in `layers` order."""
        return self._all_layers if self.built else []

    def get_layer(self, name=None, index=None):
        """A layer by name, or by its index in `layers`."""
        if (name is None) == (index is None):
            raise ValueError("get_layer: give exactly one of name and index")
        layers = self.layers
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, numbers.Integral):
                raise TypeError(f"get_layer: index expected an int, got {index!r}")
            if not -len(layers) <= index < len(layers):
                raise ValueError(f"get_layer: index {index} is out of range for {len(layers)} layers")
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(f"get_layer: no layer named {name!r}; layers: {', '.join(l.name for l in layers)}")

    @property
    def input_shape(self):
        self._require_built("input_shape")
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if self._single_input else shapes

    @property
    def output_shape(self):
        self._require_built("output_shape")
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if self._single_output else shapes

    def _require_built(self, what):
        if not self.built:
            raise ValueError(f"{self.name}: {what} is not known before the model is built: call it on data, "
                             "fit it, or give the input shape (fastrnn.Input, input_shape= on the first layer "
                             "or build())")

    # ---- weights -------------------------------------------------------------------------
    @property
    def weights(self):
        """Every weight array (the layers' own arrays, not copies), layer by layer in Keras's order."""
        out, seen = [], set()
        for layer in self._weighted_layers():
            for w in layer.weights:
                if id(w) not in seen:
                    seen.add(id(w))
                    out.append(w)
        return out

    @property
    def trainable_weights(self):
        out, seen = [], set()
        for layer in self._weighted_layers():
            for w in layer.trainable_weights:
                if id(w) not in seen:
                    seen.add(id(w))
                    out.append(w)
        return out

    @property
    def non_trainable_weights(self):
        trainable = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in trainable]

    def _trainable_pairs(self):
        """(params, grads) of every trainable weight, in the fixed order the optimizer sees them."""
        params, grads, seen = [], [], set()
        for layer in self._weighted_layers():
            if not layer.trainable:
                continue
            for n in layer._trainable_names:
                p = layer.params[n]
                if id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
                    grads.append(layer.grads[n])
        return params, grads

    def _weight_entries(self):
        """[(layer, weight name, array)] in `get_weights` order (shared arrays once)."""
        out, seen = [], set()
        for layer in self._weighted_layers():
            for n in layer.weight_names():
                p = layer.params[n]
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append((layer, n, p))
        return out

    def get_weights(self):
        """Copies of every weight, layer by layer (each layer's trainable weights, then the others),
        the order Keras uses for the same layers."""
        self._require_built("get_weights")
        return [p.copy() for _, _, p in self._weight_entries()]

    def set_weights(self, weights):
        """Set every weight from a list like `get_weights()`'s (checked before anything changes)."""
        self._require_built("set_weights")
        entries = self._weight_entries()
        if isinstance(weights, (str, bytes, dict, np.ndarray)) or not hasattr(weights, "__iter__"):
            raise TypeError(f"{self.name}.set_weights: expected a list of {len(entries)} arrays, "
                            f"got {type(weights).__name__}")
        weights = list(weights)
        if len(weights) != len(entries):
            raise ValueError(f"{self.name}.set_weights: expected {len(entries)} arrays, got {len(weights)}")
        arrays = []
        for i, ((layer, n, p), w) in enumerate(zip(entries, weights)):
            try:
                w = np.asarray(w)
            except (TypeError, ValueError) as e:
                raise ValueError(f"{self.name}.set_weights: weights[{i}] ({layer.name}/{n}) expected an array "
                                 f"of shape {shape_str(p.shape)}, got {type(w).__name__} ({e})") from None
            if w.shape != p.shape:
                raise ValueError(f"{self.name}.set_weights: weights[{i}] ({layer.name}/{n}) expected shape "
                                 f"{shape_str(p.shape)}, got {shape_str(w.shape)}")
            if w.dtype.kind not in "fiu":
                raise TypeError(f"{self.name}.set_weights: weights[{i}] ({layer.name}/{n}) expected a real "
                                f"array, got dtype {w.dtype}")
            arrays.append(w)
        for (layer, n, p), w in zip(entries, arrays):
            p[...] = w
        self._weights_changed()
        self._forget_unseeded_marks()

    def _weights_changed(self):
        for layer in self._weighted_layers():
            layer.weights_changed()

    def count_params(self):
        self._require_built("count_params")
        return int(sum(p.size for p in self.weights))

    # ---- states and randomness -----------------------------------------------------------
    def reset_states(self):
        """Reset the state of every stateful recurrent layer (to zeros)."""
        for layer in self._weighted_layers():
            for sub in sublayers(layer):
                if callable(getattr(sub, "reset_states", None)):
                    sub.reset_states()
                    break

    def _seed_masks(self, seed, epoch):
        """Give every layer that draws random masks (Dropout, recurrent dropout) its generator for `epoch`."""
        for k, layer in enumerate(self._weighted_layers()):
            self._seed_masks_of(layer, seed, epoch, k)

    @staticmethod
    def _seed_masks_of(layer, seed, epoch, k):
        """Depth first; a layer with `set_rng` gets a generator and hands it on to its own parts."""
        stack, seen, j = [layer], set(), 0
        while stack:
            cur = stack.pop()
            if id(cur) in seen:
                continue
            seen.add(id(cur))
            if callable(getattr(cur, "set_rng", None)):
                cur.set_rng(np.random.default_rng([seed, _MASK_STREAM, epoch, k, j]))
                j += 1
                continue
            stack.extend(reversed([v for v in vars(cur).values() if isinstance(v, Layer)]))

    def _redraw_unseeded(self, seed):
        """fit(seed=...): redraw the untouched unseeded initial weights from `seed`."""
        for k, layer in enumerate(self._weighted_layers()):
            redraw_if_untouched(layer, seed, k)

    def _forget_unseeded_marks(self):
        for layer in self._weighted_layers():
            if getattr(layer, "_fastrnn_unseeded_init", None) is not None:
                layer._fastrnn_unseeded_init = None

    # ---- running the graph -------------------------------------------------------------
    def _ensure_built(self, xs, seed=None):
        """Build from the first data seen (Sequential); a functional model is built already."""
        return None

    def _standardize_x(self, x, who="x"):
        """`x` (an array, a list of arrays, a dict by input name) as a list of arrays, one per input."""
        n = len(self.inputs) if self.built else 1
        names = self.input_names if self.built else None
        return _standardize(x, n, names, who, self.name, kind="input")

    def _check_inputs(self, xs):
        """Rank and known sizes of each input against the model's inputs."""
        batch = None
        for i, (t, x) in enumerate(zip(self.inputs, xs)):
            name = self.input_names[i]
            if x.ndim != len(t.shape) or any(d is not None and d != g for d, g in zip(t.shape, x.shape)):
                raise ValueError(f"{self.name}: input {name!r} expected shape {shape_str(t.shape)} "
                                 f"(None: any size), got {shape_str(x.shape)}")
            if batch is None:
                batch = x.shape[0]
            elif x.shape[0] != batch:
                raise ValueError(f"{self.name}: every input must have the same batch size; input {name!r} has "
                                 f"{x.shape[0]}, the first has {batch}")

    def _forward(self, xs, training=False, keep_ctx=False):
        """Run the graph on a list of arrays (one per input).

        Returns (outputs, output masks, per-node ctxs or None); outputs and masks are
        lists aligned with `self.outputs`.
        """
        values = [None] * self._n_slots
        masks = [None] * self._n_slots
        for s, x in zip(self._input_slots, xs):
            values[s] = x
        ctxs = [] if keep_ctx else None
        for node, in_slots, out_slots in self._plan:
            layer = node.layer
            if node.in_structure == "single":
                inputs, mask = values[in_slots[0]], masks[in_slots[0]]
            else:
                inputs = [values[s] for s in in_slots]
                if node.n_states:
                    mask = masks[in_slots[0]]               # the sequence's mask; states have none
                else:
                    ms = [masks[s] for s in in_slots]
                    mask = None if all(m is None for m in ms) else ms
            tr = training if node.training is None else node.training
            out, ctx = layer.forward(inputs, training=tr, mask=mask)
            if keep_ctx:
                ctxs.append(ctx)
            out_mask = layer.compute_mask(inputs, mask)
            if node.out_structure == "single":
                values[out_slots[0]] = out
                masks[out_slots[0]] = out_mask
            else:
                if not isinstance(out, (list, tuple)) or len(out) != len(out_slots):
                    raise RuntimeError(f"{layer.name}: forward returned {type(out).__name__} where its "
                                       f"compute_output_shape promised {len(out_slots)} outputs")
                out_masks = out_mask if isinstance(out_mask, (list, tuple)) \
                    else [out_mask] + [None] * (len(out_slots) - 1)
                for s, o, m in zip(out_slots, out, out_masks):
                    values[s] = o
                    masks[s] = m
        return [values[s] for s in self._output_slots], [masks[s] for s in self._output_slots], ctxs

    def _backward(self, ctxs, d_outputs):
        """Backpropagate `d_outputs` (one per output, None for no gradient) through the last
        training forward; adds into the layers' grads and returns the input gradients."""
        grads = [None] * self._n_slots

        def add(s, g):
            grads[s] = g if grads[s] is None else grads[s] + g

        for s, g in zip(self._output_slots, d_outputs):
            if g is not None:
                add(s, g)
        for (node, in_slots, out_slots), ctx in zip(reversed(self._plan), reversed(ctxs)):
            ds = [grads[s] for s in out_slots]
            if all(d is None for d in ds):
                continue
            d_in = node.layer.backward(ctx, ds[0] if node.out_structure == "single" else ds)
            if node.in_structure == "single":
                d_in = [d_in]
            elif d_in is None:
                d_in = [None] * len(in_slots)
            for s, g in zip(in_slots, d_in):
                if g is not None:
                    add(s, g)
            for s in out_slots:            # free what is no longer needed
                grads[s] = None
        return [grads[s] for s in self._input_slots]

    def __call__(self, x, training=False, mask=None):
        """Run the model on arrays (all at once, no batching); returns an array or a list of arrays."""
        if graph.is_symbolic(x):
            raise NotImplementedError(f"{self.name}: calling a model on symbolic tensors (nesting models) is not "
                                      "supported; call its layers instead")
        if mask is not None:
            raise TypeError(f"{self.name}: mask= is not supported; masks come from Embedding(mask_zero=True) "
                            "or Masking inside the model")
        xs = self._standardize_x(x)
        self._ensure_built(xs)
        self._check_inputs(xs)
        outputs, _, _ = self._forward(xs, training=bool(training))
        return outputs[0] if self._single_output else outputs

    # ---- text ----------------------------------------------------------------------------
    def summary(self, line_length=None, positions=None, print_fn=None):
        """Print a table of the layers (name and type, output shape, parameter count) and the totals."""
        from .summary import summary_text
        self._require_built("summary")
        text = summary_text(self, line_length=line_length, positions=positions)
        (print_fn or print)(text)

    def get_config(self):
        """The architecture as a JSON-able dict (layers and graph; no weights)."""
        from .saving import model_config
        return model_config(self)["config"]

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """A new model (freshly drawn weights) from `get_config()`'s dict."""
        from .saving import model_from_config
        name = "Sequential" if issubclass(cls, Sequential) else "Model"
        return model_from_config({"class_name": name, "config": config}, custom_objects=custom_objects)

    def save(self, filepath, include_optimizer=True):
        """Save the architecture, weights, compile configuration and optimizer state to one file."""
        from .saving import save_model
        save_model(self, filepath, include_optimizer=include_optimizer)

    def save_weights(self, filepath):
        """Save the weights alone (with their names, shapes and dtypes) to one file."""
        from .saving import save_weights
        save_weights(self, filepath)

    def load_weights(self, filepath):
        """Load weights saved by `save_weights` (or `save`) into this model; every name, shape and dtype
        is checked before anything changes."""
        from .saving import load_weights
        load_weights(self, filepath)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} built={self.built}>"


def _standardize(x, n, names, who, model_name, kind):
    """A list of `n` arrays from an array, a list/tuple of arrays or a dict by name."""
    if isinstance(x, dict):
        if names is None:
            raise ValueError(f"{model_name}: {who} given as a dict before the model is built")
        unknown = sorted(set(x) - set(names))
        missing = [k for k in names if k not in x]
        if unknown or missing:
            raise ValueError(f"{model_name}: {who} expected a dict with the {kind} names {names}; "
                             f"missing {missing}, unknown {unknown}")
        items = [x[k] for k in names]
    elif isinstance(x, (list, tuple)) and n > 1:
        items = list(x)
    elif isinstance(x, (list, tuple)) and len(x) == 1 and isinstance(x[0], np.ndarray):
        items = [x[0]]
    else:
        items = [x]
    if len(items) != n:
        raise ValueError(f"{model_name}: {who} expected {n} arrays (one per model {kind}), got {len(items)}")
    out = []
    for i, v in enumerate(items):
        if v is None:
            raise ValueError(f"{model_name}: {who} for {kind} {i} is None")
        try:
            arr = np.asarray(v)
        except Exception as exc:
            raise TypeError(f"{model_name}: {who}[{i}] expected an array, got {type(v).__name__} ({exc})") from None
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{model_name}: {who}[{i}] expected a real-valued array, got dtype {arr.dtype}")
        if arr.ndim == 0:
            raise ValueError(f"{model_name}: {who}[{i}] expected an array with a batch axis, got a scalar")
        out.append(arr)
    return out


class Sequential(Model):
    """A linear stack of layers, each with one input and one output.

        model = Sequential([layers.Embedding(1000, 32), layers.LSTM(64), layers.Dense(10)])

    The model builds when its input shape becomes known: from `fastrnn.Input`
    added first, `input_shape=` on the first layer, `build(input_shape)`, or
    the first data it is called, fitted or evaluated on (then the whole shape
    of that data, batch size excepted, is fixed: use `Input((None, F))` for
    sequences of varying length). A layer that returns several outputs
    (`return_state=True`) needs the functional `Model`.
    """

    def __init__(self, layers=None, name=None, seed=None):
        self._init_model(name or _unique_name("sequential"), seed)
        self._stack = []
        self._input_layer = None
        if layers is not None:
            if isinstance(layers, Layer):
                layers = [layers]
            for layer in layers:
                self.add(layer)

    @property
    def layers(self):
        """The stacked layers (without the input layer)."""
        return list(self._stack)

    def _weighted_layers(self):
        return self._stack if self.built else []

    def add(self, layer):
        """Append a layer (or, first, a `fastrnn.Input` tensor / InputLayer)."""
        if isinstance(layer, SymbolicTensor):
            if layer.node is None or not layer.node.is_input:
                raise TypeError(f"{self.name}.add: a symbolic tensor can only be added when it comes from "
                                "fastrnn.Input; use the functional Model for graphs")
            layer = layer.node.layer
        if isinstance(layer, InputLayer):
            if self._stack or self._input_layer is not None:
                raise ValueError(f"{self.name}.add: an Input can only be added first")
            self._input_layer = layer
            return
        if isinstance(layer, Model):
            raise TypeError(f"{self.name}.add: nesting models is not supported; add the model's layers")
        if not isinstance(layer, Layer):
            raise TypeError(f"{self.name}.add: expected a fastrnn Layer, got {type(layer).__name__}")
        if any(l is layer for l in self._stack):
            raise ValueError(f"{self.name}.add: layer {layer.name!r} is already in the model")
        if any(l.name == layer.name for l in self._stack):
            raise ValueError(f"{self.name}.add: a layer named {layer.name!r} is already in the model")
        was_built = self.built
        self._stack.append(layer)
        if was_built or self._input_layer is not None or (len(self._stack) == 1
                                                         and layer._input_shape_arg is not None):
            try:                             # build (or extend) the graph now that the input is known
                self._build_graph(None, None)
            except BaseException:
                self._stack.pop()            # leave the model as it was
                if was_built:
                    self._build_graph(None, None)
                raise

    def pop(self):
        """Remove the last layer (and return it)."""
        if not self._stack:
            raise ValueError(f"{self.name}.pop: the model has no layers")
        layer = self._stack.pop()
        if self.built:
            if self._stack:
                self._build_graph(None, None)
            else:
                self.built = False
        return layer

    def build(self, input_shape=None):
        """Build the model for inputs of `input_shape` (with the batch size first, None = any)."""
        if input_shape is None and self._input_layer is None and not (self._stack and
                                                                        self._stack[0]._input_shape_arg):
            raise ValueError(f"{self.name}.build: input_shape is required")
        if input_shape is not None and not self._stack:      # no layers yet: remember the input
            if self._input_layer is not None:
                raise ValueError(f"{self.name}.build: the model already has an input")
            shape = tuple(input_shape)
            self._input_layer = InputLayer(shape=shape[1:], batch_size=shape[0])
            return
        self._build_graph(None if input_shape is None else tuple(input_shape)[1:], None,
                          batch=None if input_shape is None else tuple(input_shape)[0])

    def _build_graph(self, shape, dtype, batch=None, init_seed=None):
        """(Re)make the graph: an Input, then each layer called in turn."""
        if not self._stack:
            raise ValueError(f"{self.name}: the model has no layers; add some first")
        if self._input_layer is None:
            first = self._stack[0]
            if shape is None:
                if first._input_shape_arg is None:
                    raise ValueError(f"{self.name}: the input shape is unknown")
                shape = first._input_shape_arg
            if dtype is None:
                dtype = first.dtype
            self._input_layer = InputLayer(shape=shape, dtype=dtype, batch_size=batch)
        seed = self.seed if init_seed is None else init_seed
        x = self._input_layer.output
        for k, layer in enumerate(self._stack):
            if not layer.built and seed is not None and getattr(layer, "init_rng", None) is None:
                seed_layer_init(layer, seed, k)
            x = layer(x)
            if not isinstance(x, SymbolicTensor):
                raise ValueError(f"{self.name}: layer {layer.name!r} has {len(x)} outputs; every layer of a "
                                 "Sequential model must have exactly one (use the functional Model for "
                                 "return_state=True and other multi-output layers)")
        self._set_graph(self._input_layer.output, x)

    def _ensure_built(self, xs, seed=None):
        if self.built:
            return
        if seed is None:
            seed = self._pending_init_seed
        x = xs[0]
        dtype = x.dtype if x.dtype.kind in "biu" else None
        self._build_graph((x.shape[1:]), dtype, init_seed=seed)

    def _standardize_x(self, x, who="x"):
        return _standardize(x, 1, self.input_names if self.built else None, who, self.name, kind="input")

    def summary(self, line_length=None, positions=None, print_fn=None):
        if not self.built:
            raise ValueError(f"{self.name}: the model is not built yet, so its output shapes and parameter "
                             "counts are unknown; call build(input_shape), give input_shape= to the first "
                             "layer, start with fastrnn.Input, or call it on data first")
        super().summary(line_length=line_length, positions=positions, print_fn=print_fn)
