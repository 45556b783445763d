"""Saving and loading models: one zip file, JSON and `.npz` inside, never pickle.

    model.save("model.fastrnn")                 # architecture, weights, compile config, optimizer state
    model = fastrnn.load_model("model.fastrnn")
    model.save_weights("w.fastrnn"); model.load_weights("w.fastrnn")

The file is a zip archive with exactly these entries:

- `config.json` (UTF-8 JSON):
  `{"format": "fastrnn.model" | "fastrnn.weights", "format_version": 1,
    "fastrnn_version": "...", "model": {"class_name": "Sequential" | "Model",
    "config": {...}}, "compile": {...} | null, "weights": [manifest],
    "optimizer": {"class_name", "config", "state": [manifest]} | null}`.
  A manifest entry is `{"key", "layer", "name", "shape", "dtype"}` for a weight
  (`{"key", "name", "shape", "dtype"}` for an optimizer state array); `key`
  is the array's name in the `.npz`. A weights file holds only "format",
  "format_version", "fastrnn_version" and "weights".
- `weights.npz`: the weights, in `model.get_weights()` order.
- `optimizer.npz` (model files whose optimizer has state): `optimizer.get_state()`,
  so that training resumes exactly.

Writing is atomic: the archive is written to a temporary file in the target's
directory, flushed and fsync'ed, then renamed over the target (`os.replace`);
a writer that dies half-way leaves the old file as it was.

Loading trusts nothing: every `np.load` runs with `allow_pickle=False`; zip
entries must be the known names (no absolute paths, no `..`, no duplicates);
sizes are bounded by the manifest; the format name and version, the config's
schema, and each array's position, weight name, shape and dtype against the
rebuilt model are checked before any weight changes. A file that fails any check gives a
`ValueError` naming the file and the problem.
"""
import io
import json
import os
import warnings
import zipfile
import zlib

import numpy as np

from .. import layers as layers_module
from .. import losses as losses_module
from .. import metrics as metrics_module
from .. import optimizers as optimizers_module
from .._files import atomic_write
from . import graph
from .graph import InputLayer, SymbolicTensor

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "model_config", "model_from_config",
           "FORMAT_VERSION"]

FORMAT_VERSION = 1
MODEL_FORMAT = "fastrnn.model"
WEIGHTS_FORMAT = "fastrnn.weights"
_ENTRIES = ("config.json", "weights.npz", "optimizer.npz")
_MAX_CONFIG_BYTES = 64 << 20
_NPZ_SLACK = 1 << 20          # room for the npz's own headers beyond the arrays' bytes
_ALLOWED_DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
                   "uint32", "uint64", "bool")


class _FileError(ValueError):
    pass


def _fail(path, problem):
    raise _FileError(f"{path}: {problem}")


# ---------------------------------------------------------------------------
# Configs

def _tensor_refs(model):
    """id(tensor) -> [layer name, call index, output index] for every tensor of the graph."""
    refs, calls = {}, {}
    for t in model.inputs:
        refs[id(t)] = [t.node.layer.name, 0, 0]
    for node in model._nodes:
        i = calls.get(id(node.layer), 0)
        calls[id(node.layer)] = i + 1
        for t in node.outputs:
            refs[id(t)] = [node.layer.name, i, t.index]
    return refs


def model_config(model):
    """A JSON-able description of `model`'s architecture (layers and graph)."""
    from .model import Sequential
    if isinstance(model, Sequential):
        cfg = {"name": model.name, "seed": model.seed,
               "layers": [layers_module.serialize(l) for l in model._stack],
               "input": None if model._input_layer is None else model._input_layer.get_config()}
        return {"class_name": "Sequential", "config": cfg}
    refs = _tensor_refs(model)
    nodes = [{"layer": node.layer.name, "inputs": [refs[id(t)] for t in node.inputs],
              "structure": node.in_structure, "n_states": node.n_states, "training": node.training}
             for node in model._nodes]
    cfg = {"name": model.name, "seed": model.seed,
           "layers": [layers_module.serialize(l) for l in model._all_layers],
           "nodes": nodes, "inputs": [refs[id(t)] for t in model.inputs],
           "outputs": [refs[id(t)] for t in model.outputs],
           "single_input": model._single_input, "single_output": model._single_output}
    return {"class_name": "Model", "config": cfg}


def _need(cond, what):
    if not cond:
        raise ValueError(what)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check_layer_entry(entry, where):
    _need(isinstance(entry, dict) and isinstance(entry.get("class_name"), str)
          and isinstance(entry.get("config", {}), dict),
          f"{where}: expected {{'class_name': str, 'config': dict}}, got {entry!r:.200}")


def _check_ref(ref, where):
    _need(isinstance(ref, list) and len(ref) == 3 and isinstance(ref[0], str) and _is_int(ref[1])
          and _is_int(ref[2]) and ref[1] >= 0 and ref[2] >= 0,
          f"{where}: expected a tensor reference [layer name, call index, output index], got {ref!r:.200}")
    return tuple(ref)


def model_from_config(config, custom_objects=None):
    """A new model (fresh weights) from `model_config`'s dict."""
    from .model import Model, Sequential, check_seed
    _need(isinstance(config, dict) and config.get("class_name") in ("Sequential", "Model")
          and isinstance(config.get("config"), dict),
          f"model: expected {{'class_name': 'Sequential' or 'Model', 'config': dict}}, got {config!r:.200}")
    cfg = config["config"]
    _need(isinstance(cfg.get("name"), str) and cfg["name"], "model.config.name: expected a non-empty str")
    _need(isinstance(cfg.get("layers"), list), "model.config.layers: expected a list")
    seed = check_seed(cfg.get("seed"), "model.config.seed")
    for i, entry in enumerate(cfg["layers"]):
        _check_layer_entry(entry, f"model.config.layers[{i}]")

    if config["class_name"] == "Sequential":
        model = Sequential(name=cfg["name"])
        if cfg.get("input") is not None:
            _need(isinstance(cfg["input"], dict), "model.config.input: expected a dict or null")
            model.add(InputLayer.from_config(dict(cfg["input"])))
        for entry in cfg["layers"]:
            model.add(layers_module.deserialize(entry, custom_objects=custom_objects))
        model.seed = seed
        return model

    layer_list = [layers_module.deserialize(e, custom_objects=custom_objects) for e in cfg["layers"]]
    by_name = {}
    for layer in layer_list:
        _need(layer.name not in by_name, f"model.config.layers: the name {layer.name!r} is used twice")
        by_name[layer.name] = layer
    tensors = {}
    for layer in layer_list:
        if isinstance(layer, InputLayer):
            tensors[(layer.name, 0, 0)] = layer.output
    calls = {}
    _need(isinstance(cfg.get("nodes"), list), "model.config.nodes: expected a list")
    for k, node in enumerate(cfg["nodes"]):
        where = f"model.config.nodes[{k}]"
        _need(isinstance(node, dict), f"{where}: expected a dict")
        _need(node.get("layer") in by_name, f"{where}.layer: unknown layer {node.get('layer')!r}")
        layer = by_name[node["layer"]]
        _need(not isinstance(layer, InputLayer), f"{where}: an InputLayer cannot be called")
        _need(isinstance(node.get("inputs"), list) and node["inputs"], f"{where}.inputs: expected a non-empty list")
        inputs = []
        for j, ref in enumerate(node["inputs"]):
            key = _check_ref(ref, f"{where}.inputs[{j}]")
            _need(key in tensors, f"{where}.inputs[{j}]: {list(key)} is not an earlier tensor of the graph")
            inputs.append(tensors[key])
        structure, n_states, training = node.get("structure"), node.get("n_states", 0), node.get("training")
        _need(structure in ("single", "list"), f"{where}.structure: expected 'single' or 'list'")
        _need(_is_int(n_states) and 0 <= n_states < len(inputs), f"{where}.n_states: expected an int below "
                                                                   f"the number of inputs")
        _need(training is None or isinstance(training, bool), f"{where}.training: expected null or a bool")
        _need(structure == "list" or len(inputs) == 1, f"{where}: a 'single' node has one input")
        if n_states:
            out = graph.call_layer(layer, inputs[0], initial_state=inputs[1:], training=training)
        else:
            out = graph.call_layer(layer, inputs[0] if structure == "single" else inputs, training=training)
        i = calls.get(layer.name, 0)
        calls[layer.name] = i + 1
        outs = [out] if isinstance(out, SymbolicTensor) else out
        for t in outs:
            tensors[(layer.name, i, t.index)] = t

    def resolve(refs, what):
        _need(isinstance(refs, list) and refs, f"model.config.{what}: expected a non-empty list")
        out = []
        for j, ref in enumerate(refs):
            key = _check_ref(ref, f"model.config.{what}[{j}]")
            _need(key in tensors, f"model.config.{what}[{j}]: {list(key)} is not a tensor of the graph")
            out.append(tensors[key])
        return out

    ins, outs = resolve(cfg.get("inputs"), "inputs"), resolve(cfg.get("outputs"), "outputs")
    single_in, single_out = cfg.get("single_input", len(ins) == 1), cfg.get("single_output", len(outs) == 1)
    _need(isinstance(single_in, bool) and isinstance(single_out, bool), "model.config.single_*: expected bools")
    _need(not single_in or len(ins) == 1, "model.config: single_input with several inputs")
    _need(not single_out or len(outs) == 1, "model.config: single_output with several outputs")
    model = Model(ins[0] if single_in else ins, outs[0] if single_out else outs, name=cfg["name"])
    model.seed = seed
    return model


def _compile_config(model):
    if not model.compiled:
        return None
    model._ensure_compiled()
    return {"optimizer": optimizers_module.serialize(model.optimizer),
            "loss": [None if l is None else losses_module.serialize(l) for l in model._loss_fns],
            "loss_weights": list(model._loss_weights),
            "metrics": [[metrics_module.serialize(m) for m in ms] for ms in model._metric_fns],
            "weighted_metrics": [[metrics_module.serialize(m) for m in ms] for ms in model._weighted_metric_fns]}


def _compile_from_config(model, cfg, custom_objects):
    _need(isinstance(cfg, dict), "compile: expected a dict or null")
    for key in ("loss", "loss_weights", "metrics", "weighted_metrics"):
        _need(isinstance(cfg.get(key), list) and len(cfg[key]) == len(model.outputs),
              f"compile.{key}: expected a list with one entry per output ({len(model.outputs)})")
    _need(isinstance(cfg.get("optimizer"), dict), "compile.optimizer: expected a dict")
    optimizer = optimizers_module.deserialize(cfg["optimizer"], custom_objects=custom_objects)
    loss = [None if l is None else losses_module.deserialize(l, custom_objects=custom_objects) for l in cfg["loss"]]
    mets = []
    for key in ("metrics", "weighted_metrics"):
        per = []
        for ms in cfg[key]:
            _need(isinstance(ms, list), f"compile.{key}: expected a list of lists")
            per.append([metrics_module.deserialize(m, custom_objects=custom_objects) for m in ms])
        mets.append(per)
    model.compile(optimizer=optimizer, loss=loss, loss_weights=cfg["loss_weights"], metrics=mets[0],
                  weighted_metrics=mets[1])
    return optimizer


# ---------------------------------------------------------------------------
# Writing

def _npz_bytes(arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _manifest(model):
    entries, arrays = [], {}
    for k, (layer, name, p) in enumerate(model._weight_entries()):
        key = f"w{k}"
        arrays[key] = p
        entries.append({"key": key, "layer": layer.name, "name": name, "shape": list(p.shape),
                        "dtype": p.dtype.name})
    return entries, arrays


def _write_archive(path, entries):
    """Write a zip of {name: bytes} to `path` atomically (temp file, fsync, rename)."""
    path = os.fspath(path)
    if not isinstance(path, str) or not path:
        raise TypeError(f"filepath: expected a non-empty str or path, got {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a directory; give a file name")
    with atomic_write(path) as f:
        with zipfile.ZipFile(f, "w") as zf:
            for name, data in entries.items():
                compress = zipfile.ZIP_DEFLATED if name.endswith(".json") else zipfile.ZIP_STORED
                zf.writestr(name, data, compress_type=compress)


def _header(fmt):
    from .. import __version__
    return {"format": fmt, "format_version": FORMAT_VERSION, "fastrnn_version": __version__}


def save_model(model, filepath, include_optimizer=True):
    """Write `model` (architecture, weights, compile config, optimizer state) to one file."""
    model._require_built("save")
    config = _header(MODEL_FORMAT)
    config["model"] = model_config(model)
    try:
        config["compile"] = _compile_config(model)
    except (TypeError, ValueError) as exc:
        warnings.warn(f"save: the compile configuration cannot be saved ({exc}); the file holds the model "
                      "without it (compile it again after loading)", RuntimeWarning, stacklevel=3)
        config["compile"] = None
    manifest, arrays = _manifest(model)
    config["weights"] = manifest
    entries = {}
    config["optimizer"] = None
    if config["compile"] is not None:
        config["optimizer"] = {"state": []}
        if include_optimizer:
            state = model.optimizer.get_state()
            opt_arrays = {}
            for k, (name, arr) in enumerate(sorted(state.items())):
                key = f"s{k}"
                opt_arrays[key] = arr
                config["optimizer"]["state"].append({"key": key, "name": name, "shape": list(arr.shape),
                                                     "dtype": arr.dtype.name})
            entries["optimizer.npz"] = _npz_bytes(opt_arrays)
        else:
            config["optimizer"] = None
    text = json.dumps(config, indent=1, allow_nan=False).encode("utf-8")
    entries = {"config.json": text, "weights.npz": _npz_bytes(arrays), **entries}
    _write_archive(filepath, entries)


def save_weights(model, filepath):
    """Write the weights of `model` (with names, shapes and dtypes) to one file."""
    model._require_built("save_weights")
    config = _header(WEIGHTS_FORMAT)
    manifest, arrays = _manifest(model)
    config["weights"] = manifest
    _write_archive(filepath, {"config.json": json.dumps(config, indent=1).encode("utf-8"),
                              "weights.npz": _npz_bytes(arrays)})


# ---------------------------------------------------------------------------
# Reading

def _check_entry_name(path, name):
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        _fail(path, f"refusing the zip entry {name!r}: an absolute path")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        _fail(path, f"refusing the zip entry {name!r}: a path with '..'")
    if name not in _ENTRIES:
        _fail(path, f"unexpected zip entry {name!r}; a fastrnn file holds only {', '.join(_ENTRIES)}")


class _Archive:
    """The checked entries of a fastrnn file: config (dict) and raw bytes of the npz entries."""

    def __init__(self, path):
        self.path = path
        try:
            with zipfile.ZipFile(path, "r") as zf:
                infos = zf.infolist()
                seen = set()
                for info in infos:
                    _check_entry_name(path, info.filename)
                    if info.filename in seen:
                        _fail(path, f"the zip entry {info.filename!r} appears twice")
                    seen.add(info.filename)
                if "config.json" not in seen:
                    _fail(path, "no config.json entry: not a fastrnn model or weights file")
                by_name = {i.filename: i for i in infos}
                if by_name["config.json"].file_size > _MAX_CONFIG_BYTES:
                    _fail(path, f"config.json is {by_name['config.json'].file_size} bytes, more than the "
                                f"limit {_MAX_CONFIG_BYTES}")
                raw = zf.read("config.json")
                try:
                    self.config = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, ValueError) as exc:
                    _fail(path, f"config.json is not valid JSON ({exc})")
                self._check_header()
                self.blobs = {}
                limits = {"weights.npz": self._manifest_bytes(self.config.get("weights"), "weights"),
                          "optimizer.npz": self._manifest_bytes(
                              (self.config.get("optimizer") or {}).get("state", []) if isinstance(
                                  self.config.get("optimizer"), dict) else [], "optimizer.state")}
                for name in ("weights.npz", "optimizer.npz"):
                    if name in by_name:
                        if by_name[name].file_size > limits[name] + _NPZ_SLACK:
                            _fail(path, f"{name} is {by_name[name].file_size} bytes, more than its manifest "
                                        f"allows ({limits[name]} bytes of arrays)")
                        self.blobs[name] = zf.read(name)
        except _FileError:
            raise
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            raise
        except zipfile.BadZipFile as exc:
            _fail(path, f"not a fastrnn file, or a truncated or corrupt one: {exc}")
        except (OSError, EOFError, zlib.error, NotImplementedError, RuntimeError, ValueError, KeyError,
                UnicodeDecodeError, OverflowError) as exc:
            _fail(path, f"corrupt zip archive ({type(exc).__name__}: {exc})")

    def _check_header(self):
        cfg, path = self.config, self.path
        if not isinstance(cfg, dict):
            _fail(path, "config.json: expected a JSON object")
        fmt = cfg.get("format")
        if fmt not in (MODEL_FORMAT, WEIGHTS_FORMAT):
            _fail(path, f"config.json: format expected {MODEL_FORMAT!r} or {WEIGHTS_FORMAT!r}, got {fmt!r:.100} "
                        "(not a fastrnn file)")
        version = cfg.get("format_version")
        if not _is_int(version) or version < 1:
            _fail(path, f"config.json: format_version expected a positive int, got {version!r:.100}")
        if version > FORMAT_VERSION:
            _fail(path, f"format version {version} was written by a newer fastrnn "
                        f"({cfg.get('fastrnn_version')!r:.40}); this one reads up to version {FORMAT_VERSION}")

    def _manifest_bytes(self, manifest, what):
        """Check a manifest's schema; returns the bytes its arrays take."""
        path = self.path
        if not isinstance(manifest, list):
            _fail(path, f"config.json: {what} expected a list, got {type(manifest).__name__}")
        total, keys = 0, set()
        for i, e in enumerate(manifest):
            ok = (isinstance(e, dict) and isinstance(e.get("key"), str) and isinstance(e.get("name"), str)
                  and isinstance(e.get("shape"), list) and all(_is_int(d) and d >= 0 for d in e["shape"])
                  and e.get("dtype") in _ALLOWED_DTYPES and (what != "weights" or isinstance(e.get("layer"), str)))
            if not ok:
                _fail(path, f"config.json: {what}[{i}] expected {{'key', {'layer, ' if what == 'weights' else ''}"
                            f"'name', 'shape', 'dtype'}} with a list of sizes and a numeric dtype, got {e!r:.200}")
            if e["key"] in keys:
                _fail(path, f"config.json: {what}[{i}]: the key {e['key']!r} is used twice")
            keys.add(e["key"])
            n = 1
            for d in e["shape"]:
                n *= d
            total += n * np.dtype(e["dtype"]).itemsize
        return total

    def arrays(self, entry, manifest):
        """The arrays of `entry` (an npz) checked against `manifest`: {key: array}."""
        path = self.path
        if entry not in self.blobs:
            _fail(path, f"the {entry} entry is missing")
        try:
            npz = np.load(io.BytesIO(self.blobs[entry]), allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                _fail(path, f"{entry} is not an .npz archive")
            with npz:
                names = set(npz.files)
                want = {e["key"] for e in manifest}
                if names != want:
                    _fail(path, f"{entry} holds the arrays {sorted(names)[:10]}, its manifest lists "
                                f"{sorted(want)[:10]}")
                out = {}
                for e in manifest:
                    arr = npz[e["key"]]
                    if arr.dtype.hasobject or arr.dtype.name != e["dtype"] or list(arr.shape) != e["shape"]:
                        _fail(path, f"{entry}: array {e['key']} ({e['name']}) has shape {list(arr.shape)} and dtype "
                                    f"{arr.dtype}; the manifest says {e['shape']} and {e['dtype']}")
                    out[e["key"]] = arr
                return out
        except _FileError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, TypeError,
                NotImplementedError, RuntimeError, UnicodeDecodeError, OverflowError) as exc:
            _fail(path, f"cannot read {entry} ({type(exc).__name__}: {exc}); arrays are loaded without "
                        "pickle, and object arrays are refused")


def _matched_weights(archive, model):
    """The archive's weights as a list in `model.get_weights()` order, after checking
    every entry's position, weight name, shape and dtype against the model (layer
    names may differ: weights load into another instance of the architecture)."""
    path = archive.path
    manifest = archive.config["weights"]
    entries = model._weight_entries()
    if len(manifest) != len(entries):
        _fail(path, f"the file holds {len(manifest)} weight arrays, the model {model.name!r} has {len(entries)}")
    for i, (e, (layer, name, p)) in enumerate(zip(manifest, entries)):
        if e["name"] != name:           # layers may be named differently (another instance of the model)
            _fail(path, f"weight {i} is {e['layer']}/{e['name']} in the file, {layer.name}/{name} in the model")
        if tuple(e["shape"]) != p.shape or e["dtype"] != p.dtype.name:
            _fail(path, f"weight {e['layer']}/{e['name']} has shape {tuple(e['shape'])} and dtype {e['dtype']} "
                        f"in the file, shape {p.shape} and dtype {p.dtype} in the model")
    arrays = archive.arrays("weights.npz", manifest)
    return [arrays[e["key"]] for e in manifest]


def load_weights(model, filepath):
    """Load the weights of a model or weights file into `model` (built); all checked first."""
    path = os.fspath(filepath)
    model._require_built("load_weights")
    archive = _Archive(path)
    values = _matched_weights(archive, model)
    model.set_weights(values)


def load_model(filepath, custom_objects=None, compile=True):
    """The model saved in `filepath` by `model.save`, with its weights, and (when
    `compile`) compiled as it was, optimizer state included.

    `custom_objects` maps class names to your own Layer, Loss, Metric or Optimizer classes.
    """
    path = os.fspath(filepath)
    archive = _Archive(path)
    cfg = archive.config
    if cfg["format"] != MODEL_FORMAT:
        _fail(path, f"this is a weights file ({cfg['format']}); build the model and call load_weights")
    try:
        model = model_from_config(cfg.get("model"), custom_objects=custom_objects)
        values = _matched_weights(archive, model)
        optimizer = None
        if compile and cfg.get("compile") is not None:
            optimizer = _compile_from_config(model, cfg["compile"], custom_objects)
    except _FileError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        _fail(path, f"invalid model configuration: {exc}")
    model.set_weights(values)
    if optimizer is not None and isinstance(cfg.get("optimizer"), dict):
        manifest = cfg["optimizer"].get("state", [])
        if manifest:
            arrays = archive.arrays("optimizer.npz", manifest)
            state = {e["name"]: arrays[e["key"]] for e in manifest}
            try:
                optimizer.set_state(state)
                optimizer.build(model._trainable_pairs()[0])
            except (ValueError, TypeError) as exc:
                _fail(path, f"the optimizer state does not fit the model: {exc}")
    return model
