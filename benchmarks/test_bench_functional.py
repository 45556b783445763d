"""pytest-benchmark suite for the functional API.

    pytest benchmarks/ --benchmark-only [--benchmark-json out.json]

Times forward (training=False) and forward+backward of each cell at a few
shapes, float32, time-major, zero initial state. Before the first timing of a
cell its results are checked once against fastrnn.reference on a small shape.
Thread count: fastrnn's default, or FASTRNN_BENCH_THREADS (e.g. "1,2") for a
list. For a side-by-side with PyTorch use benchmarks/compare.py.
"""
import importlib
import os

import numpy as np
import pytest

import fastrnn

# FASTRNN_BENCH_MODULE=fastrnn.reference times the reference instead (slow; for plumbing checks)
F = importlib.import_module(os.environ.get("FASTRNN_BENCH_MODULE", "fastrnn.functional"))
reference = importlib.import_module("fastrnn.reference")

GATES = {"rnn_tanh": 1, "gru": 3, "lstm": 4}
SHAPES = [(1, 100, 64, 128), (16, 100, 128, 256), (64, 50, 256, 512)]  # (B, T, I, H)
CHECK_SHAPE = (3, 9, 5, 8)
_env_threads = os.environ.get("FASTRNN_BENCH_THREADS", "")
THREADS = [int(n) for n in _env_threads.split(",") if n.strip()] or [fastrnn.get_num_threads()]


def _family(cell):
    return "rnn" if cell.startswith("rnn") else cell


def _problem(cell, B, T, I, H, seed=0):
    G = GATES[cell]
    rng = np.random.default_rng([seed, G, B, T, I, H])
    k = 1.0 / np.sqrt(H)
    f32 = np.float32
    return {
        "x": rng.standard_normal((T, B, I), dtype=f32),
        "w_ih": rng.uniform(-k, k, (G * H, I)).astype(f32),
        "w_hh": rng.uniform(-k, k, (G * H, H)).astype(f32),
        "b_ih": rng.uniform(-k, k, (G * H,)).astype(f32),
        "b_hh": rng.uniform(-k, k, (G * H,)).astype(f32),
    }


def _calls(mod, cell, p, threads=None):
    """(forward(training) -> (y, final states, cache), backward(dy, cache) -> grads) of `mod`."""
    fam = _family(cell)
    fwd, bwd = getattr(mod, fam + "_forward"), getattr(mod, fam + "_backward")
    kw = {"nonlinearity": "tanh"} if fam == "rnn" else {}
    if threads is not None:
        kw["num_threads"] = threads

    def forward(training):
        return fwd(p["x"], None, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], training=training, **kw)

    def backward(dy, cache):
        return bwd(dy, (None, None) if fam == "lstm" else None, cache)

    return forward, backward


_checked = {}


def _check_against_reference(cell):
    """Once per cell: functional matches reference on a small problem (forward and grads)."""
    if cell in _checked:
        if _checked[cell]:
            pytest.fail(f"{cell}: functional disagrees with reference: {_checked[cell]}")
        return
    _checked[cell] = None
    B, T, I, H = CHECK_SHAPE
    p = _problem(cell, B, T, I, H, seed=1)
    dy = np.random.default_rng(2).standard_normal((T, B, H)).astype(np.float32)
    results = []
    for mod in (F, reference):
        forward, backward = _calls(mod, cell, p)
        y, state, cache = forward(True)
        y_inf = forward(False)[0]
        results.append({"y": y, "y_inf": y_inf, **backward(dy, cache)})
    got, want = results
    for k, w in want.items():
        if k not in got or not np.allclose(got[k], w, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(w).max())):
            err = "missing" if k not in got else f"max abs err {np.abs(got[k] - w).max():.3g}"
            _checked[cell] = f"{k}: {err}"
            pytest.fail(f"{cell}: functional disagrees with reference on {k} ({err})")


def _flops(cell, B, T, I, H, training):
    f = 2.0 * B * T * (I + H) * GATES[cell] * H
    return 3 * f if training else f


@pytest.mark.parametrize("threads", THREADS, ids=lambda n: f"t{n}")
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}_T{}_I{}_H{}".format(*s))
@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("cell", list(GATES))
def test_functional(benchmark, cell, mode, shape, threads):
    _check_against_reference(cell)
    B, T, I, H = shape
    p = _problem(cell, B, T, I, H)
    forward, backward = _calls(F, cell, p, threads)
    training = mode == "training"
    if training:
        dy = np.ones((T, B, H), np.float32)

        def step():
            cache = forward(True)[2]
            return backward(dy, cache)
    else:
        def step():
            return forward(False)

    benchmark.group = f"{cell} {mode}"
    flops = _flops(cell, B, T, I, H, training)
    benchmark.extra_info.update({"cell": cell, "mode": mode, "B": B, "T": T, "I": I, "H": H,
                                 "threads": threads, "flops": flops})
    with fastrnn.num_threads(threads):  # backward takes no num_threads of its own
        benchmark(step)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.median > 0:
        benchmark.extra_info["gflop_s"] = round(flops / stats.stats.median / 1e9, 2)
