#!/usr/bin/env python
"""Side-by-side timing of fastrnn against PyTorch, ONNX Runtime and TensorFlow/Keras.

    python benchmarks/compare.py [--threads N ...] [--quick] [--memory]
                                 [--json out.json] [--markdown out.md] [--png out.png]
    python benchmarks/compare.py --kinds onnx      # ONNX models: fastrnn's session vs onnxruntime's

Every engine runs in its own subprocess (this script re-invokes itself with
`--worker`), so thread pools never share a process. Within one thread count the
engines run one after another; `--rounds R` repeats that R times, alternating
the order, and pools the samples.

Each engine gets its best case at the same thread count n:
- fastrnn: `num_threads=n` (and `fastrnn.set_num_threads(n)` for backward);
- PyTorch: `torch.set_num_threads(n)`, `torch.inference_mode()` for inference;
- ONNX Runtime (inference only): the RNN/GRU/LSTM operator built with onnx.helper,
  `intra_op_num_threads=n`, `inter_op_num_threads=1`, sequential execution, all
  graph optimisations;
- TensorFlow/Keras: keras.layers.SimpleRNN / GRU(reset_after=True) / LSTM (and
  Bidirectional) called inside a `tf.function`, intra- and inter-op pools of n
  threads. Keras layers are batch-major, so x is handed over as (B, T, I),
  transposed once before timing.
OMP/MKL/OpenBLAS pools of every worker are capped to n through the environment.

Rows (B, T, I, H), float32, time-major, random inputs, zero initial state;
every engine sees the same arrays:
- grid: {RNN tanh, GRU, LSTM} x the shapes in SHAPES x {inference, training};
  inference = one forward (fastrnn `training=False`); training = forward +
  backward of sum(y) with dx and all weight and bias gradients;
- latency: one step (T=1, B=1, I=H=256) of each cell, inference;
- overhead: one step (T=1, B=1, I=H=64) of each cell through the functional
  API, in microseconds per call (issue 3's target: under 10 us);
- bilstm: a 2-layer bidirectional LSTM (B=32, T=100, I=H=256), inference and
  training. fastrnn has no stacked API in `functional`; the composition of
  F.lstm_forward / F.lstm_backward calls that it is timed with is
  `stacked_lstm_forward` / `stacked_lstm_backward` below;
- gemm: the two large hoisted products of an LSTM layer, timed through fastrnn's
  private `_engine.gemm` against torch.matmul: "proj" = x (T*B, I) @ w_ih^T,
  "wgrad" = dG^T (G*H, T*B) @ x (T*B, I);
- onnx: the same ONNX model (`onnx_model`: one LSTM or GRU node built with onnx.helper,
  B=1 and B=32, T=100, I=128, H=256), run through `fastrnn.interop.onnx.InferenceSession`
  (as fastrnn) and `onnxruntime.InferenceSession` (the only peer on these rows), inference.

FLOPs = 2*B*T*(I+H)*G*H for a forward of one layer and direction (summed over
layers and directions), 3x that for training; 2*M*N*K for a GEMM.

Before timing, every engine's results on each row are checked against an oracle
(the first peer in ENGINE_ORDER that runs the row: torch, else onnxruntime or
tensorflow; fastrnn.reference on small rows when no peer runs it). A mismatch
is printed loudly and that row is not timed for that engine.

Per row: each engine's median; fastrnn's speed-up over the best peer and over
PyTorch (peer time / fastrnn time: above 1 means fastrnn is faster); fastrnn's
GFLOP/s and its percentage of the machine's fp32 FMA peak, measured at the same
thread count by benchmarks/fma_peak.c (compiled here at run time with the system
C compiler); and for inference rows with B <= 4 the weight bandwidth
GB/s = (G*H*(I+H)*4 bytes * T) / time, summed over layers and directions: each
step reads w_ih and w_hh once.

`--memory` also measures training memory: for each training row and engine, a
fresh process imports the engine, allocates the inputs and sets the engine up
(module, weights, traced graph), then resets the peak-RSS mark; the number is the
peak RSS during one training step minus the RSS just before it (VmHWM from
/proc/self/status, the figure ru_maxrss reports, which unlike ru_maxrss can be
reset; ru_maxrss where /proc is missing).

The machine may be shared: the report gives how busy the CPUs were just before the
start, and for each engine's worker the CPU time other processes used meanwhile (in
cores); above 0.1 it warns that those timings are unreliable (with one core taken,
a 2-thread run that synchronises every step can slow down a hundredfold).

Adding an engine: write `prepare(row, data, threads) -> (step, outputs)` and a
`versions()` function (and optionally `init(threads)` and `supports(row)`),
register them in ENGINES and add the name to ENGINE_ORDER.
"""
import argparse
import gc
import importlib
import importlib.util
import json
import math
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
if importlib.util.find_spec("fastrnn") is None:  # running from a checkout that is not installed
    sys.path.insert(0, ROOT)

GATES = {"rnn_tanh": 1, "gru": 3, "lstm": 4}
CELL_NAMES = {"rnn_tanh": "RNN tanh", "gru": "GRU", "lstm": "LSTM"}
MODES = ("inference", "training")
KINDS = ("grid", "latency", "overhead", "bilstm", "gemm", "onnx")
KIND_TITLES = {
    "grid": "Grid",
    "latency": "Single-step latency (T=1, B=1, I=H=256), functional API, microseconds",
    "overhead": "Single-step call overhead (T=1, B=1, I=H=64), functional API, microseconds per call",
    "bilstm": "2-layer bidirectional LSTM (fastrnn: `stacked_lstm_forward/backward` in this file)",
    "gemm": "Hoisted GEMMs of an LSTM layer (fastrnn private `_engine.gemm` vs torch.matmul)",
    "onnx": "ONNX models (onnx.helper): fastrnn.interop.onnx.InferenceSession vs onnxruntime.InferenceSession",
}
SHAPES = [(1, 100, 64, 128), (1, 100, 256, 512), (16, 100, 128, 256),
          (64, 50, 256, 512), (128, 50, 512, 1024)]                      # (B, T, I, H)
QUICK_SHAPES = [(1, 100, 64, 128), (16, 100, 128, 256), (64, 50, 256, 512)]
LATENCY_SHAPE = (1, 1, 256, 256)
OVERHEAD_SHAPE = (1, 1, 64, 64)
BILSTM_SHAPE = (32, 100, 256, 256)
GEMM_SHAPES = [(64, 50, 256, 512), (128, 50, 512, 1024)]                 # LSTM layers
ONNX_SHAPES = [(1, 100, 128, 256), (32, 100, 128, 256)]                  # LSTM and GRU models
VERIFY_TOL = 1e-3          # max |a - b| / max |oracle|, float32
REFERENCE_MAX_GFLOP = 5.0  # without a peer, fastrnn.reference checks only rows this small
SAMPLE = 1 << 16           # elements kept per array for the cross-process check
OTHERS_WARN = 0.1          # cores used by other processes during a worker that make the report warn
BUSY_WARN = 0.15           # CPU busy fraction (all cores, 1 s before the start) that makes the report warn
BATCH_S = 1e-3             # calls faster than this are timed in batches of about this long
PARAMS = ("w_ih", "w_hh", "b_ih", "b_hh")

# gate order of the peers, as indices into PyTorch's (RNN: -; GRU: r, z, n; LSTM: i, f, g, o)
ONNX_GATES = {"rnn_tanh": [0], "gru": [1, 0, 2], "lstm": [0, 3, 1, 2]}   # GRU z,r,h; LSTM i,o,f,c
KERAS_GATES = {"rnn_tanh": [0], "gru": [1, 0, 2], "lstm": [0, 1, 2, 3]}  # GRU z,r,h; LSTM i,f,c,o


@dataclass(frozen=True)
class Row:
    cell: str
    mode: str      # inference | training; for gemm rows: proj | wgrad
    B: int
    T: int
    I: int
    H: int
    kind: str = "grid"
    layers: int = 1
    directions: int = 1

    @property
    def key(self):
        base = f"{self.cell}-{self.mode}-{self.B}x{self.T}x{self.I}x{self.H}"
        return base if self.kind == "grid" else f"{self.kind}-{base}"

    @property
    def stacked(self):
        return self.layers > 1 or self.directions > 1

    @property
    def training(self):
        return self.mode == "training"

    def layer_inputs(self):
        """Input size of each layer."""
        return [self.I if l == 0 else self.directions * self.H for l in range(self.layers)]

    @property
    def flops(self):
        G, H = GATES[self.cell], self.H
        if self.kind == "gemm":
            return 2.0 * self.T * self.B * self.I * G * H
        f = sum(2.0 * self.B * self.T * (I + H) * G * H * self.directions for I in self.layer_inputs())
        return 3 * f if self.training else f

    @property
    def weight_bytes(self):
        """Bytes of w_ih and w_hh read over the sequence, one read per step (float32)."""
        G, H = GATES[self.cell], self.H
        return sum(G * H * (I + H) * 4.0 * self.T * self.directions for I in self.layer_inputs())

    @property
    def unit(self):
        return "us" if self.kind in ("latency", "overhead") else "ms"

    @property
    def label(self):
        mode = {"inference": "inf", "training": "train"}.get(self.mode, self.mode)
        name = "2x bi-LSTM" if self.kind == "bilstm" else CELL_NAMES[self.cell]
        if self.kind == "onnx":
            name = "ONNX " + name
        if self.kind == "gemm":
            name = "GEMM " + CELL_NAMES[self.cell]
        tag = f" ({self.kind})" if self.kind in ("latency", "overhead") else ""
        return f"{name} {mode} {self.B}x{self.T}x{self.I}x{self.H}{tag}"


def suffixes(row):
    """Parameter-name suffixes, one per layer and direction, in PyTorch's order."""
    if not row.stacked:
        return [""]
    return [f"_l{l}" + ("_reverse" if d else "") for l in range(row.layers) for d in range(row.directions)]


def make_data(row, seed=1234):
    """The inputs of one row, identical in every process: PyTorch layout, float32."""
    G, H, I = GATES[row.cell], row.H, row.I
    f32 = np.float32
    if row.kind == "gemm":
        rng = np.random.default_rng([seed, 99, G, row.B, row.T, I, H])
        M = row.T * row.B
        if row.mode == "proj":
            return {"x": rng.standard_normal((M, I), dtype=f32),
                    "w_ih": rng.uniform(-1, 1, (G * H, I)).astype(f32)}
        return {"dg": rng.standard_normal((M, G * H), dtype=f32),
                "x": rng.standard_normal((M, I), dtype=f32)}
    rng = np.random.default_rng([seed, G, row.B, row.T, I, H, row.layers, row.directions])
    k = 1.0 / np.sqrt(H)
    data = {"x": rng.standard_normal((row.T, row.B, I), dtype=f32)}
    sfx = suffixes(row)
    for l, I_l in enumerate(row.layer_inputs()):
        for s in sfx[l * row.directions:(l + 1) * row.directions]:
            data["w_ih" + s] = rng.uniform(-k, k, (G * H, I_l)).astype(f32)
            data["w_hh" + s] = rng.uniform(-k, k, (G * H, H)).astype(f32)
            data["b_ih" + s] = rng.uniform(-k, k, (G * H,)).astype(f32)
            data["b_hh" + s] = rng.uniform(-k, k, (G * H,)).astype(f32)
    return data


def _sample(arr):
    """A deterministic subsample of `arr` (all of it when small) for the cross-process check."""
    flat = np.ascontiguousarray(arr, dtype=np.float32).ravel()
    if flat.size <= SAMPLE:
        return flat
    idx = np.random.default_rng(flat.size).choice(flat.size, SAMPLE, replace=False)
    return flat[np.sort(idx)]


def _reorder(a, perm):
    """Permute the gate blocks of a (G*H, ...) array: block k of the result is block perm[k]."""
    G = len(perm)
    return np.ascontiguousarray(a.reshape(G, -1, *a.shape[1:])[perm].reshape(a.shape))


# ----------------------------------------------------------------------------------------------
# Engines. A worker function `prepare(row, data, threads)` returns (step, outputs):
#   step()    -- the call to time (inference: one forward; training: forward + backward);
#   outputs() -- runs the row once and returns a dict of NumPy arrays with keys
#                y, h_n, (c_n), and for training dx and d<param><suffix> for every parameter
#                (dw_ih, dw_hh, db_ih, db_hh; dw_ih_l0_reverse, ... when stacked); gemm rows: c.
# `versions()` returns a dict of version strings, raising ImportError when unavailable.
# `init(threads)` runs once per worker process before any row. All run only in workers.


# -- fastrnn -------------------------------------------------------------------------------------


def stacked_lstm_forward(F, x, params, layers, directions, training, num_threads, packed=None):
    """A stacked (bi)directional LSTM, as PyTorch's nn.LSTM(num_layers, bidirectional),
    composed of single-layer, single-direction F.lstm_forward calls.

    params: w_ih_l{l}, w_hh_l{l}, b_ih_l{l}, b_hh_l{l} (and ..._reverse) in PyTorch layout;
    packed: optional {suffix: F.pack_weights(...)} for inference with weights packed once.
    Layer l runs its forward direction and its reverse direction (reverse=True) over the same
    input, one after the other; their outputs (T, B, H) are concatenated to (T, B, 2H), the
    input of layer l+1. Returns y (T, B, D*H), h_n and c_n (layers*D, B, H) in PyTorch's
    order, and the caches [[cache per direction] per layer] for stacked_lstm_backward.
    """
    inp, hs, cs, caches = x, [], [], []
    for l in range(layers):
        ys, layer_caches = [], []
        for d in range(directions):
            s = f"_l{l}" + ("_reverse" if d else "")
            y, (h, c), cache = F.lstm_forward(
                inp, None, params["w_ih" + s], params["w_hh" + s], params["b_ih" + s], params["b_hh" + s],
                reverse=bool(d), training=training, num_threads=num_threads,
                **({"packed": packed[s]} if packed else {}))
            ys.append(y)
            hs.append(h)
            cs.append(c)
            layer_caches.append(cache)
        inp = ys[0] if directions == 1 else np.concatenate(ys, axis=2)
        caches.append(layer_caches)
    return inp, np.stack(hs), np.stack(cs), caches


def stacked_lstm_backward(F, dy, caches, H):
    """Gradients of stacked_lstm_forward for the output gradient dy (T, B, D*H), no final-state
    gradients. From the top layer down: split dy into one (T, B, H) slice per direction, run
    F.lstm_backward for each direction, and sum the directions' dx: that is the dy of the layer
    below. Returns a dict with x and every w_ih<suffix>, w_hh.., b_ih.., b_hh.. ."""
    grads = {}
    for l in reversed(range(len(caches))):
        dx = None
        for d, cache in enumerate(caches[l]):
            s = f"_l{l}" + ("_reverse" if d else "")
            g = F.lstm_backward(dy[:, :, d * H:(d + 1) * H], (None, None), cache)
            for p in PARAMS:
                grads[p + s] = g[p]
            dx = g["x"] if dx is None else dx + g["x"]
        dy = dx
    grads["x"] = dy
    return grads


def _fastrnn_versions(module="fastrnn.functional"):
    import fastrnn
    importlib.import_module(module)
    v = {"fastrnn": fastrnn.__version__, "fastrnn module": module}
    try:
        v["isa"] = fastrnn.simd_isa()
        v["openmp"] = str(fastrnn.openmp_enabled())
    except AttributeError:
        pass
    return v


def _fastrnn_prepare(row, data, threads, module="fastrnn.functional"):
    import fastrnn
    F = importlib.import_module(module)
    fastrnn.set_num_threads(threads)  # backward takes no num_threads argument
    if row.kind == "onnx":
        return _fastrnn_onnx_prepare(row, data)
    if row.kind == "gemm":
        return _fastrnn_gemm_prepare(row, data, threads, module)
    if row.stacked:
        return _fastrnn_stacked_prepare(F, row, data, threads)
    family = "rnn" if row.cell.startswith("rnn") else row.cell
    forward, backward = getattr(F, family + "_forward"), getattr(F, family + "_backward")
    args = (data["x"], None, data["w_ih"], data["w_hh"], data["b_ih"], data["b_hh"])
    kw = {"num_threads": threads}
    if row.cell == "rnn_tanh":
        kw["nonlinearity"] = "tanh"
    dy = np.ones((row.T, row.B, row.H), np.float32)
    dstate = (None, None) if row.cell == "lstm" else None

    if row.training:
        def step():
            y, _, cache = forward(*args, training=True, **kw)
            return backward(dy, dstate, cache)
    else:
        # Inference runs as a layer runs it: weights packed once, while they are unchanged
        # (ONNX Runtime likewise prepares its weights when the session is made).
        if hasattr(F, "pack_weights"):
            kw["packed"] = F.pack_weights(family, data["w_ih"], data["w_hh"], num_threads=threads)

        def step():
            return forward(*args, training=False, **kw)

    def outputs():
        y, hn, cache = forward(*args, training=row.training, **kw)
        out = {"y": y}
        if row.cell == "lstm":
            out["h_n"], out["c_n"] = hn
        else:
            out["h_n"] = hn
        if row.training:
            g = backward(dy, dstate, cache)
            out.update({"d" + k: g[k] for k in ("x",) + PARAMS})
        return out

    return step, outputs


def _session_runner(sess, feed):
    """step() and outputs() of an ONNX Runtime-style session (fastrnn's or onnxruntime's)."""
    names = [o.name for o in sess.get_outputs()]

    def step():
        return sess.run(None, feed)

    def outputs():
        return dict(zip(names, sess.run(None, feed)))

    return step, outputs


def _fastrnn_onnx_prepare(row, data):
    """The row's ONNX model in fastrnn.interop.onnx.InferenceSession (threads: the global setting)."""
    from fastrnn.interop.onnx import InferenceSession
    sess = InferenceSession(onnx_model(row, data).SerializeToString())
    return _session_runner(sess, {"x": data["x"]})


def _fastrnn_stacked_prepare(F, row, data, threads):
    if row.cell != "lstm":
        raise NotImplementedError("stacked rows are LSTM only")
    dy = np.ones((row.T, row.B, row.directions * row.H), np.float32)
    packed = None
    if not row.training and hasattr(F, "pack_weights"):      # inference: weights packed once, as a layer does
        packed = {}
        for l in range(row.layers):
            for d in range(row.directions):
                sfx = f"_l{l}" + ("_reverse" if d else "")
                packed[sfx] = F.pack_weights("lstm", data["w_ih" + sfx], data["w_hh" + sfx], num_threads=threads)

    def forward(training):
        return stacked_lstm_forward(F, data["x"], data, row.layers, row.directions, training, threads,
                                    packed=None if training else packed)

    if row.training:
        def step():
            *_, caches = forward(True)
            return stacked_lstm_backward(F, dy, caches, row.H)
    else:
        def step():
            return forward(False)

    def outputs():
        y, h_n, c_n, caches = forward(row.training)
        out = {"y": y, "h_n": h_n, "c_n": c_n}
        if row.training:
            out.update({"d" + k: v for k, v in stacked_lstm_backward(F, dy, caches, row.H).items()})
        return out

    return step, outputs


def _fastrnn_gemm_prepare(row, data, threads, module):
    if module != "fastrnn.functional":
        raise NotImplementedError(f"no GEMM in {module}")
    from fastrnn import _engine
    if row.mode == "proj":
        a, b = data["x"], data["w_ih"].T            # (T*B, I) @ (I, G*H), b a strided view
    else:
        a, b = data["dg"].T, data["x"]              # (G*H, T*B) @ (T*B, I), a a strided view
    c = np.empty((a.shape[0], b.shape[1]), np.float32)

    def step():
        _engine.gemm(c, a, b, False, threads)

    def outputs():
        step()
        return {"c": c.copy()}

    return step, outputs


# -- PyTorch --------------------------------------------------------------------------------------


def _torch_versions():
    import torch
    v = {"torch": torch.__version__}
    for line in torch.__config__.show().splitlines():
        line = line.strip(" -")
        if "Math Kernel Library" in line:
            v["MKL"] = line.split("Version")[-1].split("-Product")[0].strip()
        elif "MKL-DNN" in line or "oneDNN" in line:
            m = re.search(r"v(\d+(?:\.\d+)+)", line)
            v["oneDNN"] = m.group(1) if m else line
    return v


def _torch_init(threads):
    import torch
    torch.set_num_threads(threads)


def _torch_param(p, s):
    return {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}[p] + (s or "_l0")


def _torch_prepare(row, data, threads):
    import torch
    if row.kind == "gemm":
        return _torch_gemm_prepare(row, data)
    cls = {"rnn_tanh": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[row.cell]
    mod = cls(row.I, row.H, num_layers=row.layers, bidirectional=row.directions == 2)
    names = [(p + s, _torch_param(p, s)) for s in suffixes(row) for p in PARAMS]
    with torch.no_grad():
        for ours, theirs in names:
            getattr(mod, theirs).copy_(torch.from_numpy(data[ours]))
    params = list(mod.parameters())
    x = torch.from_numpy(data["x"])

    if row.training:
        x = x.clone().requires_grad_(True)  # fastrnn always returns dx: same work

        def step():
            x.grad = None
            for p in params:
                p.grad = None
            y, _ = mod(x)
            y.sum().backward()
    else:
        mod.eval()

        def step():
            with torch.inference_mode():
                return mod(x)

    def outputs():
        step()
        with torch.inference_mode():
            y, hn = mod(x.detach())
        out = {"y": y.numpy()}
        h, c = hn if row.cell == "lstm" else (hn, None)
        out["h_n"] = (h if row.stacked else h[0]).numpy()
        if c is not None:
            out["c_n"] = (c if row.stacked else c[0]).numpy()
        if row.training:
            out["dx"] = x.grad.numpy()
            for ours, theirs in names:
                out["d" + ours] = getattr(mod, theirs).grad.numpy()
        return out

    return step, outputs


def _torch_gemm_prepare(row, data):
    import torch
    if row.mode == "proj":
        a, b = torch.from_numpy(data["x"]), torch.from_numpy(data["w_ih"]).t()
    else:
        a, b = torch.from_numpy(data["dg"]).t(), torch.from_numpy(data["x"])
    c = torch.empty((a.shape[0], b.shape[1]), dtype=torch.float32)

    def step():
        with torch.inference_mode():
            torch.matmul(a, b, out=c)

    def outputs():
        step()
        return {"c": c.numpy().copy()}

    return step, outputs


# -- ONNX Runtime ---------------------------------------------------------------------------------


def _ort_versions():
    import onnx
    import onnxruntime
    return {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__}


def onnx_model(row, data, opset=17):
    """The ONNX graph of a row: one RNN/GRU/LSTM node per layer (both directions in one node when
    bidirectional), weights converted from PyTorch's layout and gate order as initializers.

    ONNX layouts: W (D, G*H, I), R (D, G*H, H), B (D, 2*G*H) = [Wb, Rb]; gate order RNN -,
    GRU z,r,h (linear_before_reset=1 is PyTorch's GRU), LSTM i,o,f,c. Y (T, D, B, H) becomes
    (T, B, D*H); h_n and c_n are (B, H) for one layer and direction, else (layers*D, B, H).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    op = {"rnn_tanh": "RNN", "gru": "GRU", "lstm": "LSTM"}[row.cell]
    perm, D, H = ONNX_GATES[row.cell], row.directions, row.H
    nodes = []
    inits = [numpy_helper.from_array(np.array([1], np.int64), "axes1"),
             numpy_helper.from_array(np.array([0], np.int64), "axes0"),
             numpy_helper.from_array(np.array([0, 0, -1], np.int64), "shape_tb_")]
    sfx = suffixes(row)
    inp, hs, cs = "x", [], []
    for l in range(row.layers):
        layer_sfx = sfx[l * D:(l + 1) * D]
        W = np.stack([_reorder(data["w_ih" + s], perm) for s in layer_sfx])
        R = np.stack([_reorder(data["w_hh" + s], perm) for s in layer_sfx])
        Bias = np.stack([np.concatenate([_reorder(data["b_ih" + s], perm), _reorder(data["b_hh" + s], perm)])
                         for s in layer_sfx])
        inits += [numpy_helper.from_array(W, f"W{l}"), numpy_helper.from_array(R, f"R{l}"),
                  numpy_helper.from_array(Bias, f"B{l}")]
        attrs = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
        if row.cell == "rnn_tanh":
            attrs["activations"] = ["Tanh"] * D
        elif row.cell == "gru":
            attrs["linear_before_reset"] = 1
        outs = [f"Y{l}", f"Yh{l}"] + ([f"Yc{l}"] if row.cell == "lstm" else [])
        nodes.append(helper.make_node(op, [inp, f"W{l}", f"R{l}", f"B{l}"], outs, **attrs))
        last = l == row.layers - 1
        out = "y" if last else f"out{l}"
        if D == 1:
            nodes.append(helper.make_node("Squeeze", [f"Y{l}", "axes1"], [out]))
        else:
            nodes.append(helper.make_node("Transpose", [f"Y{l}"], [f"Yt{l}"], perm=[0, 2, 1, 3]))
            nodes.append(helper.make_node("Reshape", [f"Yt{l}", "shape_tb_"], [out]))
        inp = out
        hs.append(f"Yh{l}")
        cs.append(f"Yc{l}")
    n_states = 2 if row.cell == "lstm" else 1
    for name, parts in (("h_n", hs), ("c_n", cs))[:n_states]:
        if row.stacked:
            nodes.append(helper.make_node("Concat", parts, [name], axis=0))
        else:
            nodes.append(helper.make_node("Squeeze", [parts[0], "axes0"], [name]))
    f32 = TensorProto.FLOAT
    state_shape = [row.layers * D, row.B, H] if row.stacked else [row.B, H]
    outputs = [helper.make_tensor_value_info("y", f32, [row.T, row.B, D * H])]
    outputs += [helper.make_tensor_value_info(n, f32, state_shape) for n in ("h_n", "c_n")[:n_states]]
    graph = helper.make_graph(nodes, f"fastrnn_bench_{row.cell}",
                              [helper.make_tensor_value_info("x", f32, [row.T, row.B, row.I])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="fastrnn-benchmarks")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _ort_prepare(row, data, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(onnx_model(row, data).SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return _session_runner(sess, {"x": data["x"]})


# -- TensorFlow / Keras ---------------------------------------------------------------------------


def _tf_versions():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf
    return {"tensorflow": tf.__version__, "keras": keras.__version__}


def _tf_init(threads):
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _keras_layer(keras, cell, H):
    kw = {"return_sequences": True, "return_state": True}
    if cell == "rnn_tanh":
        return keras.layers.SimpleRNN(H, activation="tanh", **kw)
    if cell == "gru":
        return keras.layers.GRU(H, reset_after=True, **kw)
    return keras.layers.LSTM(H, **kw)


def _to_keras(cell, data, s):
    """[kernel (I, G*H), recurrent_kernel (H, G*H), bias] in Keras's gate order from PyTorch's.
    Keras has one bias (G*H,) for SimpleRNN and LSTM (b_ih + b_hh) and (2, G*H) for GRU."""
    perm = KERAS_GATES[cell]
    kernel = np.ascontiguousarray(_reorder(data["w_ih" + s], perm).T)
    rkernel = np.ascontiguousarray(_reorder(data["w_hh" + s], perm).T)
    if cell == "gru":
        bias = np.stack([_reorder(data["b_ih" + s], perm), _reorder(data["b_hh" + s], perm)])
    else:
        bias = _reorder(data["b_ih" + s] + data["b_hh" + s], perm)
    return [kernel, rkernel, bias]


def _from_keras_grads(cell, s, dkernel, drkernel, dbias):
    inv = list(np.argsort(KERAS_GATES[cell]))
    out = {"dw_ih" + s: _reorder(dkernel.T, inv), "dw_hh" + s: _reorder(drkernel.T, inv)}
    if cell == "gru":
        out["db_ih" + s], out["db_hh" + s] = _reorder(dbias[0], inv), _reorder(dbias[1], inv)
    else:  # one bias: its gradient is both b_ih's and b_hh's
        out["db_ih" + s] = out["db_hh" + s] = _reorder(dbias, inv)
    return out


def _tf_prepare(row, data, threads):
    import keras
    import tensorflow as tf
    H, D = row.H, row.directions
    n_state = 2 if row.cell == "lstm" else 1
    sfx = suffixes(row)
    stack, cells = [], []   # keras layers; (suffix, keras cell) per layer and direction
    for l, I_l in enumerate(row.layer_inputs()):
        if D == 1:
            layer = _keras_layer(keras, row.cell, H)
            layer.build((row.B, row.T, I_l))
            dirs = [layer]
        else:
            layer = keras.layers.Bidirectional(_keras_layer(keras, row.cell, H), merge_mode="concat")
            layer.build((row.B, row.T, I_l))
            dirs = [layer.forward_layer, layer.backward_layer]
        for s, sub in zip(sfx[l * D:(l + 1) * D], dirs):
            sub.set_weights(_to_keras(row.cell, data, s))
            cells.append((s, sub.cell))
        stack.append(layer)
    variables = [v for _, c in cells for v in (c.kernel, c.recurrent_kernel, c.bias)]
    x = tf.constant(np.ascontiguousarray(data["x"].transpose(1, 0, 2)))  # (B, T, I)
    spec = tf.TensorSpec(x.shape, tf.float32)

    def run(x, training):
        hs, cs = [], []
        for layer in stack:
            out = layer(x, training=training)
            x, states = out[0], out[1:]
            for d in range(D):
                hs.append(states[d * n_state])
                if n_state == 2:
                    cs.append(states[d * n_state + 1])
        return x, hs, cs

    @tf.function(input_signature=[spec])
    def infer(x):
        return run(x, False)

    @tf.function(input_signature=[spec])
    def train(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y, _, _ = run(x, True)
            loss = tf.reduce_sum(y)
        return tape.gradient(loss, [x] + variables)

    fn = train if row.training else infer
    fn.get_concrete_function()  # trace now: setup, not part of a step (nor of --memory's step)

    def step():
        return fn(x)

    def outputs():
        y, hs, cs = infer(x)
        out = {"y": y.numpy().transpose(1, 0, 2)}
        for name, states in (("h_n", hs), ("c_n", cs))[:n_state]:
            out[name] = np.stack([s.numpy() for s in states]) if row.stacked else states[0].numpy()
        if row.training:
            grads = [g.numpy() for g in train(x)]
            out["dx"] = grads[0].transpose(1, 0, 2)
            for i, (s, _) in enumerate(cells):
                out.update(_from_keras_grads(row.cell, s, *grads[1 + 3 * i:4 + 3 * i]))
        return out

    return step, outputs


@dataclass
class Engine:
    prepare: object      # (row, data, threads) -> (step, outputs)
    versions: object     # () -> dict, ImportError when not installed
    supports: object = lambda row: True  # noqa: E731  rows it can run
    init: object = None  # (threads) -> None, once per worker process
    oracle_max_gflop: float = float("inf")  # rows it may check as an oracle


ENGINES = {
    "fastrnn": Engine(_fastrnn_prepare, _fastrnn_versions),
    "torch": Engine(_torch_prepare, _torch_versions, init=_torch_init, supports=lambda r: r.kind != "onnx"),
    "onnxruntime": Engine(_ort_prepare, _ort_versions, supports=lambda r: r.mode == "inference"),
    "tensorflow": Engine(_tf_prepare, _tf_versions, init=_tf_init,
                         supports=lambda r: r.kind not in ("gemm", "onnx")),
    # used only as the oracle for rows no peer runs (it is slow)
    "reference": Engine(lambda r, d, t: _fastrnn_prepare(r, d, t, "fastrnn.reference"),
                        lambda: _fastrnn_versions("fastrnn.reference"),
                        supports=lambda r: r.kind not in ("gemm", "onnx"),
                        oracle_max_gflop=REFERENCE_MAX_GFLOP),
}
ENGINE_ORDER = ["torch", "onnxruntime", "tensorflow"]  # peers, tried as the oracle in this order


# ----------------------------------------------------------------------------------------------
# Worker side


def _time(step, budget, min_runs, max_runs):
    """Warm up, then time `step` until `budget` seconds and `min_runs` samples (or `max_runs`).

    Calls faster than BATCH_S are timed in batches of about BATCH_S; a sample is then a batch's
    time divided by its calls. Calls so slow that min_runs of them would take over twice the
    budget get 3 samples. Returns (seconds per call for each sample, calls per sample)."""
    t = time.perf_counter()
    step()
    est = time.perf_counter() - t
    warm_end = time.perf_counter() + min(0.2 * budget, 0.5)
    while est < 0.1 and time.perf_counter() < warm_end:
        t = time.perf_counter()
        step()
        est = min(est, time.perf_counter() - t)
    inner = 1 if est >= BATCH_S else min(10000, int(math.ceil(BATCH_S / max(est, 1e-7))))
    if est * min_runs > 2 * budget:
        min_runs = min(min_runs, 3)
    samples = []
    gc.collect()
    gc_was = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        while len(samples) < max_runs and (len(samples) < min_runs or time.perf_counter() - start < budget):
            t = time.perf_counter()
            for _ in range(inner):
                step()
            samples.append((time.perf_counter() - t) / inner)
    finally:
        if gc_was:
            gc.enable()
    return samples, inner


def _compare(out, ref):
    """Largest error over the arrays, each relative to the oracle's largest magnitude; or a reason."""
    worst, what = 0.0, None
    for k, want in ref.items():
        if k not in out:
            return float("inf"), f"{k} missing"
        got = out[k]
        if got.shape != want.shape:
            return float("inf"), f"{k}: shape {got.shape} vs {want.shape}"
        if not np.all(np.isfinite(got)):
            return float("inf"), f"{k}: non-finite values"
        scale = max(float(np.abs(want).max(initial=0.0)), 1e-30)
        err = float(np.abs(got.astype(np.float64) - want).max(initial=0.0)) / scale
        if err > worst:
            worst, what = err, k
    return worst, (None if worst <= VERIFY_TOL else f"{what}: relative error {worst:.2e}")


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss():
    """Reset the peak-RSS mark (Linux: VmHWM); False when it cannot be reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _engine_calls(spec):
    name = spec["engine"]
    eng = ENGINES[name]
    module = spec.get("module") or "fastrnn.functional"
    if name == "fastrnn" and module != "fastrnn.functional":
        return (lambda r, d, t: _fastrnn_prepare(r, d, t, module),  # noqa: E731
                lambda: _fastrnn_versions(module), eng)
    return eng.prepare, eng.versions, eng


def worker(spec):
    """Run one engine over the rows of `spec`; return a JSON-able dict."""
    name = spec["engine"]
    prepare, versions, eng = _engine_calls(spec)
    try:
        info = versions()
    except ImportError as exc:
        return {"engine": name, "available": False, "error": str(exc)}
    if spec.get("probe"):
        return {"engine": name, "available": True, "versions": info}
    threads = spec["threads"]
    if eng.init:
        eng.init(threads)
    if spec.get("memory"):
        return {"engine": name, "available": True, "versions": info,
                "memory": _memory_step(prepare, Row(**spec["rows"][0]), threads)}
    save_keys = set(spec.get("save_keys", ()))
    results = {}
    for rd in spec["rows"]:
        row = Row(**rd)
        res = results[row.key] = {}
        data = make_data(row)
        try:
            step, outputs = prepare(row, data, threads)
            if row.key in save_keys:     # this engine is the row's oracle: save its outputs
                np.savez(os.path.join(spec["oracle_dir"], row.key + ".npz"),
                         **{k: _sample(v) for k, v in outputs().items()})
                res["oracle"] = True
            elif spec.get("oracle_dir"):  # compare with the oracle before timing
                path = os.path.join(spec["oracle_dir"], row.key + ".npz")
                if os.path.exists(path):
                    with np.load(path) as ref:
                        err, problem = _compare({k: _sample(v) for k, v in outputs().items()},
                                                dict(ref))
                    res["max_err"] = err
                    if problem:
                        res["mismatch"] = problem
                        continue
                else:
                    res["unchecked"] = True
            if spec.get("time", True):
                res["samples"], res["inner"] = _time(step, spec["budget"], spec["min_runs"],
                                                     spec["max_runs"])
        except Exception as exc:  # report, keep going with the other rows
            res["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            del data
            gc.collect()
    return {"engine": name, "available": True, "versions": info, "results": results}


def _memory_step(prepare, row, threads):
    """Peak RSS of one training step above the RSS just before it (see the module docstring)."""
    try:
        data = make_data(row)
        step, _ = prepare(row, data, threads)
        gc.collect()
        reset = _reset_peak_rss()
        before = _rss_bytes()
        peak_before = _peak_rss_bytes()
        step()
        peak = _peak_rss_bytes()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"rss_before_bytes": before, "peak_bytes": peak, "step_peak_bytes": peak - before,
            "peak_reset": reset, "peak_before_step_bytes": peak_before}


def _worker_main(path_in, path_out):
    with open(path_in) as f:
        spec = json.load(f)
    out = worker(spec)
    with open(path_out, "w") as f:
        json.dump(out, f)


# ----------------------------------------------------------------------------------------------
# Parent side


def _cpu_jiffies():
    """(all CPUs' non-idle time, in seconds) from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (sum(v) - v[3] - (v[4] if len(v) > 4 else 0)) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _children_cpu():
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_worker(spec, threads, verbose=False):
    """Run `worker(spec)` in a fresh interpreter whose thread pools are capped to `threads`.

    The result's "others_cores" is the CPU time that other processes used while it ran, in
    cores (all CPUs' busy time minus the worker's own CPU time, over the wall time): above
    about 0.1 the timings of that worker competed with something else."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="fastrnn-bench-") as tmp:
        pin, pout = os.path.join(tmp, "spec.json"), os.path.join(tmp, "out.json")
        with open(pin, "w") as f:
            json.dump(spec, f)
        busy0, own0, t0 = _cpu_jiffies(), _children_cpu(), time.perf_counter()
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", pin, pout],
                              env=env, capture_output=not verbose, text=True)
        busy1, own1, t1 = _cpu_jiffies(), _children_cpu(), time.perf_counter()
        if proc.returncode != 0 or not os.path.exists(pout):
            msg = (proc.stderr or "").strip().splitlines()[-5:] if not verbose else []
            return {"engine": spec["engine"], "available": False,
                    "error": f"worker exited with {proc.returncode}: " + " | ".join(msg)}
        with open(pout) as f:
            out = json.load(f)
        if busy0 is not None and busy1 is not None:
            out["others_cores"] = max(0.0, (busy1 - busy0) - (own1 - own0)) / max(t1 - t0, 1e-9)
        return out


_FMA_BINARY = {}


def fma_peak(threads, verbose=False):
    """fp32 FMA peak (GFLOP/s) at `threads` threads, from benchmarks/fma_peak.c compiled now with
    the system C compiler (CC, else cc/gcc/clang). Returns a dict, with "error" on failure."""
    src = os.path.join(HERE, "fma_peak.c")
    if "exe" not in _FMA_BINARY:
        tmp = tempfile.mkdtemp(prefix="fastrnn-fma-")
        exe = os.path.join(tmp, "fma_peak")
        compilers = [os.environ["CC"]] if os.environ.get("CC") else []
        compilers += [c for c in ("cc", "gcc", "clang") if shutil.which(c)]
        _FMA_BINARY.update(exe=None, error="no C compiler found", openmp=False)
        for cc in compilers:
            for flags, openmp in ((["-O2", "-fopenmp"], True), (["-O2"], False)):
                proc = subprocess.run(shlex.split(cc) + flags + [src, "-o", exe],
                                      capture_output=True, text=True)
                if proc.returncode == 0:
                    _FMA_BINARY.update(exe=exe, openmp=openmp, compiler=" ".join([cc] + flags), error=None)
                    break
                _FMA_BINARY["error"] = f"{cc} failed: {proc.stderr.strip()[-300:]}"
            if _FMA_BINARY["exe"]:
                break
    if not _FMA_BINARY["exe"]:
        return {"error": _FMA_BINARY["error"]}
    exe = _FMA_BINARY["exe"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    try:
        if _FMA_BINARY["openmp"]:
            outs = [subprocess.run([exe, str(threads)], env=env, capture_output=True, text=True,
                                   timeout=120).stdout]
        else:   # one single-thread process per thread, all at once
            procs = [subprocess.Popen([exe, "1"], stdout=subprocess.PIPE, text=True) for _ in range(threads)]
            outs = [p.communicate(timeout=120)[0] for p in procs]
        parsed = [re.search(r"isa (\S+) threads (\d+) gflops ([\d.]+)", o) for o in outs]
        if not all(parsed):
            return {"error": f"unexpected output: {outs!r}"}
        return {"gflops": sum(float(m.group(3)) for m in parsed), "isa": parsed[0].group(1),
                "threads": threads, "compiler": _FMA_BINARY["compiler"]}
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def cpu_busy(seconds=1.0):
    """Fraction of all CPUs' time spent not idle over the next `seconds` (None without /proc/stat)."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + (v[4] if len(v) > 4 else 0)   # total, idle + iowait
    try:
        t0, i0 = snap()
        time.sleep(seconds)
        t1, i1 = snap()
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, 1.0 - (i1 - i0) / max(t1 - t0, 1))


def machine_info():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count()
    try:
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = "n/a"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        caches = {m.group(1): m.group(2).strip() for m in re.finditer(r"^(L[123][di]?) cache:\s*(.+)$", lscpu, re.M)}
    except (OSError, subprocess.SubprocessError):
        caches = {}
    return {"cpu": cpu, "cores": cores, "caches": caches, "load average": load,
            "python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform()}


def build_rows(args):
    """The rows to run, from the command line."""
    kinds = args.kinds or (["grid", "overhead", "latency"] if args.quick else list(KINDS))
    modes = args.modes or list(MODES)
    cells = args.cells or (["gru", "lstm"] if args.quick else list(GATES))
    rows = []
    if "grid" in kinds:
        shapes = args.shapes or (QUICK_SHAPES if args.quick else SHAPES)
        rows += [Row(c, m, *s) for c in cells for s in shapes for m in modes]
    if "latency" in kinds and "inference" in modes:    # --quick: LSTM only
        rows += [Row(c, "inference", *LATENCY_SHAPE, kind="latency")
                 for c in (["lstm"] if args.quick and not args.cells else cells)]
    if "overhead" in kinds and "inference" in modes:   # --quick: every cell, for target 5
        rows += [Row(c, "inference", *OVERHEAD_SHAPE, kind="overhead")
                 for c in (args.cells or list(GATES))]
    if "bilstm" in kinds:
        rows += [Row("lstm", m, *BILSTM_SHAPE, kind="bilstm", layers=2, directions=2) for m in modes]
    if "gemm" in kinds:
        rows += [Row("lstm", m, *s, kind="gemm") for s in GEMM_SHAPES for m in ("proj", "wgrad")]
    if "onnx" in kinds and "inference" in modes:
        rows += [Row(c, "inference", *s, kind="onnx") for c in ["lstm", "gru"]
                 if not args.cells or c in args.cells for s in ONNX_SHAPES]
    return rows


def _stats(samples):
    if not samples:
        return None
    q = statistics.quantiles(samples, n=4) if len(samples) >= 2 else [samples[0]] * 3
    return {"median_ms": 1e3 * statistics.median(samples), "iqr_ms": 1e3 * (q[2] - q[0]),
            "min_ms": 1e3 * min(samples), "runs": len(samples)}


def derive(row, engines_res, peers, peak):
    """fastrnn's numbers for one row: best peer, speed-ups, GFLOP/s, % of peak, GB/s."""
    def median(e):
        r = engines_res.get(e) or {}
        st = r.get("stats")
        return st["median_ms"] if st and "mismatch" not in r else None
    d = {}
    fr = median("fastrnn")
    times = {p: median(p) for p in peers if median(p) is not None}
    if times:
        d["best_peer"] = min(times, key=times.get)
        d["best_peer_ms"] = times[d["best_peer"]]
    if fr is None:
        return d
    s = fr * 1e-3
    if times:
        d["vs_best"] = d["best_peer_ms"] / fr
    if "torch" in times:
        d["vs_torch"] = times["torch"] / fr
    d["gflops"] = row.flops / s / 1e9
    if peak and peak.get("gflops"):
        d["pct_peak"] = 100.0 * d["gflops"] / peak["gflops"]
    if row.kind != "gemm" and row.B <= 4 and row.mode == "inference":
        d["gbps"] = row.weight_bytes / s / 1e9
    return d


# -- Markdown -------------------------------------------------------------------------------------


def _fmt_time(ms, unit):
    v = ms * 1e3 if unit == "us" else ms
    if v >= 100:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _engine_text(res, unit, supported=True):
    if not supported:
        return "n/a"
    if not res:
        return "-"
    if "mismatch" in res:
        return "MISMATCH"
    if "error" in res:
        return "error"
    st = res.get("stats")
    return _fmt_time(st["median_ms"], unit) if st else "-"


def _f(v, fmt):
    return "-" if v is None else format(v, fmt)


def md_header(report):
    m, s = report["machine"], report["settings"]
    lines = ["# fastrnn vs peers", ""]
    caches = ", ".join(f"{k} {v}" for k, v in m.get("caches", {}).items())
    lines.append(f"- CPU: {m['cpu']} ({m['cores']} cores available{'; ' + caches if caches else ''}), "
                 f"load average {m['load average']}"
                 + (f", CPUs {100 * m['busy before']:.0f}% busy before the start"
                    if m.get("busy before") is not None else ""))
    lines.append(f"- threads: {', '.join(map(str, report['threads']))}; "
                 f"python {m['python']}, numpy {m['numpy']}")
    for name, v in report["versions"].items():
        if v is None:
            if name != "reference":
                lines.append(f"- {name}: not available ({report['unavailable'].get(name, '')})")
        elif name != "reference" or report.get("oracle_uses_reference"):
            lines.append(f"- {name}: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    if report.get("command"):
        lines.append(f"- command: `{report['command']}`")
    busy = m.get("busy before")
    if busy is not None and busy > BUSY_WARN:
        lines.append(f"- **WARNING: the CPUs were {100 * busy:.0f}% busy just before the start: other "
                     f"processes were using the cores, so these timings (multi-threaded ones most) "
                     f"are unreliable**")
    lines += [
        f"- float32, time-major, zero initial state; median of >= {s['min_runs']} samples "
        f"({s['budget_s']:g} s budget per row and engine; 3 samples for calls slower than "
        f"2*budget/{s['min_runs']}) after warm-up; calls under {BATCH_S * 1e3:g} ms timed in batches; "
        f"{s['rounds']} round(s)",
        "- inference = one forward; training = forward + backward of sum(y) with dx and all weight "
        "and bias gradients; FLOPs = 2*B*T*(I+H)*G*H per layer and direction (x3 for training)",
        "- vs best / vs torch: the best peer's (PyTorch's) median time / fastrnn's; above 1 means "
        "fastrnn is faster. % peak: fastrnn GFLOP/s / the fp32 FMA peak at that thread count "
        "(benchmarks/fma_peak.c)",
        "- GB/s (inference, B <= 4): weight bandwidth = G*H*(I+H)*4 bytes * T / fastrnn's time, "
        "summed over layers and directions (w_ih and w_hh read once per step)",
        f"- every engine's outputs and gradients checked against the row's oracle before timing "
        f"(first of {', '.join(ENGINE_ORDER)} that runs the row; max error relative to the oracle's "
        f"largest magnitude <= {VERIFY_TOL:g}); `check` is fastrnn's error",
        "- TensorFlow gets x as (B, T, I) (Keras layers are batch-major); ONNX Runtime and "
        "TensorFlow don't run the GEMM rows, ONNX Runtime no training (n/a)",
    ]
    return lines


def md_run(run, peers):
    """The tables of one thread count."""
    t, peak = run["threads"], run.get("fma_peak") or {}
    if peak.get("gflops"):
        peak_text = f"fp32 FMA peak {peak['gflops']:.1f} GFLOP/s ({peak['isa']})"
    else:
        peak_text = f"FMA peak not measured: {peak.get('error', '')}"
    lines = ["", f"## threads = {t} ({peak_text})"]
    by_kind = {}
    for r in run["rows"]:
        by_kind.setdefault(r["kind"], []).append(r)
    for kind in KINDS:
        rows = by_kind.get(kind)
        if not rows:
            continue
        unit = Row(**rows[0]["row"]).unit
        u = "µs" if unit == "us" else "ms"
        lines += ["", f"### {KIND_TITLES[kind]}", ""]
        head = ["cell", "mode", "B", "T", "I", "H", f"fastrnn {u}"] + [f"{p} {u}" for p in peers]
        head += ["best peer", "vs best", "vs torch", "GFLOP/s", "% peak", "GB/s", "check"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join("---" if i < 2 or h in ("best peer", "check") else "---:"
                                    for i, h in enumerate(head)) + "|")
        for r in rows:
            row = Row(**r["row"])
            eng, d = r["engines"], r["derived"]
            cells = [CELL_NAMES[row.cell], row.mode, row.B, row.T, row.I, row.H,
                     _engine_text(eng.get("fastrnn"), unit)]
            cells += [_engine_text(eng.get(p), unit, supported=p in r["supported"]) for p in peers]
            cells += [d.get("best_peer", "-"), _f(d.get("vs_best"), ".2f"), _f(d.get("vs_torch"), ".2f"),
                      _f(d.get("gflops"), ".1f"), _f(d.get("pct_peak"), ".0f"), _f(d.get("gbps"), ".1f")]
            fr = eng.get("fastrnn") or {}
            if "mismatch" in fr:
                check = "MISMATCH"
            elif "max_err" in fr:
                check = f"ok {fr['max_err']:.0e}"
            else:
                check = "unchecked"
            cells.append(check)
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    others = run.get("others_cores") or {}
    if others:
        noisy = {e: v for e, v in others.items() if v > OTHERS_WARN}
        lines += ["", ("**WARNING: other processes competed for the cores during these runs; the "
                       "timings of " + ", ".join(noisy) + " are unreliable.** " if noisy else "")
                  + "CPU used by other processes while each engine ran (cores, worst round): "
                  + ", ".join(f"{e} {v:.2f}" for e, v in others.items())]
    errs = {}
    for r in run["rows"]:
        for e, res in r["engines"].items():
            if "max_err" in res:
                errs[e] = max(errs.get(e, 0.0), res["max_err"])
    if errs:
        lines += ["", "Largest error against the oracle over these rows: "
                  + ", ".join(f"{e} {v:.1e}" for e, v in errs.items())]
    return lines


def md_memory(mem):
    lines = ["", f"## Training memory (threads = {mem['threads']})", "",
             "MiB = peak RSS during one training step in a fresh process, minus the RSS just before "
             "it (after importing the engine, allocating the inputs and setting the engine up); "
             "fastrnn/torch below 1 means fastrnn uses less.", ""]
    engines = mem["engines"]
    head = ["cell", "B", "T", "I", "H"] + [f"{e} MiB" for e in engines] + ["fastrnn/torch"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|---|" + "|".join("---:" for _ in head[1:]) + "|")
    for r in mem["rows"]:
        row = Row(**r["row"])
        name = "2x bi-LSTM" if row.kind == "bilstm" else CELL_NAMES[row.cell]
        cells = [name, row.B, row.T, row.I, row.H]
        for e in engines:
            m = r["engines"].get(e) or {}
            cells.append(f"{m['step_peak_bytes'] / 2**20:.1f}" if "step_peak_bytes" in m else
                         ("error" if "error" in m else "-"))
        cells.append(_f(r.get("fastrnn_vs_torch"), ".2f"))
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


def _geomean(vals):
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def _ratio_summary(vals, floor):
    """(rows below `floor`, text) for a list of (ratio, row): min, geometric mean, the rows below."""
    worst = min(vals, key=lambda v: v[0])
    below = sorted((v for v in vals if v[0] < floor), key=lambda v: v[0])
    text = (f"min {worst[0]:.2f} ({worst[1].label}), geometric mean {_geomean([v for v, _ in vals]):.2f} "
            f"over {len(vals)} rows; {len(below)} rows below {floor:.1f}")
    if below:
        text += ": " + ", ".join(f"{r.label} {v:.2f}" for v, r in below)
    return below, text


def evaluate_targets(report):
    """Issue 3's targets, computed from the numbers of `report`. A list of dicts:
    target, threads (or None), met (True/False/None when nothing measured), text."""
    out = []

    def add(target, threads, met, text):
        out.append({"target": target, "threads": threads, "met": met, "text": text})

    for run in report["runs"]:
        t = run["threads"]
        rows = [(Row(**r["row"]), r["derived"]) for r in run["rows"]]
        # 1: at least as fast as the best peer on every row
        vals = [(d["vs_best"], row) for row, d in rows if "vs_best" in d]
        if vals:
            below, text = _ratio_summary(vals, 1.0)
            add(1, t, not below, f"speed-up over the best peer: {text}")
        else:
            add(1, t, None, "no row with both fastrnn and a peer timed")
        # 2: >= 2x PyTorch on every GRU and RNN row, and every training row with B <= 16
        vals = [(d["vs_torch"], row) for row, d in rows if "vs_torch" in d and row.kind != "gemm"
                and (row.cell in ("gru", "rnn_tanh") or (row.training and row.B <= 16))]
        if vals:
            below, text = _ratio_summary(vals, 2.0)
            add(2, t, not below, f"speed-up over PyTorch on GRU/RNN rows and training rows with B <= 16: {text}")
        else:
            add(2, t, None, "no GRU/RNN or small-batch training row timed against PyTorch")
        # 3: >= 80% of the FMA peak for LSTM/GRU inference with B >= 64, and for the big GEMMs
        vals = [(d["pct_peak"], row) for row, d in rows if "pct_peak" in d and row.kind == "grid"
                and row.cell in ("lstm", "gru") and row.mode == "inference" and row.B >= 64]
        gemm = [(d["pct_peak"], row) for row, d in rows if "pct_peak" in d and row.kind == "gemm"]
        for what, v in (("LSTM/GRU inference with B >= 64", vals), ("hoisted GEMMs", gemm)):
            if v:
                worst = min(v, key=lambda x: x[0])
                add(3, t, worst[0] >= 80.0,
                    f"{what}: " + ", ".join(f"{r.label} {p:.0f}%" for p, r in v)
                    + f"; min {worst[0]:.0f}% of the FMA peak (target 80%)")
            else:
                add(3, t, None, f"{what}: not measured (no such row, or no FMA peak)")
        # 5: single-step overhead under 10 us at B=1, H=64
        vals = [(d["fastrnn_us"], row) for row, d in
                ((row, {"fastrnn_us": r["engines"]["fastrnn"]["stats"]["median_ms"] * 1e3})
                 for row, r in ((Row(**r["row"]), r) for r in run["rows"])
                 if row.kind == "overhead" and (r["engines"].get("fastrnn") or {}).get("stats")
                 and "mismatch" not in r["engines"]["fastrnn"])]
        if vals:
            worst = max(vals, key=lambda v: v[0])
            add(5, t, worst[0] < 10.0,
                "single-step call (T=1, B=1, I=H=64): " + ", ".join(f"{CELL_NAMES[r.cell]} {v:.2f} µs"
                                                                    for v, r in vals)
                + f"; max {worst[0]:.2f} µs (target < 10 µs)")
        else:
            add(5, t, None, "no overhead row timed")
    mem = report.get("memory")
    if mem:
        vals = [(r["fastrnn_vs_torch"], Row(**r["row"])) for r in mem["rows"] if r.get("fastrnn_vs_torch")]
        if vals:
            worst = max(vals, key=lambda v: v[0])
            above = [v for v in vals if v[0] > 1.0]
            add(4, mem["threads"], not above,
                f"training step memory fastrnn/PyTorch: max {worst[0]:.2f} ({worst[1].label}), geometric "
                f"mean {_geomean([v for v, _ in vals]):.2f} over {len(vals)} rows; {len(above)} rows above 1.0"
                + (": " + ", ".join(f"{r.label} {v:.2f}" for v, r in sorted(above, key=lambda v: -v[0]))
                   if above else ""))
        else:
            add(4, mem["threads"], None, "no training row measured for both fastrnn and PyTorch")
    else:
        add(4, None, None, "not measured (run with --memory)")
    return sorted(out, key=lambda o: (o["target"], o["threads"] or 0))


TARGET_NAMES = {
    1: "at least as fast as the best peer on every row (ratio >= 1.0)",
    2: ">= 2x PyTorch on every GRU and RNN row and every training row with B <= 16",
    3: ">= 80% of the fp32 FMA peak: LSTM/GRU inference with B >= 64, and the large GEMMs",
    4: "training memory no larger than PyTorch's (peak RSS of a step, fresh process)",
    5: "single-step (T=1) call overhead under 10 µs at B=1, H=64",
}


def md_targets(report, title="Targets of issue 3 (computed from the rows above)"):
    lines = ["", f"## {title}", "", "| target | threads | verdict | numbers |", "|---|---:|---|---|"]
    for o in evaluate_targets(report):
        verdict = {True: "met", False: "**not met**", None: "not measured"}[o["met"]]
        lines.append(f"| {o['target']}. {TARGET_NAMES[o['target']]} | {o['threads'] or '-'} | {verdict} | "
                     f"{o['text']} |")
    for run in report["runs"]:
        noisy = [e for e, v in (run.get("others_cores") or {}).items() if v > OTHERS_WARN]
        if noisy:
            lines += ["", f"**At {run['threads']} thread(s) other processes competed with "
                          f"{', '.join(noisy)}: verdicts from those timings are unreliable; rerun on an idle machine.**"]
    return lines


def write_png(report, path):
    """Bar chart of fastrnn's speed-up over the best peer, per row and thread count."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = report["runs"]
    if not runs:
        return False
    labels = [Row(**r["row"]).label for r in runs[0]["rows"]]
    n, k = len(labels), len(runs)
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.28 * n * max(1, k) / 1.5))
    height = 0.8 / k
    for j, run in enumerate(runs):
        vals = [r["derived"].get("vs_best", float("nan")) for r in run["rows"]]
        ys = [i + (j - (k - 1) / 2) * height for i in range(n)]
        ax.barh(ys, vals, height=height, label=f"{run['threads']} thread(s)")
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(range(n))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    finite = [v for run in runs for r in run["rows"] for v in [r["derived"].get("vs_best")] if v]
    if finite:   # ticks at powers of two, printed plainly
        lo, hi = math.floor(math.log2(min(finite + [1.0]))), math.ceil(math.log2(max(finite + [1.0])))
        ticks = [2.0 ** e for e in range(lo, hi + 1)]
        ax.set_xlim(ticks[0] * 0.9, ticks[-1] * 1.1)
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("fastrnn speed-up over the best peer (best peer time / fastrnn time; > 1: fastrnn faster)")
    ax.set_title(f"fastrnn vs best of {', '.join(report['peers']) or 'no peer'} on {report['machine']['cpu']}",
                 fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# -- main -----------------------------------------------------------------------------------------


def _emit(lines, sink):
    text = "\n".join(lines)
    print(text, flush=True)
    sink.append(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="thread counts to run (default: 1 and all cores; --quick: all cores)")
    ap.add_argument("--quick", action="store_true", help="a subset that runs in about a minute")
    ap.add_argument("--memory", action="store_true",
                    help="also measure training memory (peak RSS of a step, fresh process per row and engine)")
    ap.add_argument("--json", metavar="PATH", default=os.path.join(HERE, "out", "compare.json"),
                    help="every sample and setting (default: benchmarks/out/compare.json)")
    ap.add_argument("--markdown", metavar="PATH", help="also write the Markdown report here")
    ap.add_argument("--png", metavar="PATH", default=None,
                    help="bar chart of the speed-ups (default: benchmarks/out/compare.png when "
                         "matplotlib is installed)")
    ap.add_argument("--kinds", nargs="+", choices=list(KINDS),
                    help="row kinds (default: all; --quick: grid overhead latency)")
    ap.add_argument("--cells", nargs="+", choices=list(GATES))
    ap.add_argument("--modes", nargs="+", choices=list(MODES))
    ap.add_argument("--shapes", nargs="+", metavar="BxTxIxH",
                    type=lambda s: tuple(int(v) for v in s.lower().split("x")), help="grid shapes")
    ap.add_argument("--engines", nargs="*", default=None,
                    help=f"peers beside fastrnn (default: those installed of {ENGINE_ORDER})")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of timed runs per row and engine (default 1, 0.2 with --quick)")
    ap.add_argument("--min-runs", type=int, default=None, help="default 5 (3 with --quick)")
    ap.add_argument("--max-runs", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat each thread count's engine runs, alternating their order")
    ap.add_argument("--fastrnn-module", default="fastrnn.functional",
                    help="module with the functional API to time as 'fastrnn'")
    ap.add_argument("--verbose", action="store_true", help="show the workers' output")
    args = ap.parse_args(argv)
    if args.shapes and any(len(s) != 4 for s in args.shapes):
        ap.error("--shapes: expected BxTxIxH, e.g. 16x100x128x256")
    budget = args.budget if args.budget is not None else (0.2 if args.quick else 1.0)
    min_runs = args.min_runs if args.min_runs is not None else (3 if args.quick else 5)
    info = machine_info()
    info["busy before"] = cpu_busy()
    threads_list = args.threads or (sorted({info["cores"]}) if args.quick else sorted({1, info["cores"]}))
    rows = build_rows(args)
    if not rows:
        ap.error("no rows selected")

    # which engines are installed (probed in their own processes; the parent imports none)
    wanted = ["fastrnn"] + (args.engines if args.engines is not None else ENGINE_ORDER)
    probes = {}
    for name in dict.fromkeys(wanted + ["reference"]):
        if name not in ENGINES:
            ap.error(f"--engines: unknown engine {name!r}; known: {sorted(ENGINES)}")
        probes[name] = run_worker({"engine": name, "probe": True, "module": args.fastrnn_module}, 1)
    if not probes["fastrnn"]["available"]:
        sys.exit(f"fastrnn is not importable ({args.fastrnn_module}): {probes['fastrnn'].get('error')}")
    peers = [p for p in wanted[1:] if probes[p]["available"]]
    engines = ["fastrnn"] + peers

    def supports(e, row):
        return ENGINES[e].supports(row)

    # the oracle of each row: the first peer that runs it, else the reference on small rows
    oracle_of = {}
    for r in rows:
        cands = [p for p in peers if supports(p, r)]
        if cands:
            oracle_of[r.key] = cands[0]
        elif (probes["reference"]["available"] and supports("reference", r)
              and r.flops / 1e9 <= REFERENCE_MAX_GFLOP):
            oracle_of[r.key] = "reference"

    command = "python " + shlex.join([os.path.relpath(os.path.abspath(__file__))]
                                     + (sys.argv[1:] if argv is None else list(argv)))
    report = {"machine": info, "command": command,
              "versions": {n: (p.get("versions") if p["available"] else None) for n, p in probes.items()},
              "unavailable": {n: p.get("error") for n, p in probes.items() if not p["available"]},
              "oracle_uses_reference": "reference" in oracle_of.values(),
              "peers": peers,
              "settings": {"budget_s": budget, "min_runs": min_runs, "max_runs": args.max_runs,
                           "rounds": args.rounds, "fastrnn_module": args.fastrnn_module,
                           "verify_tol": VERIFY_TOL, "batch_s": BATCH_S},
              "oracle_of": oracle_of, "threads": threads_list, "runs": []}
    md = []
    _emit(md_header(report), md)
    t_start = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="fastrnn-oracle-") as oracle_dir:
        bad = {e: set() for e in engines}   # rows that failed their check, never timed
        checks = {r.key: {} for r in rows}   # engine -> check results, from the first pass
        for ti, threads in enumerate(threads_list):
            peak = fma_peak(threads)
            print(f"  [threads={threads}] FMA peak: {peak}", file=sys.stderr, flush=True)
            table = {r.key: {e: dict(c) for e, c in checks[r.key].items()} for r in rows}
            samples = {(e, r.key): [] for e in engines for r in rows}
            inner, others = {}, {}
            for rnd in range(args.rounds):
                first = ti == 0 and rnd == 0
                order = list(engines)
                if first:   # oracles first (peers in ENGINE_ORDER), then whoever checks against them
                    order = peers + ["fastrnn"]
                    ref_rows = [asdict(r) for r in rows if oracle_of.get(r.key) == "reference"]
                    if ref_rows:
                        print("  [oracle] reference ...", file=sys.stderr, flush=True)
                        run_worker({"engine": "reference", "threads": threads, "rows": ref_rows,
                                    "save_keys": [Row(**r).key for r in ref_rows],
                                    "oracle_dir": oracle_dir, "time": False}, threads, args.verbose)
                elif rnd % 2:
                    order.reverse()
                for eng in order:
                    mine = [r for r in rows if supports(eng, r) and r.key not in bad[eng]]
                    if not mine:
                        continue
                    spec = {"engine": eng, "threads": threads, "module": args.fastrnn_module,
                            "rows": [asdict(r) for r in mine],
                            "budget": budget, "min_runs": min_runs, "max_runs": args.max_runs}
                    if first:
                        spec["oracle_dir"] = oracle_dir
                        spec["save_keys"] = [r.key for r in mine if oracle_of.get(r.key) == eng]
                    print(f"  [threads={threads} round {rnd + 1}/{args.rounds}] {eng} "
                          f"({len(mine)} rows, {time.perf_counter() - t_start:.0f} s so far) ...",
                          file=sys.stderr, flush=True)
                    out = run_worker(spec, threads, args.verbose)
                    if not out.get("available"):
                        print(f"!! {eng} worker failed: {out.get('error')}", file=sys.stderr)
                        continue
                    if "others_cores" in out:
                        others[eng] = max(others.get(eng, 0.0), out["others_cores"])
                        if out["others_cores"] > OTHERS_WARN:
                            print(f"!! other processes used {out['others_cores']:.2f} cores while {eng} "
                                  f"ran: its timings are unreliable", file=sys.stderr, flush=True)
                    for key, res in out["results"].items():
                        cell = table[key].setdefault(eng, {})
                        for k in ("max_err", "mismatch", "error", "unchecked", "oracle"):
                            if k in res:
                                cell[k] = res[k]
                                if k != "error":
                                    checks[key].setdefault(eng, {})[k] = res[k]
                        if "mismatch" in res:
                            bad[eng].add(key)
                            print(f"\n!!!!!! MISMATCH: {eng} on {key} differs from {oracle_of.get(key)}: "
                                  f"{res['mismatch']} -- not timed\n", file=sys.stderr, flush=True)
                        if "error" in res:
                            print(f"!! {eng} on {key}: {res['error']}", file=sys.stderr, flush=True)
                        samples[(eng, key)] += res.get("samples", [])
                        if "inner" in res:
                            inner[(eng, key)] = res["inner"]
            for (eng, key), s in samples.items():
                if s:
                    table[key].setdefault(eng, {})["stats"] = _stats(s)
            run = {"threads": threads, "fma_peak": peak, "others_cores": others, "rows": []}
            for r in rows:
                eng_res = {e: {**table[r.key].get(e, {}), "samples_s": samples[(e, r.key)],
                               "calls_per_sample": inner.get((e, r.key))}
                           for e in engines if supports(e, r)}
                run["rows"].append({"row": asdict(r), "key": r.key, "kind": r.kind, "label": r.label,
                                    "flops": r.flops, "weight_bytes": r.weight_bytes,
                                    "oracle": oracle_of.get(r.key),
                                    "supported": [e for e in engines if supports(e, r)],
                                    "engines": eng_res, "derived": derive(r, eng_res, peers, peak)})
            report["runs"].append(run)
            _emit(md_run(run, peers), md)

    if args.memory:
        mthreads = max(threads_list)
        mem_engines = [e for e in engines if e != "onnxruntime"]
        mrows = [r for r in rows if r.training]
        mem = {"threads": mthreads, "engines": mem_engines, "rows": []}
        for r in mrows:
            entry = {"row": asdict(r), "key": r.key, "engines": {}}
            for eng in mem_engines:
                if not supports(eng, r) or r.key in bad[eng]:
                    continue
                print(f"  [memory threads={mthreads}] {eng} {r.key} ...", file=sys.stderr, flush=True)
                out = run_worker({"engine": eng, "threads": mthreads, "module": args.fastrnn_module,
                                  "rows": [asdict(r)], "memory": True}, mthreads, args.verbose)
                entry["engines"][eng] = out.get("memory") or {"error": out.get("error")}
            f_, t_ = (entry["engines"].get(e, {}).get("step_peak_bytes") for e in ("fastrnn", "torch"))
            if f_ is not None and t_:
                entry["fastrnn_vs_torch"] = f_ / t_
            mem["rows"].append(entry)
        report["memory"] = mem
        _emit(md_memory(mem), md)

    _emit(md_targets(report, "Targets of issue 3 on the rows run here (computed)"), md)
    load_after = machine_info()["load average"]
    report["machine"]["load average after"] = load_after
    report["machine"]["busy after"] = cpu_busy()
    report["elapsed_s"] = time.perf_counter() - t_start
    busy = report["machine"]["busy after"]
    _emit(["", f"load average after: {load_after}"
           + (f", CPUs {100 * busy:.0f}% busy after" if busy is not None else "")
           + f"; {report['elapsed_s']:.0f} s"], md)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"\nwrote {args.json}", file=sys.stderr)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(md) + "\n")
        print(f"wrote {args.markdown}", file=sys.stderr)
    png = args.png
    if png is None and importlib.util.find_spec("matplotlib") is not None:
        png = os.path.join(HERE, "out", "compare.png")
    if png:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
            if write_png(report, png):
                print(f"wrote {png}", file=sys.stderr)
        except ImportError as exc:
            print(f"no PNG: {exc}", file=sys.stderr)
    return 1 if bad["fastrnn"] else 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        _worker_main(sys.argv[2], sys.argv[3])
    else:
        sys.exit(main())
