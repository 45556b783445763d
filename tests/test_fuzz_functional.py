"""Property-based fuzzing of `fastrnn.functional` against `fastrnn.reference`.

Hypothesis draws a small, printable *case*: a cell variant, dtype, sizes
(0, 1, odd and larger values), flags (reverse, batch_first, training,
linear_before_reset, nonlinearity), lengths, step_mask, recurrent_mask,
peepholes, projection, absent biases and states, packed weights, thread count,
the memory layout of every array (strided, negative strides, Fortran order,
read-only, Python lists) and a seed for the numbers. Three batches:

- "valid": the call must match the reference, forward (training and
  inference) and backward, within a per-dtype tolerance, and leave its inputs
  untouched.
- "invalid": one argument of a valid case is spoiled (wrong dtype, object,
  int, bool or 0-d array, wrong shape, wrong type, out-of-range lengths, bad
  flags, foreign packed weights, bad backward gradients). The call must either
  raise ValueError/TypeError/MemoryError whose message names the argument and
  says what was expected and what was got, or, when the input is still
  acceptable, give the reference's answer.
- "nonfinite": NaN, +-Inf and huge finite values at random places of random
  arguments (incoming gradients included). NaN and +-Inf must land where the
  reference puts them, and the finite values must agree.

Every batch runs in a child interpreter (this file run as a script), which
prints each case before running it, so a segfault or hang is reported with its
case rather than killing pytest. Reproduce one with

    python tests/test_fuzz_functional.py --case '<the printed JSON>'

Hypothesis is derandomized (a fixed seed per batch), so CI runs the same cases
every time.

The explicit tests below the batches pin the promised behaviour for object,
int, bool and 0-d arrays, Python lists, NaN/Inf propagation and sizes whose
element counts overflow 32-bit indices (built with np.broadcast_to, so nothing
huge is allocated).
"""
import json
import os
import sys

import numpy as np
import pytest
from conftest import run_fuzz_child

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS_DIR)

# name -> number of hypothesis examples; keep the file under ~60 s on 2 cores.
BATCHES = {"valid": 2000, "invalid": 2000, "nonfinite": 800}

FAMILY = {"rnn_tanh": "rnn", "rnn_relu": "rnn", "gru": "gru", "gru_orig": "gru", "lstm": "lstm",
          "lstm_peep": "lstm", "lstm_proj": "lstm", "lstm_peep_proj": "lstm"}
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
ARG_NAMES = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_peep", "w_hr", "lengths", "step_mask",
             "recurrent_mask")
LAYOUTS = ("contiguous", "strided", "negative", "fortran", "read_only", "list")


# ---------------------------------------------------------------------------
# Building a call from a case (runs in the child, and in the explicit tests)

def _layout(arr, how):
    """`arr`'s values in another memory layout (or as a Python list)."""
    if arr is None or how == "contiguous":
        return arr
    if how == "list":
        return arr.tolist()
    if how == "strided":                      # every other element along the last axis
        wide = np.zeros(arr.shape[:-1] + (2 * arr.shape[-1],), arr.dtype) if arr.ndim else None
        if wide is None:
            return arr
        wide[..., ::2] = arr
        return wide[..., ::2]
    if how == "negative":
        flipped = np.ascontiguousarray(arr[::-1])
        return flipped[::-1]
    if how == "fortran":
        return np.asfortranarray(arr)
    if how == "read_only":
        out = arr.copy()
        out.flags.writeable = False
        return out
    raise AssertionError(how)


def build(case):
    """The forward's arguments for `case`: (family, args dict). Arrays follow the
    case's layouts; the numbers come from case["seed"]."""
    rng = np.random.default_rng(case["seed"])
    variant, dt = case["variant"], np.dtype(case["dtype"])
    family = FAMILY[variant]
    T, B, I, H = case["T"], case["B"], case["I"], case["H"]
    P = case["P"] if "proj" in variant else H
    G = GATES[family]
    k = 1 / np.sqrt(H)

    def unif(*shape):
        return rng.uniform(-k, k, shape).astype(dt)

    def normal(*shape):
        return rng.standard_normal(shape).astype(dt)

    x = normal(T, B, I)
    if case["batch_first"]:
        x = np.ascontiguousarray(x.transpose(1, 0, 2))
    args = {
        "x": x,
        "h0": normal(B, P) * dt.type(0.5) if case["states"] == "given" else None,
        "c0": normal(B, H) if family == "lstm" and case["states"] in ("given", "h_none") else None,
        "w_ih": unif(G * H, I), "w_hh": unif(G * H, P),
        "b_ih": unif(G * H) if case["bias"] in ("both", "ih") else None,
        "b_hh": unif(G * H) if case["bias"] in ("both", "hh") else None,
        "w_peep": unif(3, H) if "peep" in variant else None,
        "w_hr": unif(P, H) if "proj" in variant else None,
        "lengths": None, "step_mask": None, "recurrent_mask": None,
    }
    if case["lengths"] == "random":
        args["lengths"] = rng.integers(0, T + 1, B).astype(case["lengths_dtype"])
    elif case["lengths"] == "full":
        args["lengths"] = np.full(B, T, case["lengths_dtype"])
    elif case["lengths"] == "zero":
        args["lengths"] = np.zeros(B, case["lengths_dtype"])
    if case["step_mask"]:
        m = rng.random((T, B)) < 0.7
        args["step_mask"] = np.ascontiguousarray(m.T) if case["batch_first"] else m
    if case["recurrent_mask"]:
        args["recurrent_mask"] = (rng.random((B, P)) < 0.8).astype(dt) * dt.type(1.25)
    for name, how in case["layouts"].items():
        value = args.get(name)
        if value is None:
            continue
        # a list carries no dtype (it becomes float64) and an empty one no shape
        if how == "list" and (name == "lengths" or 0 in value.shape or (value.dtype == np.float32)):
            continue
        args[name] = _layout(value, how)
    return family, args


def options(case):
    """Keyword options of the forward call (besides the arrays)."""
    kw = dict(reverse=case["reverse"], batch_first=case["batch_first"], training=case["training"])
    if case["variant"].startswith("rnn"):
        kw["nonlinearity"] = case["variant"][4:]
    if case["variant"].startswith("gru"):
        kw["linear_before_reset"] = case["variant"] == "gru"
    return kw


def call_forward(mod, family, args, kw):
    """(y, states tuple, cache) of mod.<family>_forward."""
    a = dict(args)
    x, h0, c0 = a.pop("x"), a.pop("h0"), a.pop("c0")
    w_ih, w_hh, b_ih, b_hh = a.pop("w_ih"), a.pop("w_hh"), a.pop("b_ih"), a.pop("b_hh")
    fn = getattr(mod, family + "_forward")
    if family == "lstm":
        hc0 = None if h0 is None and c0 is None else (h0, c0)
        y, (h, c), cache = fn(x, hc0, w_ih, w_hh, b_ih, b_hh, **a, **kw)
        return y, (h, c), cache
    for name in ("w_peep", "w_hr"):
        if a.get(name) is None:
            a.pop(name, None)
    y, h, cache = fn(x, h0, w_ih, w_hh, b_ih, b_hh, **a, **kw)
    return y, (h,), cache


def call_backward(mod, family, dy, dstates, cache):
    fn = getattr(mod, family + "_backward")
    if family == "lstm":
        return fn(dy, dstates, cache)
    return fn(dy, None if dstates is None else dstates[0], cache)


def cotangents(case, family, args, y_shape, state_shapes):
    """dy and final-state gradients as the case asks: None, zeros or random (some strided)."""
    rng = np.random.default_rng(case["seed"] + 1)
    dt = np.dtype(case["dtype"])
    dy = None if case["dy"] == "none" else rng.standard_normal(y_shape).astype(dt)
    if dy is not None and case["dy"] == "strided":
        dy = _layout(dy, "strided")
    if case["dstates"] == "none":
        return dy, None
    dstates = tuple(rng.standard_normal(s).astype(dt) for s in state_shapes)
    if case["dstates"] == "partial" and family == "lstm":
        dstates = (None, dstates[1])
    return dy, dstates


def tolerances(dtype):
    return (2e-5, 1e-4) if np.dtype(dtype) == np.float32 else (1e-10, 1e-9)


def assert_same(actual, expected, dtype, tol, what, nonfinite=False):
    """Shape, dtype, NaN/Inf positions identical, finite values close."""
    assert isinstance(actual, np.ndarray), f"{what}: got {type(actual).__name__}"
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    # "exact": NaN, +Inf and -Inf each where the reference has them; "mask": the same
    # places non-finite (see test_saturation_at_minus_infinity_is_exact for why +-Inf
    # inputs cannot ask for more until the kernels' exp saturates exactly)
    tests = (np.isnan, np.isposinf, np.isneginf) if nonfinite != "mask" else (_nonfinite,)
    for test in tests:
        a, e = test(actual), test(expected)
        if not np.array_equal(a, e):
            idx = np.argwhere(a != e)[:5].tolist()
            raise AssertionError(f"{what}: {test.__name__} differs at {idx} (engine {actual[tuple(np.argwhere(a != e)[0])]}, "
                                 f"reference {expected[tuple(np.argwhere(a != e)[0])]})")
    fin = np.isfinite(expected)
    if not nonfinite:
        assert fin.all(), f"{what}: the reference is not finite on a finite case"
    e = expected[fin]
    scale = max(1.0, float(np.max(np.abs(e)))) if e.size else 1.0
    np.testing.assert_allclose(actual[fin], e, rtol=tol, atol=tol * scale, err_msg=what)


def _nonfinite(a):
    return ~np.isfinite(a)


def relu_margin(cache):
    """min |pre-activation| over the reference's processed relu steps, in float64."""
    a = cache.args
    f = lambda v: None if v is None else np.asarray(v, np.float64)  # noqa: E731
    margin = np.inf
    for step in cache.steps:
        if step is None:
            continue
        _, (x_t, h, _, hm) = step
        pre = f(x_t) @ f(a.w_ih).T + (f(h) if hm is None else f(h) * f(hm)) @ f(a.w_hh).T
        for b in (a.b_ih, a.b_hh):
            if b is not None:
                pre = pre + f(b)
        if pre.size:
            margin = min(margin, float(np.min(np.abs(pre))))
    return margin


def snapshot(args):
    return {n: np.array(v, copy=True) for n, v in args.items() if isinstance(v, np.ndarray)}


def assert_unchanged(args, before, what):
    for n, old in before.items():
        assert np.array_equal(args[n], old, equal_nan=old.dtype.kind == "f"), f"{what}: {n} was modified"


def _state_shapes(family, B, H, P):
    return ((B, P),) + (((B, H),) if family == "lstm" else ())


def check_valid(case, args=None, nonfinite=False):
    """Engine vs reference on one case: forward (training and inference), backward."""
    import fastrnn.functional as F
    import fastrnn.reference as R
    family, built = build(case)
    args = built if args is None else args
    kw = options(case)
    tol_f, tol_b = tolerances(case["dtype"])
    before = snapshot(args)
    with np.errstate(all="ignore"):
        y_r, s_r, cache_r = call_forward(R, family, args, kw)
    extra = {}
    if case["num_threads"]:
        extra["num_threads"] = case["num_threads"]
    if case["packed"]:
        extra["packed"] = F.pack_weights(family, args["w_ih"], args["w_hh"], w_hr=args.get("w_hr"),
                                         linear_before_reset=kw.get("linear_before_reset", True))
    y, s, cache = call_forward(F, family, args, {**kw, **extra})
    assert_same(y, y_r, case["dtype"], tol_f, "y", nonfinite)
    for name, a, b in zip(("h_n", "c_n"), s, s_r):
        assert_same(a, b, case["dtype"], tol_f, name, nonfinite)
    if not case["training"]:
        assert cache is None and cache_r is None
        assert_unchanged(args, before, "forward")
        return "forward"
    if case["variant"] == "rnn_relu":          # the engine and the reference may round across the kink
        if relu_margin(cache_r) < (1e-3 if case["dtype"] == "float32" else 1e-9):
            return "forward (relu kink)"
    B, P = s[0].shape
    H = s[1].shape[1] if family == "lstm" else P
    dy, dstates = cotangents(case, family, args, y.shape, _state_shapes(family, B, H, P))
    if nonfinite and case.get("nonfinite_grads"):
        dy, dstates = spoil_cotangents(case, dy, dstates)
    with np.errstate(all="ignore"):
        g_r = call_backward(R, family, dy, dstates, cache_r)
    g = call_backward(F, family, dy, dstates, cache)
    assert set(g) == set(g_r), f"grad keys {sorted(g)} vs reference {sorted(g_r)}"
    for name in g_r:
        assert_same(g[name], g_r[name], case["dtype"], tol_b, f"d{name}", nonfinite)
    assert_unchanged(args, before, "forward+backward")
    return "forward+backward"


# ---------------------------------------------------------------------------
# Spoiling one argument (the "invalid" batch)

def _spoiled(value, kind, rng, dt):
    """`value` (an ndarray) spoiled as `kind`; returns the new value."""
    arr = np.asarray(value)
    if kind == "int":
        return arr.astype(np.int64)
    if kind == "bool":
        return arr.astype(bool)
    if kind == "object":
        return arr.astype(object)
    if kind == "float16":
        return arr.astype(np.float16)
    if kind == "complex":
        return arr.astype(np.complex128)
    if kind == "other_float":
        return arr.astype(np.float32 if dt == np.float64 else np.float64)
    if kind == "zero_d":
        return np.array(1.0, dt)
    if kind == "extra_dim":
        return arr[..., None]
    if kind == "drop_dim":
        return arr.reshape(-1) if arr.ndim > 1 else np.zeros((), dt)
    if kind == "grow":                         # one more along a random axis
        if arr.ndim == 0:
            return np.zeros(2, dt)
        ax = int(rng.integers(arr.ndim))
        shape = list(arr.shape)
        shape[ax] += 1
        return np.zeros(shape, arr.dtype)
    if kind == "shrink":
        ax = [i for i, n in enumerate(arr.shape) if n > 0]
        if not ax:
            return np.zeros(arr.shape[:-1] + (1,), arr.dtype) if arr.ndim else np.zeros(3, dt)
        ax = ax[int(rng.integers(len(ax)))]
        return np.take(arr, range(arr.shape[ax] - 1), axis=ax)
    if kind == "string":
        return "not an array"
    if kind == "dict":
        return {"a": 1}
    if kind == "ragged":
        return [[1.0], [1.0, 2.0]]
    raise AssertionError(kind)


ARRAY_SPOILS = ("int", "bool", "object", "float16", "complex", "other_float", "zero_d", "extra_dim",
                "drop_dim", "grow", "shrink", "string", "dict", "ragged")
# name -> bad values for the non-array arguments
OPTION_SPOILS = {
    "reverse": ["yes", None, 1, np.array([True])],
    "batch_first": ["no", 0, 2.5],
    "training": [1, "True", []],
    "nonlinearity": ["sigmoid", "TANH", None, 3],
    "linear_before_reset": [0, "False"],
    "num_threads": [0, -1, 1 << 40, 1.5, "2", True],
    "lengths": ["neg", "big", "float", "bool", "2d", "short", "object"],
    "step_mask": ["int", "float", "transposed", "short", "zero_d"],
    "packed": ["other_array", "wrong_family", "not_packed", "other_dtype"],
    "dy": ["grow", "other_float", "int", "object", "string"],
    "dh_n": ["grow", "other_float", "zero_d", "bool"],
}


def spoil(case, family, args, kw, rng):
    """Apply case["spoil"] = [name, kind] to a valid call; returns (args, kw, backward_spoil, allowed names).

    `allowed` is the set of argument names the error may name (the spoiled one,
    or any argument where the spoil changes a size other arguments are checked against)."""
    name, kind = case["spoil"]
    dt = np.dtype(case["dtype"])
    args, kw = dict(args), dict(kw)
    allowed = {name}
    if name in ("dy", "dh_n"):
        return args, kw, (name, kind), allowed
    if name in ("reverse", "batch_first", "training", "nonlinearity", "linear_before_reset", "num_threads"):
        kw[name] = OPTION_SPOILS[name][kind]
        return args, kw, None, allowed
    if name == "lengths":
        T, B = _TB(case)
        good = np.zeros(B, np.int64) if args["lengths"] is None else np.asarray(args["lengths"], np.int64)
        args["lengths"] = {
            "neg": lambda: np.where(np.arange(B) == B - 1, -1, good),
            "big": lambda: np.where(np.arange(B) == 0, T + 1 + int(rng.choice([0, 1, 1 << 40])), good),
            "float": lambda: good.astype(np.float64),
            "bool": lambda: good > 0,
            "2d": lambda: good[:, None],
            "short": lambda: good[1:] if B else np.zeros(1, np.int64),
            "object": lambda: good.astype(object),
        }[kind]()
        if kind in ("neg", "big") and B == 0:
            args["lengths"] = np.array([-1])        # still wrong: B=0 wants shape (0,)
        return args, kw, None, allowed
    if name == "step_mask":
        T, B = _TB(case)
        shape = (B, T) if case["batch_first"] else (T, B)
        good = np.ones(shape, bool)
        args["step_mask"] = {
            "int": lambda: good.astype(np.int32),
            "float": lambda: good.astype(dt),
            "transposed": lambda: good.T if T != B else np.ones((T + 1, B), bool),
            "short": lambda: good[:-1] if shape[0] else np.ones((1,) + shape[1:], bool),
            "zero_d": lambda: np.array(True),
        }[kind]()
        return args, kw, None, allowed
    if name == "packed":
        import fastrnn.functional as F
        lbr = kw.get("linear_before_reset", True)
        w_ih, w_hh, w_hr = args["w_ih"], args["w_hh"], args.get("w_hr")
        if kind == "other_array":
            kw["packed"] = F.pack_weights(family, np.array(w_ih), w_hh, w_hr=w_hr, linear_before_reset=lbr)
        elif kind == "wrong_family":
            other = {"rnn": "gru", "gru": "lstm", "lstm": "rnn"}[family]
            G = GATES[other]
            H = np.asarray(w_hh).shape[1]
            I = np.asarray(w_ih).shape[1]
            kw["packed"] = F.pack_weights(other, np.zeros((G * H, I), dt), np.zeros((G * H, H), dt))
        elif kind == "not_packed":
            kw["packed"] = (w_ih, w_hh)
        else:
            o = np.float32 if dt == np.float64 else np.float64
            kw["packed"] = F.pack_weights(family, np.asarray(w_ih, o), np.asarray(w_hh, o),
                                          w_hr=None if w_hr is None else np.asarray(w_hr, o),
                                          linear_before_reset=lbr)
        return args, kw, None, allowed
    # an array argument
    value = args.get(name)
    if value is None:
        value = np.zeros((2, 2), dt)
    args[name] = _spoiled(value, kind, rng, dt)
    if name in ("x", "w_ih") or kind == "other_float":
        allowed = set(ARG_NAMES) | {"(h0, c0)"}
    if name in ("h0", "c0") and family == "lstm" and kind in ("string", "dict", "ragged"):
        allowed |= {"(h0, c0)"}
    return args, kw, None, allowed


def _TB(case):
    return case["T"], case["B"]


def spoil_backward(case, dy, dstates, what):
    name, kind = what
    rng = np.random.default_rng(case["seed"] + 2)
    dt = np.dtype(case["dtype"])
    if name == "dy":
        base = dy if dy is not None else np.zeros((1, 1, 1), dt)
        return _spoiled(base, kind, rng, dt), dstates
    base = dstates[0] if dstates is not None and dstates[0] is not None else np.zeros((1, 1), dt)
    bad = _spoiled(base, kind, rng, dt)
    return dy, (bad,) + (tuple(dstates[1:]) if dstates is not None else ((None,) if len(_state_names(case)) > 1 else ()))


def _state_names(case):
    return ("h_n", "c_n") if FAMILY[case["variant"]] == "lstm" else ("h_n",)


def check_error(exc, allowed, what):
    assert isinstance(exc, (ValueError, TypeError, MemoryError)), \
        f"{what}: {type(exc).__name__} is not ValueError/TypeError/MemoryError: {exc}"
    msg = str(exc)
    head = msg.split(":", 1)[0]
    assert head in allowed, f"{what}: the message does not start with the argument's name {sorted(allowed)}: {msg!r}"
    assert "expected" in msg, f"{what}: the message does not say what was expected: {msg!r}"
    if not isinstance(exc, MemoryError):
        assert "got" in msg, f"{what}: the message does not say what was got: {msg!r}"


def check_invalid(case):
    """One spoiled argument: a clear error naming it (or, for the few spoils that leave a
    valid call, the reference's answer)."""
    import fastrnn.functional as F
    import fastrnn.reference as R
    family, args = build(case)
    kw = options(case)
    rng = np.random.default_rng(case["seed"] + 3)
    args, kw, bw_spoil, allowed = spoil(case, family, args, kw, rng)
    what = f"spoil {case['spoil']}"
    ref_kw = {k: v for k, v in kw.items() if k != "packed"}
    try:
        with np.errstate(all="ignore"):
            ref = call_forward(R, family, args, ref_kw)
        ref_exc = None
    except Exception as exc:  # noqa: BLE001 - compared below
        ref, ref_exc = None, exc
    before = snapshot(args)
    try:
        y, s, cache = call_forward(F, family, args, kw)
    except Exception as exc:  # noqa: BLE001 - judged by check_error
        check_error(exc, allowed, what)
        assert_unchanged(args, before, what)
        return f"refused {type(exc).__name__}"
    if "packed" in kw:
        raise AssertionError(f"{what}: the engine accepted foreign packed weights")
    if ref_exc is not None:
        raise AssertionError(f"{what}: the engine accepted what the reference refused ({ref_exc!r})")
    # every spoil is invalid by construction, except a longer or shorter x without the
    # arguments that would pin its T or B (then it is just another valid call)
    if not (case["spoil"][0] == "x" and case["spoil"][1] in ("grow", "shrink")) and bw_spoil is None:
        raise AssertionError(f"{what}: the engine accepted an invalid argument")
    y_r, s_r, cache_r = ref
    tol_f, tol_b = tolerances(y_r.dtype)
    assert_same(y, y_r, y_r.dtype, tol_f, f"{what}: y", nonfinite="exact")
    for a, b in zip(s, s_r):
        assert_same(a, b, y_r.dtype, tol_f, f"{what}: state", nonfinite="exact")
    if bw_spoil is None or cache is None:
        return "accepted"
    B, P = s[0].shape
    H = s[1].shape[1] if family == "lstm" else P
    dy, dstates = cotangents(case, family, args, y.shape, _state_shapes(family, B, H, P))
    dy, dstates = spoil_backward(case, dy, dstates, bw_spoil)
    bw_allowed = {bw_spoil[0], "(dh_n, dc_n)"}
    try:
        g = call_backward(F, family, dy, dstates, cache)
    except Exception as exc:  # noqa: BLE001
        check_error(exc, bw_allowed, what)
        # a refused backward leaves the cache usable
        call_backward(F, family, None, None, cache)
        return f"backward refused {type(exc).__name__}"
    raise AssertionError(f"{what}: backward accepted an invalid gradient (got keys {sorted(g)})")


# ---------------------------------------------------------------------------
# NaN / Inf / huge values (the "nonfinite" batch)

# NaN, +-Inf and a huge finite value, at random places, every variant, lengths and
# step masks included: the result must have non-finite values exactly where the
# reference has them, and match it elsewhere.
SPECIALS = (np.nan, np.inf, -np.inf)


def spoil_values(case, args):
    """Put case["nonfinite"] = [[name, special_index], ...] into copies of the arrays."""
    rng = np.random.default_rng(case["seed"] + 4)
    args = dict(args)
    for name, which in case["nonfinite"]:
        v = args.get(name)
        if not isinstance(v, np.ndarray) or v.size == 0 or v.dtype.kind != "f":
            continue
        v = np.array(v, copy=True)
        v.flat[int(rng.integers(v.size))] = SPECIALS[which]
        args[name] = v
    return args


def spoil_cotangents(case, dy, dstates):
    rng = np.random.default_rng(case["seed"] + 5)
    which = case["nonfinite_grads"]
    if dy is not None and dy.size:
        dy = np.array(dy, copy=True)
        dy.flat[int(rng.integers(dy.size))] = SPECIALS[which]
    if dstates is not None and dstates[-1] is not None and dstates[-1].size:
        last = np.array(dstates[-1], copy=True)
        last.flat[int(rng.integers(last.size))] = SPECIALS[(which + 1) % len(SPECIALS)]
        dstates = tuple(dstates[:-1]) + (last,)
    return dy, dstates


def check_nonfinite(case):
    family, args = build(case)
    args = spoil_values(case, args)
    return check_valid(case, args=args, nonfinite="exact")


# ---------------------------------------------------------------------------
# Hypothesis strategies (child side)

def case_strategy(batch):
    from hypothesis import strategies as st

    @st.composite
    def draw_case(draw):
        variant = draw(st.sampled_from(sorted(FAMILY)))
        family = FAMILY[variant]
        large = draw(st.integers(0, 9)) == 0          # one case in ten gets a larger size
        T = draw(st.sampled_from([0, 1, 2, 3, 5, 7] + ([16, 33] if large else [])))
        B = draw(st.sampled_from([0, 1, 1, 2, 3, 5] + ([13, 17] if large else [])))
        I = draw(st.sampled_from([0, 1, 2, 3, 7] + ([24] if large else [])))
        H = draw(st.sampled_from([1, 2, 3, 5, 8] + ([17, 33, 64, 129] if large else [])))
        case = {
            "variant": variant,
            "dtype": draw(st.sampled_from(["float32", "float64"])),
            "T": T, "B": B, "I": I, "H": H,
            "P": draw(st.integers(1, H + 3)),
            "reverse": draw(st.booleans()),
            "batch_first": draw(st.booleans()),
            "training": draw(st.sampled_from([True, True, False])),
            "lengths": draw(st.sampled_from(["none", "random", "random", "full", "zero"])),
            "lengths_dtype": draw(st.sampled_from(["int64", "int32", "uint8"])),
            "step_mask": draw(st.booleans()),
            "recurrent_mask": draw(st.booleans()),
            "bias": draw(st.sampled_from(["both", "none", "ih", "hh"])),
            "states": draw(st.sampled_from(["given", "none", "h_none"])),
            "packed": draw(st.booleans()),
            "num_threads": draw(st.sampled_from([None, 1, 2])),
            "dy": draw(st.sampled_from(["random", "none", "strided"])),
            "dstates": draw(st.sampled_from(["random", "none", "partial"])),
            "seed": draw(st.integers(0, 2 ** 31)),
        }
        names = ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_peep", "w_hr", "lengths", "step_mask",
                 "recurrent_mask"]
        layouts = {}
        for n in names:
            how = draw(st.sampled_from(LAYOUTS + ("contiguous",) * 4))
            if how == "list" and (case["packed"] or n in ("w_ih", "w_hh", "w_hr")) and case["packed"]:
                how = "contiguous"            # packed weights are tied to array objects
            layouts[n] = how
        if case["packed"]:
            for n in ("w_ih", "w_hh", "w_hr"):
                if layouts[n] == "list":
                    layouts[n] = "contiguous"
        case["layouts"] = layouts
        if batch == "invalid":
            name = draw(st.sampled_from(list(ARG_NAMES) + list(OPTION_SPOILS)))
            if name in OPTION_SPOILS:
                kind = draw(st.integers(0, len(OPTION_SPOILS[name]) - 1))
                if name in ("lengths", "step_mask", "packed", "dy", "dh_n"):
                    kind = OPTION_SPOILS[name][kind]
                if name in ("dy", "dh_n"):
                    case["training"] = True
                if name == "packed":
                    case["packed"] = False
                    for n in ("w_ih", "w_hh", "w_hr"):
                        if layouts[n] == "list":
                            layouts[n] = "contiguous"
            else:
                kind = draw(st.sampled_from(ARRAY_SPOILS))
                if family != "lstm" and name in ("c0", "w_peep", "w_hr"):
                    name = "h0"               # not an argument of rnn/gru_forward
            if name in ("linear_before_reset",) and not variant.startswith("gru"):
                name, kind = "reverse", 0
            if name == "nonlinearity" and not variant.startswith("rnn"):
                name, kind = "training", 0
            case["packed"] = case["packed"] and name not in ("x", "w_ih", "w_hh", "w_hr", "packed")
            case["spoil"] = [name, kind]
        if batch == "nonfinite":
            picks = draw(st.lists(st.tuples(st.sampled_from(["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh",
                                                             "w_peep", "w_hr", "recurrent_mask"]),
                                            st.integers(0, len(SPECIALS) - 1)), min_size=1, max_size=3))
            case["nonfinite"] = [list(p) for p in picks]
            case["nonfinite_grads"] = draw(st.sampled_from([None, 0]))
            case["packed"] = False
            case["layouts"] = {n: "contiguous" for n in names}
        return case

    return draw_case()


CHECKS = {"valid": check_valid, "invalid": check_invalid, "nonfinite": check_nonfinite}


def run_batch(batch, n):
    """Run `n` derandomized hypothesis examples of `batch`, printing each case first."""
    from hypothesis import HealthCheck, Phase, given, settings
    counts = {}

    @settings(max_examples=n, derandomize=True, database=None, deadline=None, print_blob=False,
              phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck))
    @given(case_strategy(batch))
    def prop(case):
        print("CASE " + json.dumps(case), flush=True)
        outcome = CHECKS[batch](case)
        counts[outcome] = counts.get(outcome, 0) + 1

    prop()
    print("DONE " + json.dumps({"batch": batch, "cases": sum(counts.values()), "outcomes": counts}), flush=True)


# ---------------------------------------------------------------------------
# The pytest side: one child per batch

def run_child(cmd, label, timeout=300):
    """A fuzz child's DONE summary (see conftest.run_fuzz_child)."""
    hint = "reproduce: python tests/test_fuzz_functional.py --case '<case>'\n"
    return run_fuzz_child(cmd, label, timeout, hint)[0]


def test_a_crashing_child_is_reported_with_its_case():
    """The harness itself: a segfault in the child fails the test and names the last case."""
    crash = ("import ctypes, sys; print('CASE {\"the\": \"case\"}', flush=True); "
             "ctypes.string_at(0)")
    with pytest.raises(pytest.fail.Exception) as info:
        run_child([sys.executable, "-c", crash], "crash")
    msg = str(info.value)
    assert "killed by signal" in msg and '{"the": "case"}' in msg, msg


@pytest.mark.parametrize("batch", BATCHES)
def test_fuzz_batch_in_subprocess(batch):
    pytest.importorskip("hypothesis")
    n = BATCHES[batch]
    summary = run_child([sys.executable, os.path.abspath(__file__), "--batch", batch, str(n)], batch)
    print(f"{batch}: {summary['cases']} cases, outcomes {summary['outcomes']}")
    assert summary["cases"] >= n * 0.9, f"{batch}: only {summary['cases']} of {n} cases ran"
    if batch == "invalid":   # the spoils must mostly be refused, or the batch tests nothing
        refused = sum(v for k, v in summary["outcomes"].items() if "refused" in k)
        assert refused >= summary["cases"] // 2, summary


# ---------------------------------------------------------------------------
# Explicit cases (in-process: deterministic, each one a regression test)

import fastrnn.functional as F  # noqa: E402
import fastrnn.reference as R  # noqa: E402

BASE = {"variant": "lstm_peep_proj", "dtype": "float64", "T": 3, "B": 2, "I": 3, "H": 4, "P": 3,
        "reverse": False, "batch_first": False, "training": True, "lengths": "random", "lengths_dtype": "int64",
        "step_mask": False, "recurrent_mask": False, "bias": "both", "states": "given", "packed": False,
        "num_threads": None, "dy": "random", "dstates": "random", "seed": 5, "layouts": {}}


def _case(**changes):
    return {**BASE, **changes}


_SPOIL_TARGETS = [(v, n) for v in ("rnn_tanh", "gru_orig", "lstm_peep_proj")
                  for n in ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "w_peep", "w_hr", "recurrent_mask")
                  if v.startswith("lstm") or n not in ("c0", "w_peep", "w_hr")]


@pytest.mark.parametrize("variant,name", _SPOIL_TARGETS)
@pytest.mark.parametrize("kind", ["object", "int", "bool", "zero_d"])
def test_object_int_bool_and_0d_arrays_are_refused_by_name(variant, name, kind):
    family, args = build(_case(variant=variant, recurrent_mask=True))
    args[name] = _spoiled(args[name], kind, np.random.default_rng(0), np.float64)
    with pytest.raises((TypeError, ValueError)) as info:
        call_forward(F, family, args, options(_case(variant=variant)))
    check_error(info.value, {name, "(h0, c0)"}, f"{name} as {kind}")
    want = TypeError if kind != "zero_d" else ValueError
    assert isinstance(info.value, want), info.value


def test_object_array_of_floats_is_refused_not_converted():
    """An object array holding floats is not silently converted (that would hide a
    caller's bug such as a list of arrays of different dtypes)."""
    family, args = build(_case(variant="gru"))
    args["x"] = args["x"].astype(object)
    with pytest.raises(TypeError, match=r"^x: expected dtype float32 or float64, got object"):
        call_forward(F, family, args, options(_case(variant="gru")))


@pytest.mark.parametrize("variant", ["rnn_relu", "gru", "lstm_peep_proj"])
def test_python_lists_everywhere_match_arrays(variant):
    layouts = {n: "list" for n in ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_peep", "w_hr",
                                   "step_mask", "recurrent_mask")}
    case = _case(variant=variant, step_mask=True, recurrent_mask=True, layouts=layouts)
    assert check_valid(case) in ("forward+backward", "forward (relu kink)")
    family, args = build(case)
    assert isinstance(args["x"], list) and isinstance(args["w_ih"], list)


def _nonfinite_params():
    for dtype in ("float32", "float64"):
        for where in ("x", "h0", "w_hh", "b_ih"):
            for special, sid in ((np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")):
                for variant in ("rnn_tanh", "rnn_relu", "gru", "gru_orig", "lstm", "lstm_peep_proj"):
                    yield pytest.param(variant, special, where, dtype, id=f"{dtype}-{where}-{sid}-{variant}")


@pytest.mark.parametrize("variant,special,where,dtype", list(_nonfinite_params()))
def test_nonfinite_values_propagate_like_the_reference(variant, special, where, dtype):
    case = _case(variant=variant, dtype=dtype, lengths="none", T=4, B=3)
    family, args = build(case)
    args[where] = np.array(args[where], copy=True)
    args[where].flat[1] = special
    check_valid(case, args=args, nonfinite="exact" if np.isnan(special) else "mask")
    # and the engine did not turn it into something finite: the output sees it
    y, s, _ = call_forward(F, family, args, options(case))
    if np.isnan(special) and where in ("x", "h0", "w_hh"):
        assert not np.isfinite(y).all() or not np.isfinite(s[0]).all(), "the non-finite value vanished"


def test_nan_in_a_padded_step_reaches_no_gradient():
    """Steps past a sample's length are not processed: a NaN there must not leak
    into y, the states or any gradient (not even as 0 * NaN)."""
    for variant in ("rnn_tanh", "gru", "lstm_peep_proj"):
        case = _case(variant=variant, lengths="none", T=4, B=2)
        family, args = build(case)
        args["x"] = np.array(args["x"], copy=True)
        args["x"][3, 1] = np.nan                              # sample 1 stops after 2 steps
        args["lengths"] = np.array([4, 2])
        check_valid(case, args=args, nonfinite="exact")
        y, s, cache = call_forward(F, family, args, options(case))
        g = call_backward(F, family, np.ones_like(y), None, cache)
        for k, v in g.items():
            assert np.isfinite(v).all(), f"{variant}: NaN of a padded step leaked into d{k}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_saturation_at_minus_infinity_is_exact(dtype):
    v = np.array([-np.inf, -1e30, -100.0], dtype)
    x = v.reshape(-1, 1, 1)
    y, _, _ = F.rnn_forward(x, None, np.ones((1, 1), dtype), np.zeros((1, 1), dtype), training=False)
    sig = []
    for value in v:                 # sigmoid through LSTM's o gate: y = sigmoid(b_o) * tanh(tanh(big) * 0.5)
        b = np.array([0, 0, 1e4, value], dtype)
        y_o, _, _ = F.lstm_forward(np.zeros((1, 1, 1), dtype), None, np.zeros((4, 1), dtype),
                                   np.zeros((4, 1), dtype), b, None, training=False)
        sig.append(float(y_o.ravel()[0]))
    assert y.ravel().tolist() == [-1.0, -1.0, -1.0], f"tanh: {y.ravel().tolist()}"
    assert sig == [0.0, 0.0, 0.0] if dtype == np.float32 else sig[:2] == [0.0, 0.0], f"sigmoid: {sig}"


def test_nan_gradient_through_inactive_relu():
    x = np.array([[[-1.0]], [[1.0]]])          # step 0: relu off (h = 0); step 1: on
    dy = np.array([[[0.0]], [[np.nan]]])
    out = {}
    for mod in (F, R):
        y, _, cache = mod.rnn_forward(x, None, np.ones((1, 1)), np.full((1, 1), 0.5), nonlinearity="relu")
        with np.errstate(all="ignore"):
            out[mod.__name__] = mod.rnn_backward(dy, None, cache)
    g, g_r = out["fastrnn.functional"], out["fastrnn.reference"]
    assert np.isnan(g_r["x"][0]).all() and np.isnan(g_r["h0"]).all()
    for k in g_r:
        assert_same(g[k], g_r[k], np.float64, 1e-12, f"d{k}", nonfinite="exact")


# --- sizes beyond 32-bit indices, built without allocating them ---------------------

def _zeros(shape, dt=np.float32):
    return np.broadcast_to(np.zeros((1,) * len(shape), dt), shape)


BIG = 1 << 31            # one more than a C int holds


@pytest.mark.parametrize("family,G", [("rnn", 1), ("gru", 3), ("lstm", 4)])
def test_gate_rows_beyond_int_are_refused_before_any_copy(family, G):
    """G*H > INT_MAX with broadcast (memoryless) weights: a ValueError naming w_ih,
    raised before the weights are copied (a copy would need 8+ GiB)."""
    H = BIG // G + 1
    x = np.zeros((2, 1, 1), np.float32)
    w_ih = _zeros((G * H, 1))
    w_hh = np.zeros((G, 1), np.float32)       # never looked at: w_ih is refused first
    fn = getattr(F, family + "_forward")
    with pytest.raises(ValueError, match=r"^w_ih: .*G\*H"):
        fn(x, None, w_ih, w_hh)


def test_input_size_beyond_int_is_refused_before_any_copy():
    I = BIG
    x = _zeros((1, 1, I))
    with pytest.raises(ValueError, match=r"^(x|w_ih): .*I"):
        F.gru_forward(x, None, _zeros((3, I)), np.zeros((3, 1), np.float32))


def test_projection_size_beyond_int_is_refused_before_any_copy():
    P = BIG
    x = np.zeros((1, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"^(w_hr|w_ih): .*P"):
        F.lstm_forward(x, None, np.zeros((4, 1), np.float32), np.zeros((4, 1), np.float32), w_hr=_zeros((P, 1)))


@pytest.mark.parametrize("training", [True, False])
def test_total_elements_beyond_int_is_a_memory_error_or_refusal(training):
    """T*B and G*H each fit a C int, but T*B*G*H (the gates, y) is far beyond 2**31 and
    beyond this machine's memory: a clear MemoryError or ValueError, nothing written
    through a wrapped index, no crash."""
    T, B, H = 1 << 16, 1 << 10, 1 << 12          # T*B = 2**26 rows, y alone = 2**38 elements
    x = _zeros((T, B, 1))
    w_ih = _zeros((4 * H, 1))
    w_hh = _zeros((4 * H, H))
    with pytest.raises((MemoryError, ValueError)) as info:
        F.lstm_forward(x, None, w_ih, w_hh, training=training)
    msg = str(info.value)
    assert msg and ("y" in msg or "bytes" in msg or "allocate" in msg or "x:" in msg), msg


# ---------------------------------------------------------------------------
# Script entry: the child

if __name__ == "__main__":
    sys.path[:0] = [ROOT, TESTS_DIR]
    if sys.argv[1] == "--batch":
        run_batch(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "--case":
        one = json.loads(sys.argv[2])
        batch = "invalid" if "spoil" in one else "nonfinite" if "nonfinite" in one else "valid"
        print(CHECKS[batch](one))
    else:
        raise SystemExit("usage: test_fuzz_functional.py --batch NAME N | --case JSON")
