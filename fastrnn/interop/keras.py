"""Keras 3 models in fastrnn, and fastrnn weights back to Keras.

    import keras, fastrnn as fr
    from fastrnn.interop.keras import from_keras, to_keras_weights, load_keras_weights_h5

    kmodel = keras.models.load_model("model.keras")      # Sequential or functional
    model = from_keras(kmodel)                            # same layers, same weights
    model.predict(x)                                      # == kmodel.predict(x) (float32: ~1e-6)
    kmodel.set_weights(to_keras_weights(model))           # e.g. after model.fit(...)
    load_keras_weights_h5(model, "model.weights.h5")      # a Keras weights file, into the same architecture

`from_keras(model)` takes a Keras 3 `Sequential` or functional `Model` made of
InputLayer, Dense, Embedding, Dropout, Masking, TimeDistributed, SimpleRNN, GRU
(reset_after True or False), LSTM, Bidirectional, and the merge layers Concatenate and Add. Each layer's config is
mapped to fastrnn's constructor arguments (names and options are Keras's), the
graph is rebuilt (Sequential -> `fastrnn.Sequential`, functional ->
`fastrnn.Model`, with shared layers, several inputs/outputs and
`initial_state=`), and the Keras weights are copied in (fastrnn keeps Keras's
weight names, shapes and order). Layer names are kept. Initializers are not
mapped (the weights are copied); L1/L2/L1L2 regularizers are. A layer class,
option or value fastrnn cannot run the same way raises `ValueError` naming the
layer and the option (e.g. GRU recurrent_activation="hard_sigmoid", constraints,
activity regularizers, nested models, Keras's mixed precision).

`to_keras_weights(model)` is the list for Keras's `model.set_weights` (for a
model from `from_keras`, or any fastrnn model whose Keras twin has the same
layers in the same order); pass `keras_model=` to match layers by name instead
of by order.

`load_keras_weights_h5(model, path)` reads a Keras 3 `.weights.h5` file (from
`keras_model.save_weights`) into a fastrnn model of the same architecture
without Keras, with `h5py` (an optional extra, imported only here). Keras 3
stores the weights under `layers/<snake_case class name>[_<k>]/...`, one group
per layer in `model.layers` order (the k-th layer of a class gets the suffix
`_k`), with the variables in `vars/0..n`, a recurrent layer's in `cell/vars`,
Bidirectional's in `forward_layer/cell/vars` and `backward_layer/cell/vars` and
TimeDistributed's under `layer/`.

Supported (parity with Keras 3 tested on the TensorFlow and torch backends, float32
within 1e-5, float64 within 1e-10 on TensorFlow):

    Keras layer      options mapped
    InputLayer       shape, dtype, batch_size
    Dense            units, activation (any fastrnn.activations name), use_bias, L1/L2 regularizers
    Embedding        input_dim, output_dim, mask_zero
    Dropout          rate, noise_shape, seed
    Masking          mask_value
    TimeDistributed  any supported layer
    SimpleRNN        activation tanh or relu; and, with GRU and LSTM: units, use_bias,
                     return_sequences, return_state, go_backwards, stateful, dropout,
                     recurrent_dropout, seed, zero_output_for_mask, unroll (ignored), L1/L2 regularizers
    GRU              reset_after True or False (recurrent_activation sigmoid, activation tanh)
    LSTM             unit_forget_bias (recurrent_activation sigmoid, activation tanh)
    Bidirectional    merge_mode concat/sum/mul/ave/None, backward_layer, return_state
    Concatenate, Add axis (Concatenate); masks combined as Keras does
    graphs           Sequential; functional with several inputs/outputs, shared layers,
                     initial_state=, training=True at a call

Refused with a ValueError naming the layer and the option: other layer classes
(other merge layers, convolutions, attention...), Keras ops applied to tensors, nested
models, subclassed models, constraints, activity regularizers, other
activations (e.g. GRU recurrent_activation="hard_sigmoid"), mixed precision.

A Keras 3 detail reproduced: a layer called with `initial_state=` tensors does not
get its input's mask from Keras (it has several tensor arguments), so the recurrence
runs over the padded steps too, while its output keeps the mask; the converted
layer drops the mask for such calls (in memory only: `model.save` does not record
this, and a model reloaded from the file masks those steps).

Keras is imported inside the functions only; fastrnn itself never needs it.
"""
import numbers

import numpy as np

__all__ = ["from_keras", "to_keras_weights", "load_keras_weights_h5"]


def _keras():
    try:
        import keras
    except ImportError as exc:  # pragma: no cover - exercised only without keras
        raise ImportError("fastrnn.interop.keras.from_keras needs Keras 3 (pip install keras)") from exc
    if not str(getattr(keras, "__version__", "3")).startswith("3"):
        raise ImportError(f"fastrnn.interop.keras supports Keras 3, found keras {keras.__version__}")
    return keras


# ---------------------------------------------------------------------------
# config mapping

_COMMON_IGNORED = {"name", "trainable", "dtype"}

# Options whose value must be the one given (Keras default / no effect), or the layer is refused.
_MUST_BE_NONE = ("kernel_constraint", "recurrent_constraint", "bias_constraint", "embeddings_constraint",
                 "activity_regularizer", "quantization_config", "lora_rank", "lora_alpha")


def _unsupported(layer, option, value, why=""):
    return ValueError(f"from_keras: layer {layer.name!r} ({type(layer).__name__}): option {option}={value!r} "
                      f"is not supported by fastrnn{': ' + why if why else ''}")


def _dtype_of(layer):
    policy = getattr(layer, "dtype_policy", None)
    name = getattr(policy, "name", None) or getattr(layer, "dtype", "float32")
    compute = getattr(policy, "compute_dtype", name)
    variable = getattr(policy, "variable_dtype", name)
    if compute != variable or str(compute) not in ("float32", "float64"):
        raise _unsupported(layer, "dtype", name, "fastrnn computes in float32 or float64 only")
    return str(compute)


def _regularizer(layer, option, value):
    if value is None:
        return None
    keras = _keras()
    from .. import regularizers
    if isinstance(value, dict):                         # a serialized one, from a config
        value = keras.regularizers.deserialize(value)
    cfg = value.get_config() if hasattr(value, "get_config") else None
    kind = type(value).__name__
    if kind in ("L1", "L2", "L1L2") and isinstance(cfg, dict):
        l1, l2 = float(cfg.get("l1", 0.0) or 0.0), float(cfg.get("l2", 0.0) or 0.0)
        return regularizers.L1L2(l1=l1, l2=l2)
    raise _unsupported(layer, option, value, "only L1, L2 and L1L2 regularizers are mapped")


def _check_rest(layer, cfg, handled):
    """Every config key not handled must be harmless: None/False/0 or in the ignore lists."""
    for key, value in cfg.items():
        if key in handled or key in _COMMON_IGNORED or key.endswith("_initializer"):
            continue
        if key in _MUST_BE_NONE:
            if value is not None:
                raise _unsupported(layer, key, value)
            continue
        if key == "unroll":             # unrolling changes speed, not numbers
            continue
        if value in (None, False) or (isinstance(value, numbers.Number) and value == 0):
            continue
        raise _unsupported(layer, key, value, "unknown option")


def _activation_name(layer, option, value, allowed=None):
    keras = _keras()
    if not isinstance(value, str):
        try:
            value = keras.activations.serialize(value)
        except Exception:                                   # noqa: BLE001
            raise _unsupported(layer, option, value) from None
        if isinstance(value, dict):
            value = value.get("config", value.get("class_name"))
    if not isinstance(value, str):
        raise _unsupported(layer, option, value)
    if allowed is not None and value not in allowed:
        raise _unsupported(layer, option, value, f"the engine runs {' or '.join(map(repr, allowed))}")
    from .. import activations
    try:
        activations.get(value)
    except (TypeError, ValueError):
        raise _unsupported(layer, option, value, "fastrnn.activations has no activation of that name") from None
    return value


def _recurrent_kwargs(layer, cfg, family):
    act = _activation_name(layer, "activation", cfg.get("activation", "tanh"),
                           ("tanh", "relu") if family == "SimpleRNN" else ("tanh",))
    kw = {"units": int(cfg["units"]), "activation": act, "use_bias": bool(cfg.get("use_bias", True)),
          "dropout": float(cfg.get("dropout", 0.0)), "recurrent_dropout": float(cfg.get("recurrent_dropout", 0.0)),
          "return_sequences": bool(cfg.get("return_sequences", False)),
          "return_state": bool(cfg.get("return_state", False)),
          "go_backwards": bool(cfg.get("go_backwards", False)), "stateful": bool(cfg.get("stateful", False)),
          "kernel_regularizer": _regularizer(layer, "kernel_regularizer", cfg.get("kernel_regularizer")),
          "recurrent_regularizer": _regularizer(layer, "recurrent_regularizer", cfg.get("recurrent_regularizer")),
          "bias_regularizer": _regularizer(layer, "bias_regularizer", cfg.get("bias_regularizer"))}
    handled = set(kw) | {"seed", "zero_output_for_mask"}
    seed = cfg.get("seed")
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0:
        kw["seed"] = int(seed)
    if family != "SimpleRNN":
        kw["recurrent_activation"] = _activation_name(layer, "recurrent_activation",
                                                      cfg.get("recurrent_activation", "sigmoid"), ("sigmoid",))
        handled.add("recurrent_activation")
    if family == "GRU":
        kw["reset_after"] = bool(cfg.get("reset_after", True))
        handled.add("reset_after")
    if family == "LSTM":
        kw["unit_forget_bias"] = bool(cfg.get("unit_forget_bias", True))
        handled.add("unit_forget_bias")
    if cfg.get("zero_output_for_mask"):
        kw["zero_output_for_mask"] = True
    _check_rest(layer, cfg, handled)
    return kw


def _convert_layer(layer, memo):
    """A fastrnn layer (not built) with `layer`'s configuration; memo: id(keras layer) -> fastrnn layer."""
    if id(layer) in memo:
        return memo[id(layer)]
    keras = _keras()
    from .. import layers as fl
    L = keras.layers
    kind = type(layer)
    if not isinstance(layer, L.Layer):
        raise ValueError(f"from_keras: operation {getattr(layer, 'name', '?')!r} ({kind.__name__}) is a Keras op "
                         "applied to tensors, not a layer; fastrnn converts layers only")
    cfg = layer.get_config()
    common = {"name": layer.name, "dtype": _dtype_of(layer), "trainable": bool(layer.trainable)}
    if kind is L.Dense:
        out = fl.Dense(int(cfg["units"]), activation=_activation_name(layer, "activation", cfg.get("activation")),
                       use_bias=bool(cfg.get("use_bias", True)),
                       kernel_regularizer=_regularizer(layer, "kernel_regularizer", cfg.get("kernel_regularizer")),
                       bias_regularizer=_regularizer(layer, "bias_regularizer", cfg.get("bias_regularizer")),
                       **common)
        _check_rest(layer, cfg, {"units", "activation", "use_bias", "kernel_regularizer", "bias_regularizer"})
    elif kind is L.Embedding:
        out = fl.Embedding(int(cfg["input_dim"]), int(cfg["output_dim"]), mask_zero=bool(cfg.get("mask_zero")),
                           embeddings_regularizer=_regularizer(layer, "embeddings_regularizer",
                                                               cfg.get("embeddings_regularizer")),
                           **common)
        _check_rest(layer, cfg, {"input_dim", "output_dim", "mask_zero", "embeddings_regularizer",
                                 "input_length"})
    elif kind is L.Dropout:
        seed = cfg.get("seed")
        seed = int(seed) if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0 \
            else None
        out = fl.Dropout(float(cfg["rate"]), noise_shape=cfg.get("noise_shape"), seed=seed, **common)
        _check_rest(layer, cfg, {"rate", "noise_shape", "seed"})
    elif kind is L.Masking:
        out = fl.Masking(float(cfg.get("mask_value", 0.0)), **common)
        _check_rest(layer, cfg, {"mask_value"})
    elif kind in (L.SimpleRNN, L.GRU, L.LSTM):
        out = getattr(fl, kind.__name__)(**_recurrent_kwargs(layer, cfg, kind.__name__), **common)
    elif kind is L.Bidirectional:
        fwd, bwd = layer.forward_layer, layer.backward_layer
        for sub in (fwd, bwd):
            if type(sub) not in (L.SimpleRNN, L.GRU, L.LSTM):
                raise _unsupported(layer, "layer", type(sub).__name__,
                                   "Bidirectional wraps SimpleRNN, GRU or LSTM in fastrnn")
        f = _convert_layer(fwd, {})
        b = _convert_layer(bwd, {})
        # fastrnn's Bidirectional sets zero_output_for_mask itself (as Keras does)
        f.zero_output_for_mask = b.zero_output_for_mask = False
        out = fl.Bidirectional(f, merge_mode=cfg.get("merge_mode", "concat"), backward_layer=b, **common)
        _check_rest(layer, cfg, {"merge_mode", "layer", "backward_layer"})
    elif kind is L.TimeDistributed:
        inner = _convert_layer(layer.layer, {})
        common.pop("trainable")
        out = fl.TimeDistributed(inner, **common)
        _check_rest(layer, cfg, {"layer"})
    elif kind is L.Concatenate:
        out = fl.Concatenate(axis=int(cfg.get("axis", -1)), **common)
        _check_rest(layer, cfg, {"axis"})
    elif kind is L.Add:
        out = fl.Add(**common)
        _check_rest(layer, cfg, set())
    elif isinstance(layer, keras.Model):
        raise ValueError(f"from_keras: layer {layer.name!r} is a nested model ({type(layer).__name__}); "
                         "fastrnn does not nest models: flatten it into one Sequential or functional model")
    else:
        raise ValueError(f"from_keras: layer {layer.name!r}: class {kind.__module__}.{kind.__qualname__} is not "
                         "supported (supported: InputLayer, Dense, Embedding, Dropout, Masking, TimeDistributed, "
                         "SimpleRNN, GRU, LSTM, Bidirectional)")
    memo[id(layer)] = out
    return out


def _copy_weights(klayer, flayer):
    weights = [np.asarray(_keras().ops.convert_to_numpy(w)) for w in klayer.weights]
    mine = flayer.get_weights()
    if len(weights) != len(mine):
        raise ValueError(f"from_keras: layer {klayer.name!r}: Keras has {len(weights)} weights, fastrnn's "
                         f"{flayer.name!r} {len(mine)} ({', '.join(flayer.weight_names())})")
    for i, (w, m) in enumerate(zip(weights, mine)):
        if w.shape != m.shape:
            raise ValueError(f"from_keras: layer {klayer.name!r}: weight {i} ({flayer.weight_names()[i]}) has "
                             f"shape {w.shape} in Keras, {m.shape} in fastrnn")
    flayer.set_weights([w.astype(m.dtype, copy=False) for w, m in zip(weights, mine)])


# ---------------------------------------------------------------------------
# from_keras

def _input_of(ktensor, name):
    import fastrnn as fr
    shape = tuple(ktensor.shape)
    dtype = str(getattr(ktensor, "dtype", "float32"))
    try:
        np.dtype(dtype)
    except TypeError:
        dtype = "float32"
    return fr.Input(shape[1:], dtype=dtype, name=name, batch_size=shape[0])


def from_keras(model):
    """A fastrnn model with `model`'s architecture and weights (see the module docstring).

    `model`: a built Keras 3 `Sequential` or functional `Model`. Returns a
    `fastrnn.Sequential` for a Sequential, else a `fastrnn.Model`. Its
    predictions equal Keras's to float rounding (float32: within 1e-5).
    """
    keras = _keras()
    import fastrnn as fr
    if not isinstance(model, keras.Model):
        raise TypeError(f"from_keras: expected a Keras Sequential or functional Model, got {type(model).__name__}")
    if isinstance(model, keras.Sequential):
        return _from_sequential(model, keras, fr)
    if not hasattr(model, "_operations") or type(model).__name__ not in ("Functional", "Model"):
        raise ValueError(f"from_keras: {model.name!r} is a subclassed Keras model ({type(model).__name__}); "
                         "only Sequential and functional models have a graph fastrnn can read")
    try:
        k_inputs, k_outputs = model.inputs, model.outputs
    except AttributeError:
        k_inputs = k_outputs = None
    if not k_inputs or not k_outputs:
        raise ValueError(f"from_keras: {model.name!r} has no inputs/outputs; build it on keras.Input first")
    return _from_functional(model, keras, fr)


def _from_sequential(model, keras, fr):
    if not model.built:
        raise ValueError(f"from_keras: Sequential {model.name!r} is not built: give it a keras.Input "
                         "(or call build(input_shape)) first")
    memo = {}
    converted = [_convert_layer(l, memo) for l in model.layers]
    inputs = getattr(model, "inputs", None)
    if inputs:
        k_in = inputs[0]
        first = _input_of(k_in, None)
    else:
        shape = tuple(model.layers[0].input.shape) if model.layers else None
        if shape is None:
            raise ValueError(f"from_keras: Sequential {model.name!r} has no layers")
        first = fr.Input(shape[1:], batch_size=shape[0])
    out = fr.Sequential([first, *converted], name=model.name)
    for kl, fl in zip(model.layers, converted):
        _copy_weights(kl, fl)
    out._weights_changed()
    out._forget_unseeded_marks()
    return out


def _from_functional(model, keras, fr):
    memo_layers, tensors, done_nodes = {}, {}, set()
    pairs = []

    def is_ktensor(v):
        return isinstance(v, keras.KerasTensor)

    for k_in in model.inputs:
        op = k_in._keras_history[0]
        tensors[id(k_in)] = _input_of(k_in, op.name)

    def convert_tensor(kt):
        if id(kt) in tensors:
            return tensors[id(kt)]
        op, node_index, tensor_index = kt._keras_history
        node = op._inbound_nodes[node_index]
        if id(node) in done_nodes:
            raise ValueError(f"from_keras: tensor {kt.name!r} of layer {op.name!r} was not produced")
        if type(op).__name__ == "InputLayer":
            raise ValueError(f"from_keras: input {op.name!r} is used but is not among the model's inputs")
        layer = _convert_layer(op, memo_layers)
        if not any(p[0] is op for p in pairs):
            pairs.append((op, layer))
        args = node.arguments.args
        kwargs = dict(node.arguments.kwargs)
        if len(args) != 1:
            raise ValueError(f"from_keras: layer {op.name!r} is called with {len(args)} positional arguments; "
                             "fastrnn layers take one (a tensor or a list)")
        call_kw = {}
        first = args[0][0] if isinstance(args[0], (list, tuple)) and args[0] else args[0]
        for key, value in kwargs.items():
            if key == "initial_state" and value is not None:
                call_kw["initial_state"] = keras.tree.map_structure(
                    lambda v: convert_tensor(v) if is_ktensor(v) else v, value)
            elif key == "training" and isinstance(value, bool):
                # Keras records training=False for calls made outside fit; only an explicit
                # True (Monte-Carlo dropout) is kept, else the model decides
                if value:
                    call_kw["training"] = True
            elif key == "mask" and _is_implicit_mask(value, args[0]):
                continue            # the mask that flows with the input: fastrnn propagates it itself
            elif key in ("training", "initial_state") and value is None:
                continue
            else:
                raise _unsupported(op, f"call argument {key}", value)
        if "initial_state" in call_kw and getattr(first, "_keras_mask", None) is not None \
                and kwargs.get("mask") is None:
            _ignore_mask_with_initial_state(layer)
        x = keras.tree.map_structure(lambda v: convert_tensor(v) if is_ktensor(v) else v, args[0])
        if isinstance(x, tuple):
            x = list(x)
        outs = layer(x, **call_kw)
        flat_out = outs if isinstance(outs, (list, tuple)) else [outs]
        k_outs = list(node.output_tensors)
        if len(flat_out) != len(k_outs):
            raise ValueError(f"from_keras: layer {op.name!r} gives {len(k_outs)} outputs in Keras and "
                             f"{len(flat_out)} in fastrnn")
        for a, b in zip(k_outs, flat_out):
            tensors[id(a)] = b
        done_nodes.add(id(node))
        return tensors[id(kt)]

    # convert in Keras's layer order, so the fastrnn graph runs (and lists) the layers alike
    for op in model._operations:
        if type(op).__name__ == "InputLayer" or not isinstance(op, keras.layers.Layer):
            continue            # ops (e.g. the mask of an Embedding) are converted only if an output needs them
        for index, node in enumerate(op._inbound_nodes):
            outs = list(node.output_tensors)
            if outs and id(node) not in done_nodes and _in_model(model, op, index):
                convert_tensor(outs[0])
    ins = [tensors[id(t)] for t in model.inputs]
    outs = [convert_tensor(t) for t in model.outputs]
    single_in = not isinstance(model._inputs_struct, (list, tuple, dict)) if hasattr(model, "_inputs_struct") \
        else len(ins) == 1
    single_out = not isinstance(model._outputs_struct, (list, tuple, dict)) \
        if hasattr(model, "_outputs_struct") else len(outs) == 1
    out = fr.Model(ins[0] if single_in and len(ins) == 1 else ins,
                   outs[0] if single_out and len(outs) == 1 else outs, name=model.name)
    for kl, fl in pairs:
        _copy_weights(kl, fl)
    out._weights_changed()
    out._forget_unseeded_marks()
    return out


def _is_implicit_mask(mask, x):
    """Is `mask` (a call's recorded mask argument) the mask Keras took from the input `x`?"""
    if mask is None:
        return True
    if isinstance(x, (list, tuple)):
        if not isinstance(mask, (list, tuple)) or len(mask) != len(x):
            return False
        return all(m is None or m is getattr(t, "_keras_mask", None) for m, t in zip(mask, x))
    return mask is getattr(x, "_keras_mask", None)


def _ignore_mask_with_initial_state(layer):
    """Keras 3 quirk, reproduced: a layer called with `initial_state=` tensors has more than one
    tensor argument, and then Keras does not pass it the mask of its input (keras/src/layers/
    layer.py, "Populate mask argument(s)"): the recurrence runs over every step, while the
    output mask is still the input's. fastrnn passes the mask, so the converted layer's
    `forward` drops it for calls given initial states (in this process: `model.save` does
    not record it, a reloaded model masks those steps)."""
    if getattr(layer, "_keras_ignores_mask_with_states", False):
        return
    plain = layer.forward

    def forward(inputs, training=False, mask=None):
        if isinstance(inputs, (list, tuple)) and len(inputs) > 1:
            mask = None
        return plain(inputs, training=training, mask=mask)

    layer.forward = forward
    layer._keras_ignores_mask_with_states = True


def _in_model(model, op, index):
    """Is call `index` of `op` part of `model`'s graph? (A layer may also be called outside it.)"""
    nodes = getattr(model, "_nodes", None)
    if not isinstance(nodes, (set, frozenset)) or not all(isinstance(k, str) for k in nodes):
        return False        # unknown layout: convert only what the outputs need
    return f"{id(op)}_ib-{index}" in nodes


# ---------------------------------------------------------------------------
# back to Keras

def to_keras_weights(model, keras_model=None):
    """The list for Keras's `set_weights` on the Keras twin of `model`.

    fastrnn keeps Keras's weight names, shapes and order (GRU gates z, r, h and
    its (2, 3H) bias with reset_after; Bidirectional: forward then backward), so
    this is `model.get_weights()` as float arrays, after checking that no layer
    has a weight Keras lacks (LSTM peepholes/projection). With `keras_model`,
    the weights are matched layer by layer by name (and shape) and ordered as
    `keras_model.get_weights()`.
    """
    from ..layers import LSTM, Bidirectional, TimeDistributed
    entries = model._weight_entries()
    for layer, name, _ in entries:
        inner = layer.layer if isinstance(layer, TimeDistributed) else layer
        subs = [inner.forward_layer, inner.backward_layer] if isinstance(inner, Bidirectional) else [inner]
        for sub in subs:
            if isinstance(sub, LSTM) and (sub.peepholes or sub.proj_units is not None):
                raise ValueError(f"to_keras_weights: layer {sub.name!r} has "
                                 f"{'peepholes' if sub.peepholes else 'proj_units'}, which Keras's LSTM lacks")
    if keras_model is None:
        return [p.copy() for _, _, p in entries]
    by_name = {}
    for layer in model.layers:
        by_name[layer.name] = layer
    out = []
    for kl in keras_model.layers:
        kw = kl.weights
        if not kw:
            continue
        fl = by_name.get(kl.name)
        if fl is None:
            raise ValueError(f"to_keras_weights: the Keras layer {kl.name!r} has no fastrnn layer of that name")
        mine = fl.get_weights()
        if len(mine) != len(kw) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(mine, kw)):
            raise ValueError(f"to_keras_weights: layer {kl.name!r}: weights "
                             f"{[tuple(w.shape) for w in kw]} in Keras, {[w.shape for w in mine]} in fastrnn")
        out.extend(mine)
    return out


# ---------------------------------------------------------------------------
# .weights.h5

def _snake(name):
    # Keras's naming.to_snake_case
    import re
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    return name


def _h5_vars(group, path):
    """The datasets of group[path]/vars in index order."""
    if path and path not in group:
        raise KeyError(path)
    g = group[path] if path else group
    if "vars" not in g:
        raise KeyError(f"{path}/vars")
    v = g["vars"]
    return [np.asarray(v[str(i)]) for i in range(len(v))]


def _h5_layer_weights(layer, group, where):
    from ..layers import Bidirectional, TimeDistributed
    from ..layers.recurrent import Recurrent
    if isinstance(layer, TimeDistributed):
        return _h5_layer_weights(layer.layer, group["layer"], where + "/layer")
    if isinstance(layer, Bidirectional):
        return (_h5_layer_weights(layer.forward_layer, group["forward_layer"], where + "/forward_layer")
                + _h5_layer_weights(layer.backward_layer, group["backward_layer"], where + "/backward_layer"))
    if isinstance(layer, Recurrent):
        return _h5_vars(group, "cell") + _h5_vars(group, "") if "cell" in group else _h5_vars(group, "")
    return _h5_vars(group, "")


def load_keras_weights_h5(model, path):
    """Load a Keras 3 `.weights.h5` file (`keras_model.save_weights(path)`) into `model`,
    a fastrnn model with the same layers (for example from `from_keras`, or built by hand
    with Keras's layer specification). Needs `h5py`; Keras is not needed.

    The k-th layer of each class (in `model.layers` order, input layers included
    for a functional model as Keras does) reads the group
    `layers/<snake_case class name>[_k]`. Every shape is checked before anything
    changes.
    """
    try:
        import h5py
    except ImportError as exc:
        raise ImportError("load_keras_weights_h5 needs h5py: pip install h5py "
                          "(or fastrnn's 'interop' extra)") from exc
    from ..models.graph import InputLayer
    if not getattr(model, "built", False):
        raise ValueError(f"load_keras_weights_h5: build {model.name!r} first (give it an Input)")
    layers_list = list(model.layers)       # Sequential: without its input layer, as Keras's
    assignments = []
    with h5py.File(path, "r") as f:
        if "layers" not in f:
            raise ValueError(f"load_keras_weights_h5: {path} has no 'layers' group: not a Keras 3 .weights.h5 "
                             "file of a Sequential or functional model")
        root = f["layers"]
        used = {}
        seen = set()
        for layer in layers_list:
            base = _snake(type(layer).__name__)
            if base in used:
                used[base] += 1
                key = f"{base}_{used[base]}"
            else:
                used[base] = 0
                key = base
            seen.add(key)
            names = layer.weight_names()
            if isinstance(layer, InputLayer) or not names:
                continue
            if key not in root:
                raise ValueError(f"load_keras_weights_h5: {path} has no group layers/{key} for layer "
                                 f"{layer.name!r}; groups: {', '.join(sorted(root))}")
            try:
                arrays = _h5_layer_weights(layer, root[key], "layers/" + key)
            except KeyError as exc:
                raise ValueError(f"load_keras_weights_h5: {path}: layers/{key} (for {layer.name!r}) lacks "
                                 f"{exc.args[0]}") from None
            mine = layer.get_weights()
            if len(arrays) != len(mine):
                raise ValueError(f"load_keras_weights_h5: layers/{key} has {len(arrays)} arrays, layer "
                                 f"{layer.name!r} has {len(mine)} weights ({', '.join(names)})")
            for i, (a, m) in enumerate(zip(arrays, mine)):
                if a.shape != m.shape:
                    raise ValueError(f"load_keras_weights_h5: layers/{key} array {i} has shape {a.shape}, "
                                     f"layer {layer.name!r} weight {names[i]} has shape {m.shape}")
            assignments.append((layer, [a.astype(m.dtype, copy=False) for a, m in zip(arrays, mine)]))
        extra = []
        for key in root:
            if key not in seen and any(isinstance(o, h5py.Dataset) for o in _walk(root[key])):
                extra.append(key)
        if extra:
            raise ValueError(f"load_keras_weights_h5: {path} has weights for layers the model lacks: "
                             f"{', '.join(sorted(extra))}")
    for layer, arrays in assignments:
        layer.set_weights(arrays)
    model._weights_changed()
    model._forget_unseeded_marks()


def _walk(group):
    out = []
    group.visititems(lambda n, o: out.append(o))
    return out
