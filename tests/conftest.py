"""Shared helpers for the numeric tests: random problems, a uniform calling
convention over the three cells, finite differences and tolerances.

Every helper takes the module under test (`fastrnn.reference` or
`fastrnn.functional`, same API) as an argument, so the same checks run
against both.

A problem is a `Problem`: arrays in the caller's layout plus the keyword
options of one forward call. `forward(mod, prob)` and `backward(mod, prob,
cache, dy, dstates)` hide the differences between the cells: the final state
is always a tuple, (h_n,) or (h_n, c_n).
"""
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import zlib
from typing import Optional

import numpy as np
import pytest

# The Keras comparison tests run Keras 3 on the PyTorch backend when TensorFlow is not
# installed (CI installs keras and the CPU torch, not TensorFlow).
if "KERAS_BACKEND" not in os.environ and importlib.util.find_spec("tensorflow") is None:
    os.environ["KERAS_BACKEND"] = "torch"

# Cell variants: name -> (family, options); "peep"/"proj" ask for LSTM w_peep/w_hr,
# the rest are forward keyword options.
VARIANTS = {
    "rnn_tanh": ("rnn", {"nonlinearity": "tanh"}),
    "rnn_relu": ("rnn", {"nonlinearity": "relu"}),
    "gru": ("gru", {"linear_before_reset": True}),
    "gru_orig": ("gru", {"linear_before_reset": False}),
    "lstm": ("lstm", {}),
    "lstm_peep": ("lstm", {"peep": True}),
    "lstm_proj": ("lstm", {"proj": True}),
    "lstm_peep_proj": ("lstm", {"peep": True, "proj": True}),
}

# Options of a problem, each varied on its own, plus combined cases.
# bias: "both" | "none" | "ih" | "hh";  states: "given" | "none" | "h_none" (LSTM: (None, c0)).
OPTIONS = {
    "plain": {},
    "reverse": {"reverse": True},
    "lengths": {"lengths": True},
    "batch_first": {"batch_first": True},
    "no_bias": {"bias": "none"},
    "ih_bias_only": {"bias": "ih"},
    "none_states": {"states": "none"},
    "lengths_reverse": {"lengths": True, "reverse": True},
    "combined": {"lengths": True, "reverse": True, "batch_first": True, "bias": "hh",
                 "states": "h_none"},
}

FAMILIES = ("rnn", "gru", "lstm")
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def seed_of(*parts):
    """A stable seed from any labels (test names, parameters)."""
    return zlib.crc32(repr(parts).encode())


@dataclasses.dataclass
class Problem:
    """One forward call's arguments, in the caller's layout."""
    variant: str
    family: str
    T: int
    B: int
    I: int
    H: int
    P: int
    dtype: np.dtype
    x: np.ndarray                    # (T, B, I), or (B, T, I) when batch_first
    h0: Optional[np.ndarray]         # (B, P) or None
    c0: Optional[np.ndarray]         # (B, H) or None (LSTM only)
    w_ih: np.ndarray                 # (G*H, I)
    w_hh: np.ndarray                 # (G*H, P)
    b_ih: Optional[np.ndarray]       # (G*H,)
    b_hh: Optional[np.ndarray]
    w_peep: Optional[np.ndarray]     # (3, H)
    w_hr: Optional[np.ndarray]       # (P, H)
    lengths: Optional[np.ndarray]    # (B,) int
    options: dict                    # reverse, batch_first, nonlinearity / linear_before_reset

    # Names of the differentiable arrays, in a fixed order.
    ARRAYS = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_peep", "w_hr")

    @property
    def batch_first(self):
        return self.options.get("batch_first", False)

    def __str__(self):
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return (f"{self.variant} T={self.T} B={self.B} I={self.I} H={self.H} P={self.P} "
                f"{np.dtype(self.dtype).name} lengths={None if self.lengths is None else list(self.lengths)} "
                f"bias=({self.b_ih is not None}, {self.b_hh is not None}) "
                f"h0={self.h0 is not None} c0={self.c0 is not None} {opts}")

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def arrays(self):
        """The array arguments that were given, by name."""
        return {n: getattr(self, n) for n in self.ARRAYS if getattr(self, n) is not None}

    def grad_names(self):
        """The keys backward must return."""
        names = ["x", "h0"] + (["c0"] if self.family == "lstm" else []) + ["w_ih", "w_hh"]
        names += [n for n in ("b_ih", "b_hh", "w_peep", "w_hr") if getattr(self, n) is not None]
        return set(names)

    def with_explicit_states(self):
        """The same problem with None initial states replaced by the zeros they stand for."""
        h0 = self.h0 if self.h0 is not None else np.zeros((self.B, self.P), self.dtype)
        c0 = self.c0
        if self.family == "lstm" and c0 is None:
            c0 = np.zeros((self.B, self.H), self.dtype)
        return self.replace(h0=h0, c0=c0)


def make_lengths(T, B, rng):
    """Lengths that include a 0 and a full length T when B allows, in shuffled order."""
    if B == 1:
        return np.array([T // 2], np.int64)
    base = [T, 0] + [int(rng.integers(1, T)) if T >= 2 else T for _ in range(B - 2)]
    return np.array(rng.permutation(base), np.int64)


def make_problem(variant, *, T=4, B=3, I=3, H=4, P=None, dtype=np.float64, seed=0,
                 reverse=False, lengths=False, batch_first=False, bias="both",
                 states="given", relu_margin=1e-4):
    """A random problem for one cell variant.

    Weights are uniform in +-1/sqrt(H) (PyTorch's init), x and the states are
    O(1). `lengths=True` draws lengths with make_lengths; an array is used as
    given. With projection, P defaults to H // 2 + 1. For "rnn_relu" the seed
    is advanced until every pre-activation of the forward pass is at least
    `relu_margin` away from the kink (so finite differences and float32
    comparisons never straddle it).
    """
    family, extras = VARIANTS[variant]
    dtype = np.dtype(dtype)
    proj = extras.get("proj", False)
    if P is None:
        P = H // 2 + 1 if proj else H
    elif not proj and P != H:
        raise ValueError("P != H needs a projection variant")
    G = GATES[family]
    options = {k: v for k, v in extras.items() if k not in ("peep", "proj")}
    options.update(reverse=reverse, batch_first=batch_first)

    for attempt in range(1000):
        rng = np.random.default_rng([seed, attempt])
        k = 1 / np.sqrt(H)

        def unif(*shape):
            return rng.uniform(-k, k, shape).astype(dtype)

        def normal(*shape, scale=1.0):
            return (scale * rng.standard_normal(shape)).astype(dtype)

        x = normal(T, B, I)
        prob = Problem(
            variant=variant, family=family, T=T, B=B, I=I, H=H, P=P, dtype=dtype,
            x=np.ascontiguousarray(x.transpose(1, 0, 2)) if batch_first else x,
            h0=normal(B, P, scale=0.5) if states == "given" else None,
            c0=(normal(B, H) if states in ("given", "h_none") else None) if family == "lstm" else None,
            w_ih=unif(G * H, I), w_hh=unif(G * H, P),
            b_ih=unif(G * H) if bias in ("both", "ih") else None,
            b_hh=unif(G * H) if bias in ("both", "hh") else None,
            w_peep=unif(3, H) if extras.get("peep") else None,
            w_hr=unif(P, H) if proj else None,
            lengths=(make_lengths(T, B, rng) if lengths is True
                     else None if lengths is False or lengths is None
                     else np.asarray(lengths)),
            options=options)
        if variant != "rnn_relu" or relu_preactivation_margin(prob) >= relu_margin:
            return prob
    raise RuntimeError(f"no seed gives a relu margin of {relu_margin} for {variant}")


def relu_preactivation_margin(prob):
    """min |pre-activation| over every processed step of an RNN problem.

    An independent, minimal float64 re-implementation of the recurrence (with
    lengths and reverse), used only to keep relu problems away from the kink.
    """
    f64 = lambda a: None if a is None else np.asarray(a, np.float64)  # noqa: E731
    x = f64(prob.x)
    if prob.batch_first:
        x = x.transpose(1, 0, 2)
    h = np.zeros((prob.B, prob.H)) if prob.h0 is None else f64(prob.h0).copy()
    b = np.zeros(prob.H)
    for bias in (prob.b_ih, prob.b_hh):
        if bias is not None:
            b = b + f64(bias)
    lengths = np.full(prob.B, prob.T) if prob.lengths is None else prob.lengths
    margin = np.inf
    steps = range(prob.T - 1, -1, -1) if prob.options["reverse"] else range(prob.T)
    for t in steps:
        rows = np.flatnonzero(t < lengths)
        if rows.size:
            pre = x[t, rows] @ f64(prob.w_ih).T + h[rows] @ f64(prob.w_hh).T + b
            margin = min(margin, np.abs(pre).min())
            h[rows] = np.maximum(pre, 0)
    return margin


# ---------------------------------------------------------------------------
# One calling convention for every cell

def forward(mod, prob, **extra):
    """Run `mod.<family>_forward` on `prob`; returns (y, final_states_tuple, cache).

    `extra` overrides or adds keyword options (training, num_threads, ...).
    """
    kw = dict(prob.options)
    kw["lengths"] = prob.lengths
    kw.update(extra)
    fn = getattr(mod, prob.family + "_forward")
    if prob.family == "lstm":
        hc0 = None if prob.h0 is None and prob.c0 is None else (prob.h0, prob.c0)
        y, (h_n, c_n), cache = fn(prob.x, hc0, prob.w_ih, prob.w_hh, prob.b_ih, prob.b_hh,
                                  w_peep=prob.w_peep, w_hr=prob.w_hr, **kw)
        return y, (h_n, c_n), cache
    y, h_n, cache = fn(prob.x, prob.h0, prob.w_ih, prob.w_hh, prob.b_ih, prob.b_hh, **kw)
    return y, (h_n,), cache


def backward(mod, prob, cache, dy, dstates):
    """Run `mod.<family>_backward`; `dstates` is a tuple like forward's states, or None."""
    fn = getattr(mod, prob.family + "_backward")
    if prob.family == "lstm":
        return fn(dy, None if dstates is None else tuple(dstates), cache)
    return fn(dy, None if dstates is None else dstates[0], cache)


def state_shapes(prob):
    """Shapes of the final states: ((B, P),) or ((B, P), (B, H))."""
    return ((prob.B, prob.P),) + (((prob.B, prob.H),) if prob.family == "lstm" else ())


def y_shape(prob):
    return (prob.B, prob.T, prob.P) if prob.batch_first else (prob.T, prob.B, prob.P)


def random_cotangents(prob, seed):
    """Random dy (like y) and final-state gradients (like the final states)."""
    rng = np.random.default_rng(seed)
    dy = rng.standard_normal(y_shape(prob)).astype(prob.dtype)
    dstates = tuple(rng.standard_normal(s).astype(prob.dtype) for s in state_shapes(prob))
    return dy, dstates


# ---------------------------------------------------------------------------
# Finite differences

def central_difference(f, arr, eps):
    """Central finite-difference gradient of the scalar f(arr) wrt every element of arr.

    `arr` is copied; f receives the perturbed copy.
    """
    arr = np.array(arr, dtype=np.float64, copy=True)
    grad = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + eps
        f_plus = f(arr)
        arr[idx] = old - eps
        f_minus = f(arr)
        arr[idx] = old
        grad[idx] = (f_plus - f_minus) / (2 * eps)
    return grad


def rel_error(g, ref):
    """||g - ref|| / max(||g||, ||ref||, tiny)."""
    g, ref = np.asarray(g, np.float64), np.asarray(ref, np.float64)
    scale = max(np.linalg.norm(g), np.linalg.norm(ref), 1e-300)
    return np.linalg.norm(g - ref) / scale


def loss(mod, prob, weights):
    """L = sum(y * Wy) + sum(h_n * Wh) (+ sum(c_n * Wc)), computed with training=False."""
    wy, wstates = weights
    y, states, _ = forward(mod, prob, training=False)
    total = np.sum(y * wy)
    for s, w in zip(states, wstates):
        total += np.sum(s * w)
    return float(total)


def fd_gradients(mod, prob, weights, eps=1e-6):
    """Finite-difference gradients of `loss` wrt every differentiable argument.

    None initial states are differentiated as the zeros they stand for.
    """
    explicit = prob.with_explicit_states()
    fd = {}
    for name, value in explicit.arrays().items():
        fd[name] = central_difference(
            lambda arr: loss(mod, explicit.replace(**{name: arr}), weights), value, eps)
    return {n: g for n, g in fd.items() if n in prob.grad_names()}


def check_fd(mod, prob, seed, tol=1e-6, eps=1e-6):
    """Backward of `mod` against central differences of a random linear loss (float64)."""
    assert prob.dtype == np.float64
    weights = random_cotangents(prob, seed)
    y, states, cache = forward(mod, prob)
    grads = backward(mod, prob, cache, *weights)
    assert set(grads) == prob.grad_names(), f"{prob}: grad keys {sorted(grads)}"
    fd = fd_gradients(mod, prob, weights, eps)
    assert set(fd) == set(grads)
    errors = {n: rel_error(grads[n], fd[n]) for n in fd}
    bad = {n: e for n, e in errors.items() if not e < tol}
    assert not bad, f"{prob}: relative errors above {tol}: {bad}"


# ---------------------------------------------------------------------------
# Tolerances for comparing two implementations

def tolerance(dtype):
    return 1e-5 if np.dtype(dtype) == np.float32 else 1e-10


def assert_close(actual, expected, dtype, what=""):
    """Same dtype and shape, and |actual - expected| <= tol * (|expected| + max(1, max|expected|))."""
    assert isinstance(actual, np.ndarray), f"{what}: got {type(actual).__name__}"
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    tol = tolerance(dtype)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale, err_msg=what)


# ---------------------------------------------------------------------------
# The examples' smoke tests

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def load_example(name):
    """examples/<name>.py as a module (the examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_fuzz_child(cmd, label, timeout=300, hint=""):
    """Run a fuzz child process (it prints "CASE ..." before each case and "DONE {json}"
    at the end); returns (the DONE summary, its stdout lines), or fails the test with
    the last case printed when the child crashed (a signal), exited badly or hung."""
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(tests_dir)
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONFAULTHANDLER="1")
    env["PYTHONPATH"] = os.pathsep.join([root, tests_dir, env.get("PYTHONPATH", "")])
    try:
        out = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        cases = [ln for ln in (exc.stdout or b"").decode(errors="replace").splitlines() if ln.startswith("CASE ")]
        pytest.fail(f"{label}: the child hung; last case:\n{cases[-1] if cases else '(none)'}")
    lines = out.stdout.splitlines()
    cases = [ln for ln in lines if ln.startswith("CASE ")]
    done = [ln for ln in lines if ln.startswith("DONE ")]
    if out.returncode != 0 or not done:
        how = f"killed by signal {-out.returncode}" if out.returncode < 0 else f"exit status {out.returncode}"
        pytest.fail(f"{label}: the fuzz child failed ({how}) after {len(cases)} cases; last case:\n"
                    f"{cases[-1] if cases else '(none)'}\n{hint}--- stderr tail ---\n{out.stderr[-6000:]}")
    return json.loads(done[-1][5:]), lines
