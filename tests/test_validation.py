"""Bad input is refused with a clear Python exception, before any kernel runs.

DESIGN.md: "Bad input gets a ValueError/TypeError that names the argument, the
expected and the actual shape or dtype, before any kernel runs. Nothing is left
half-written." Every case runs on `fastrnn.functional` and `fastrnn.reference`
(same API, same `_validate`). ValueError for shapes and values, TypeError for
dtypes and types. Each message must start with the argument's name and contain
the offending shape / dtype / value (and, where one exists, the expected one).

While a bad call runs, the compiled entry points (`_engine.forward/backward`)
are replaced by a function that fails the test: validation must stop the call
before any kernel is reached, so a bad call can never crash or hang in C.

Also: a failed call leaves the caller's arrays (and a backward's cache) as they
were, and the thread-count setting (`set_num_threads`, `num_threads(...)`,
OMP_NUM_THREADS) validates and restores itself.
"""
import contextlib
import importlib
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import fastrnn
import fastrnn.functional
from fastrnn import _engine

MODULES = ["functional", "reference"]
FAMILIES = ["rnn", "gru", "lstm"]
GATES = {"rnn": 1, "gru": 3, "lstm": 4}

# Distinct sizes, so that every shape in a message is unambiguous.
T, B, I, H, P = 3, 2, 4, 5, 7          # P: projection size for the w_hr cases


@pytest.fixture(params=MODULES)
def mod(request):
    """Each implementation of the functional API in turn."""
    return importlib.import_module("fastrnn." + request.param)


def _shape(s):
    """A shape the way the messages print it: (3, 2, 4), (5,), ()."""
    return "(" + ", ".join(map(str, s)) + ("," if len(s) == 1 else "") + ")"


@contextlib.contextmanager
def refused(exc, name, *parts):
    """Expect `exc` whose message starts with `name:` and contains every one of `parts`;
    and no kernel may run meanwhile."""
    def no_kernel(*args, **kwargs):
        raise AssertionError("a kernel was called for an invalid argument")

    pattern = "^" + re.escape(name + ":") + "".join(f"(?=.*{re.escape(str(p))})" for p in parts)
    saved = _engine.forward, _engine.backward
    _engine.forward = _engine.backward = no_kernel
    try:
        with pytest.raises(exc, match=pattern) as info:
            yield info
    finally:
        _engine.forward, _engine.backward = saved


def arrays(family, dtype=np.float64, *, proj=False, peep=False, seed=0):
    """Valid arguments of a small problem (time-major), by argument name."""
    rng = np.random.default_rng(seed)
    G = GATES[family]
    proj = proj and family == "lstm"
    p = P if proj else H
    a = {
        "x": rng.standard_normal((T, B, I)),
        "h0": rng.standard_normal((B, p)),
        "w_ih": rng.uniform(-0.4, 0.4, (G * H, I)),
        "w_hh": rng.uniform(-0.4, 0.4, (G * H, p)),
        "b_ih": rng.uniform(-0.4, 0.4, G * H),
        "b_hh": rng.uniform(-0.4, 0.4, G * H),
    }
    if family == "lstm":
        a["c0"] = rng.standard_normal((B, H))
        if peep:
            a["w_peep"] = rng.uniform(-0.4, 0.4, (3, H))
        if proj:
            a["w_hr"] = rng.uniform(-0.4, 0.4, (P, H))
    return {k: v.astype(dtype) for k, v in a.items()}


_UNSET = object()


def fwd(mod, family, a, state=_UNSET, **kw):
    """Call `<family>_forward` with the arrays `a`; for LSTM, `state` overrides (h0, c0)."""
    fn = getattr(mod, family + "_forward")
    if family == "lstm":
        hc0 = (a.get("h0"), a.get("c0")) if state is _UNSET else state
        extra = {k: a[k] for k in ("w_peep", "w_hr") if k in a}
        return fn(a["x"], hc0, a["w_ih"], a["w_hh"], a.get("b_ih"), a.get("b_hh"), **extra, **kw)
    return fn(a["x"], a.get("h0"), a["w_ih"], a["w_hh"], a.get("b_ih"), a.get("b_hh"), **kw)


def bwd(mod, family, dy, dh_n, dc_n, cache, dstate=_UNSET):
    """Call `<family>_backward`; for LSTM, `dstate` overrides (dh_n, dc_n)."""
    fn = getattr(mod, family + "_backward")
    if family == "lstm":
        return fn(dy, (dh_n, dc_n) if dstate is _UNSET else dstate, cache)
    return fn(dy, dh_n, cache)


def snapshot(a):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in a.items()}


def assert_unchanged(a, before):
    for k, v in before.items():
        if isinstance(v, np.ndarray):
            assert a[k].dtype == v.dtype and np.array_equal(a[k], v, equal_nan=True), \
                f"{k} was modified by a failed call"


# ---------------------------------------------------------------------------
# x

@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("shape", [(T, B * I), (T, B, I, 1), (T * B * I,), ()])
@pytest.mark.parametrize("batch_first", [False, True])
def test_x_not_3d(mod, family, shape, batch_first):
    a = arrays(family)
    a["x"] = np.zeros(shape)
    layout = "(B, T, I)" if batch_first else "(T, B, I)"
    with refused(ValueError, "x", "3-d", layout, _shape(shape)):
        fwd(mod, family, a, batch_first=batch_first)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.complex128, np.float16, np.bool_, object])
def test_x_bad_dtype(mod, family, dtype):
    a = arrays(family)
    a["x"] = np.ones((T, B, I), dtype)
    with refused(TypeError, "x", "float32 or float64", np.dtype(dtype).name if dtype is not object else "object"):
        fwd(mod, family, a)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("value", [None, "abc", [[1.0], [1.0, 2.0]]], ids=["None", "str", "ragged"])
def test_x_not_an_array(mod, family, value):
    a = arrays(family)
    a["x"] = value
    with refused(TypeError, "x", "float32 or float64"):
        fwd(mod, family, a)


def test_x_nested_list_is_accepted(mod):
    a = arrays("gru")
    y, _, _ = fwd(mod, "gru", dict(a, x=a["x"].tolist()))
    y_ref, _, _ = fwd(mod, "gru", a)
    assert np.array_equal(y, y_ref)


# ---------------------------------------------------------------------------
# Mixed dtypes: everything must share x's dtype

MIXED = [(fam, name) for fam in FAMILIES
         for name in ("h0", "w_ih", "w_hh", "b_ih", "b_hh") + (("c0", "w_peep", "w_hr") if fam == "lstm" else ())]


@pytest.mark.parametrize("x_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("family,name", MIXED)
def test_mixed_dtypes(mod, family, name, x_dtype):
    other = np.float64 if x_dtype == np.float32 else np.float32
    a = arrays(family, x_dtype, peep=True, proj=True)
    a[name] = a[name].astype(other)
    with refused(TypeError, name, np.dtype(x_dtype).name, np.dtype(other).name):
        fwd(mod, family, a)


@pytest.mark.parametrize("family", FAMILIES)
def test_integer_weights(mod, family):
    a = arrays(family)
    a["w_hh"] = np.ones(a["w_hh"].shape, np.int64)
    with refused(TypeError, "w_hh", "float64", "int64"):
        fwd(mod, family, a)


# ---------------------------------------------------------------------------
# Shapes

def _bad_shapes(family):
    G = GATES[family]
    cases = [("w_ih", (G * H + 1, I)), ("w_hh", (H, G * H))] if G > 1 else []   # not a multiple
    cases += [                                                                  # of G; transposed
        ("w_ih", (G * H, I + 1)),          # wrong I
        ("w_ih", (G * H,)),                # 1-d
        ("w_ih", (0, I)),                  # H = 0
        ("w_hh", (G * H, H + 1)),
        ("w_hh", (G * H + G, H)),          # (G*(H+1), H): disagrees with w_ih
        ("b_ih", (G * H + 1,)),
        ("b_ih", (1, G * H)),
        ("b_hh", (G * H - 1,)),
        ("b_hh", (G * H, 1)),
        ("h0", (B + 1, H)),
        ("h0", (B, H + 1)),
        ("h0", (H,)),                      # no broadcasting of a missing batch axis
        ("h0", (1, B, H)),
    ]
    if family == "lstm":
        cases += [("c0", (B, H + 1)), ("c0", (B + 1, H)), ("c0", (H,)),
                  ("w_peep", (3, H + 1)), ("w_peep", (4, H)), ("w_peep", (3 * H,))]
    return [(family, name, shape) for name, shape in cases]


@pytest.mark.parametrize("family,name,shape", [c for f in FAMILIES for c in _bad_shapes(f)])
def test_bad_shape(mod, family, name, shape):
    a = arrays(family, peep=family == "lstm")
    a[name] = np.zeros(shape)
    with refused(ValueError, name, _shape(shape)):
        fwd(mod, family, a)


@pytest.mark.parametrize("name,shape", [
    ("w_hr", (P, H + 1)),          # wrong H
    ("w_hr", (P,)),
    ("w_hr", (0, H)),              # P = 0
    ("w_hh", (4 * H, H)),          # must be (4H, P) with a projection
    ("h0", (B, H)),                # must be (B, P)
    ("c0", (B, P)),                # c stays (B, H)
])
def test_bad_shape_with_projection(mod, name, shape):
    a = arrays("lstm", proj=True)
    a[name] = np.zeros(shape)
    with refused(ValueError, name, _shape(shape)):
        fwd(mod, "lstm", a)


def test_bad_shape_messages_give_the_expected_shape(mod):
    a = arrays("gru")
    a["w_hh"] = np.zeros((3 * H, H + 1))
    with refused(ValueError, "w_hh", _shape((3 * H, H)), _shape((3 * H, H + 1))):
        fwd(mod, "gru", a)
    a = arrays("lstm")
    a["c0"] = np.zeros((B + 1, H))
    with refused(ValueError, "c0", _shape((B, H)), _shape((B + 1, H))):
        fwd(mod, "lstm", a)


@pytest.mark.parametrize("family", ["rnn", "gru"])
@pytest.mark.parametrize("name,shape", [("w_peep", (3, H)), ("w_hr", (P, H))])
def test_lstm_only_options_refused_by_rnn_and_gru(mod, family, name, shape):
    a = arrays(family)
    with pytest.raises(TypeError, match=re.escape(name)):
        getattr(mod, family + "_forward")(a["x"], a["h0"], a["w_ih"], a["w_hh"],
                                          **{name: np.zeros(shape)})


# ---------------------------------------------------------------------------
# lengths

@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("lengths", [np.array([1, 2, 3]), np.array([1]), np.array([[1], [2]]),
                                     np.array(2), np.array([], np.int64)],
                         ids=["B+1", "1", "B-by-1", "scalar", "empty"])
def test_lengths_bad_shape(mod, family, lengths):
    with refused(ValueError, "lengths", _shape((B,)), _shape(lengths.shape)):
        fwd(mod, family, arrays(family), lengths=lengths)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("lengths", [np.array([1.0, 2.0]), np.array([True, False]),
                                     [1, None], ["1", "2"]], ids=["float", "bool", "None", "str"])
def test_lengths_bad_dtype(mod, family, lengths):
    dtype = np.asarray(lengths).dtype
    with refused(TypeError, "lengths", "integer", str(dtype)):
        fwd(mod, family, arrays(family), lengths=lengths)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("lengths,bad", [([2, -1], -1), ([T + 1, 1], T + 1), ([0, 10**6], 10**6),
                                         (np.array([1, 2**63 + 5], np.uint64), 2**63 + 5)],
                         ids=["negative", "T+1", "huge", "uint64-huge"])
def test_lengths_out_of_range(mod, family, lengths, bad):
    with refused(ValueError, "lengths", f"0..{T}", f"got {bad}"):
        fwd(mod, family, arrays(family), lengths=lengths)


@pytest.mark.parametrize("lengths", [[3, 1], (3, 1), np.array([3, 1], np.int32), np.array([3, 1], np.uint8)],
                         ids=["list", "tuple", "int32", "uint8"])
def test_lengths_any_integer_kind_is_accepted(mod, lengths):
    a = arrays("lstm")
    y, _, _ = fwd(mod, "lstm", a, lengths=lengths)
    y_ref, _, _ = fwd(mod, "lstm", a, lengths=np.array([3, 1], np.int64))
    assert np.array_equal(y, y_ref)


# ---------------------------------------------------------------------------
# Options

@pytest.mark.parametrize("value", ["sigmoid", "TANH", "", None, 1, ["tanh"]])
def test_nonlinearity_invalid(mod, value):
    with refused(ValueError, "nonlinearity", "'tanh' or 'relu'", repr(value)):
        fwd(mod, "rnn", arrays("rnn"), nonlinearity=value)


def test_nonlinearity_array_is_refused_by_name(mod):
    # An array compares element-wise with "tanh"; it must still be refused by name.
    with refused(ValueError, "nonlinearity", "'tanh' or 'relu'"):
        fwd(mod, "rnn", arrays("rnn"), nonlinearity=np.array(["tanh"]))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("value,exc", [(0, ValueError), (-1, ValueError), (np.int64(0), ValueError),
                                       (1.5, TypeError), (2.0, TypeError), (True, TypeError),
                                       (np.bool_(True), TypeError), ("2", TypeError)],
                         ids=["0", "-1", "np0", "1.5", "2.0", "True", "npTrue", "str"])
def test_num_threads_invalid(mod, family, value, exc):
    with refused(exc, "num_threads", "positive int", repr(value) if exc is TypeError else str(value)):
        fwd(mod, family, arrays(family), num_threads=value)


@pytest.mark.parametrize("value", [np.int64(2), np.int32(1), 64])
def test_num_threads_valid_kinds(mod, value):
    a = arrays("gru")
    y, _, _ = fwd(mod, "gru", a, num_threads=value)
    assert np.array_equal(y, fwd(mod, "gru", a, num_threads=1)[0])


def test_num_threads_beyond_c_int(mod):
    # A huge (positive) thread count must either run (kernels use fewer threads) or
    # be refused by name; never an OverflowError from inside the engine call.
    a = arrays("gru")
    try:
        y, _, _ = fwd(mod, "gru", a, num_threads=2**40)
    except ValueError as e:
        assert str(e).startswith("num_threads:"), str(e)
    else:
        assert np.array_equal(y, fwd(mod, "gru", a, num_threads=1)[0])


FLAGS = [(fam, flag) for fam in FAMILIES for flag in ("reverse", "batch_first", "training")] + \
        [("gru", "linear_before_reset")]


@pytest.mark.parametrize("family,flag", FLAGS)
@pytest.mark.parametrize("value", ["yes", None, 1, np.array([True])], ids=["yes", "None", "1", "array"])
def test_flag_not_bool(mod, family, flag, value):
    with refused(TypeError, flag, "True or False", repr(value)):
        fwd(mod, family, arrays(family), **{flag: value})


def test_numpy_bool_flags_are_accepted(mod):
    a = arrays("gru")
    y, _, cache = fwd(mod, "gru", a, reverse=np.bool_(True), training=np.bool_(False))
    assert cache is None
    assert np.array_equal(y, fwd(mod, "gru", a, reverse=True)[0])


# ---------------------------------------------------------------------------
# LSTM's state argument

@pytest.mark.parametrize("state", [np.zeros((B, H)), np.zeros((2, B, H)), "h0c0", 0.0],
                         ids=["array", "stacked-array", "str", "float"])
def test_lstm_state_not_a_tuple(mod, state):
    with refused(TypeError, "(h0, c0)", "tuple of 2", type(state).__name__):
        fwd(mod, "lstm", arrays("lstm"), state=state)


@pytest.mark.parametrize("n", [0, 1, 3])
def test_lstm_state_wrong_length(mod, n):
    a = arrays("lstm")
    state = (a["h0"], a["c0"], a["c0"])[:n]
    with refused(TypeError, "(h0, c0)", "tuple of 2", "tuple"):
        fwd(mod, "lstm", a, state=state)


@pytest.mark.parametrize("n", [1, 3])
def test_lstm_state_wrong_length_message_gives_the_length(mod, n):
    # "the expected and the actual": the message should say how many items it got.
    a = arrays("lstm")
    state = (a["h0"], a["c0"], a["c0"])[:n]
    with refused(TypeError, "(h0, c0)", "tuple of 2", str(n)):
        fwd(mod, "lstm", a, state=state)


def test_lstm_state_parts_may_be_none(mod):
    a = arrays("lstm")
    zeros = (np.zeros((B, H)), np.zeros((B, H)))
    y0 = fwd(mod, "lstm", a, state=zeros)[0]
    for state in (None, (None, None), [None, None], (None, zeros[1]), (zeros[0], None)):
        assert np.array_equal(fwd(mod, "lstm", a, state=state)[0], y0)


# ---------------------------------------------------------------------------
# Backward

def _trained(mod, family, dtype=np.float64, **kw):
    """A valid training forward: (arrays, y, h_n, c_n, cache)."""
    a = arrays(family, dtype, **{k: kw.pop(k) for k in ("proj", "peep") if k in kw})
    if kw.get("batch_first"):
        a["x"] = np.ascontiguousarray(a["x"].transpose(1, 0, 2))
    y, hs, cache = fwd(mod, family, a, **kw)
    h_n, c_n = hs if family == "lstm" else (hs, None)
    return a, y, h_n, c_n, cache


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("batch_first", [False, True])
def test_dy_wrong_shape(mod, family, batch_first):
    _, y, _, _, cache = _trained(mod, family, batch_first=batch_first)
    good = (B, T, H) if batch_first else (T, B, H)
    assert y.shape == good
    other = (T, B, H) if batch_first else (B, T, H)       # the other layout
    for shape in (other, (T + 1, B, H), good[:2], good + (1,), (good[0], good[1], H + 1)):
        with refused(ValueError, "dy", _shape(good), _shape(shape)):
            bwd(mod, family, np.zeros(shape), None, None, cache)
    assert not cache.used
    bwd(mod, family, np.ones(good), None, None, cache)     # still usable


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("fwd_dtype,dy_dtype", [(np.float64, np.float32), (np.float32, np.float64),
                                                (np.float64, np.int64), (np.float32, np.complex64)])
def test_dy_wrong_dtype(mod, family, fwd_dtype, dy_dtype):
    _, y, _, _, cache = _trained(mod, family, fwd_dtype)
    with refused(TypeError, "dy", np.dtype(fwd_dtype).name, np.dtype(dy_dtype).name):
        bwd(mod, family, np.ones(y.shape, dy_dtype), None, None, cache)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("shape", [(B, H + 1), (B + 1, H), (H,), (1, B, H)])
def test_dh_n_wrong_shape(mod, family, shape):
    _, _, _, _, cache = _trained(mod, family)
    with refused(ValueError, "dh_n", _shape((B, H)), _shape(shape)):
        bwd(mod, family, None, np.zeros(shape), None, cache)


@pytest.mark.parametrize("family", FAMILIES)
def test_dh_n_wrong_dtype(mod, family):
    _, _, _, _, cache = _trained(mod, family, np.float32)
    with refused(TypeError, "dh_n", "float32", "float64"):
        bwd(mod, family, None, np.zeros((B, H)), None, cache)


@pytest.mark.parametrize("shape", [(B, H + 1), (B + 1, H), (H,)])
def test_dc_n_wrong_shape(mod, shape):
    _, _, _, _, cache = _trained(mod, "lstm")
    with refused(ValueError, "dc_n", _shape((B, H)), _shape(shape)):
        bwd(mod, "lstm", None, None, np.zeros(shape), cache)


def test_dc_n_wrong_dtype(mod):
    _, _, _, _, cache = _trained(mod, "lstm")
    with refused(TypeError, "dc_n", "float64", "float32"):
        bwd(mod, "lstm", None, None, np.zeros((B, H), np.float32), cache)


def test_backward_shapes_with_projection(mod):
    _, y, _, _, cache = _trained(mod, "lstm", proj=True)
    assert y.shape == (T, B, P)
    with refused(ValueError, "dy", _shape((T, B, P)), _shape((T, B, H))):
        bwd(mod, "lstm", np.zeros((T, B, H)), None, None, cache)
    with refused(ValueError, "dh_n", _shape((B, P)), _shape((B, H))):
        bwd(mod, "lstm", None, np.zeros((B, H)), None, cache)
    with refused(ValueError, "dc_n", _shape((B, H)), _shape((B, P))):
        bwd(mod, "lstm", None, None, np.zeros((B, P)), cache)
    assert sorted(bwd(mod, "lstm", None, None, None, cache)) == \
        sorted(["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr"])


@pytest.mark.parametrize("dstate", [np.zeros((B, H)), (np.zeros((B, H)),), [None] * 3],
                         ids=["array", "1-tuple", "3-list"])
def test_lstm_backward_state_not_a_pair(mod, dstate):
    _, _, _, _, cache = _trained(mod, "lstm")
    with refused(TypeError, "(dh_n, dc_n)", "tuple of 2", type(dstate).__name__):
        bwd(mod, "lstm", None, None, None, cache, dstate=dstate)
    assert not cache.used


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("cache", [None, {}, "cache", 0], ids=["None", "dict", "str", "int"])
def test_cache_not_a_cache(mod, family, cache):
    got = "None" if cache is None else type(cache).__name__
    with refused(TypeError, "cache", "training=True", got):
        bwd(mod, family, None, None, None, cache)


@pytest.mark.parametrize("family", FAMILIES)
def test_cache_of_an_inference_forward(mod, family):
    _, _, _, _, cache = _trained(mod, family, training=False)
    assert cache is None
    with refused(TypeError, "cache", "training=True", "None"):
        bwd(mod, family, None, None, None, cache)


@pytest.mark.parametrize("src,dst", [(s, d) for s in FAMILIES for d in FAMILIES if s != d])
def test_cache_from_another_cell(mod, src, dst):
    _, _, _, _, cache = _trained(mod, src)
    with refused(ValueError, "cache", f"{dst}_forward", f"{src}_forward"):
        bwd(mod, dst, None, None, None, cache)
    assert not cache.used
    bwd(mod, src, None, None, None, cache)          # still serves its own cell


@pytest.mark.parametrize("family", FAMILIES)
def test_cache_used_twice(mod, family):
    _, _, _, _, cache = _trained(mod, family)
    bwd(mod, family, None, None, None, cache)
    assert cache.used
    with refused(ValueError, "cache", "fresh", "already consumed"):
        bwd(mod, family, None, None, None, cache)


@pytest.mark.parametrize("family", FAMILIES)
def test_cache_from_the_other_module(family):
    """A reference cache given to the engine's backward (and vice versa) is refused by
    name, and is not spent by the failed call."""
    F, R = fastrnn.functional, fastrnn.reference
    for producer, consumer in ((R, F), (F, R)):
        _, _, _, _, cache = _trained(producer, family)
        with pytest.raises((TypeError, ValueError), match="^cache:"):
            bwd(consumer, family, None, None, None, cache)
        assert not cache.used, f"a {producer.__name__} cache was spent by a failed {consumer.__name__} call"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("batch_first", [False, True])
def test_cache_still_usable_after_failed_backward(mod, family, batch_first):
    """Every kind of refused backward leaves the cache fresh and the caller's gradients
    untouched; the next valid call gives the same grads as an untouched cache."""
    a, y, h_n, c_n, cache = _trained(mod, family, batch_first=batch_first, lengths=[3, 1], reverse=True)
    _, _, _, _, fresh = _trained(mod, family, batch_first=batch_first, lengths=[3, 1], reverse=True)
    rng = np.random.default_rng(1)
    dy = rng.standard_normal(y.shape)
    dh_n = rng.standard_normal(h_n.shape)
    dc_n = rng.standard_normal((B, H)) if family == "lstm" else None
    given = {"dy": dy, "dh_n": dh_n, "dc_n": dc_n}
    before = snapshot(given)

    bad_calls = [
        ("dy", ValueError, lambda: bwd(mod, family, dy[:, :1], dh_n, dc_n, cache)),
        ("dy", TypeError, lambda: bwd(mod, family, dy.astype(np.float32), dh_n, dc_n, cache)),
        ("dh_n", ValueError, lambda: bwd(mod, family, dy, dh_n[:1], dc_n, cache)),
        ("dh_n", TypeError, lambda: bwd(mod, family, dy, dh_n.astype(np.float32), dc_n, cache)),
    ]
    if family == "lstm":
        bad_calls += [
            ("dc_n", ValueError, lambda: bwd(mod, family, dy, dh_n, dc_n[:, :1], cache)),
            ("(dh_n, dc_n)", TypeError, lambda: bwd(mod, family, dy, None, None, cache, dstate=dh_n)),
        ]
    for name, exc, call in bad_calls:
        with refused(exc, name):
            call()
        assert not cache.used
    assert_unchanged(given, before)

    g = bwd(mod, family, dy, dh_n, dc_n, cache)
    g_fresh = bwd(mod, family, dy, dh_n, dc_n, fresh)
    assert set(g) == set(g_fresh)
    for k in g:
        assert np.array_equal(g[k], g_fresh[k]), k
    assert_unchanged(given, before)


# ---------------------------------------------------------------------------
# Nothing half-written

FAILING_FORWARDS = {
    # name of the bad argument -> (exception, change to a valid call); the ones late in
    # the checking order matter most: by then every array has been converted.
    "lengths": (ValueError, {"lengths": [T + 1, 0]}),
    "lengths-dtype": (TypeError, {"lengths": [1.0, 2.0]}),
    "c0": (ValueError, {"c0": np.zeros((B, H + 1))}),
    "h0": (TypeError, {"h0": np.zeros((B, H), np.float32)}),
    "w_hh": (ValueError, {"w_hh": np.zeros((1, 1))}),
    "num_threads": (ValueError, {"num_threads": 0}),
    "nonlinearity": (ValueError, {"nonlinearity": "gelu"}),
}


@pytest.mark.parametrize("family,case", [(f, c) for f in FAMILIES for c in FAILING_FORWARDS
                                         if (c != "c0" or f == "lstm") and (c != "nonlinearity" or f == "rnn")])
@pytest.mark.parametrize("layout", ["contiguous", "fortran", "batch_first"])
def test_failed_forward_modifies_nothing(mod, family, case, layout):
    exc, change = FAILING_FORWARDS[case]
    a = arrays(family, peep=family == "lstm")
    if layout == "fortran":
        a = {k: np.asfortranarray(v) for k, v in a.items()}
    if layout == "batch_first":
        a["x"] = np.ascontiguousarray(a["x"].transpose(1, 0, 2))
    kw = {k: v for k, v in change.items() if k in ("lengths", "num_threads", "nonlinearity")}
    a.update({k: v for k, v in change.items() if k not in kw})
    lengths = kw.get("lengths")
    before = snapshot(a)
    lengths_before = None if lengths is None else np.array(lengths)
    old_threads = fastrnn.get_num_threads()
    with refused(exc, case.split("-")[0]):
        fwd(mod, family, a, batch_first=layout == "batch_first", **kw)
    assert_unchanged(a, before)
    if lengths is not None:
        assert np.array_equal(np.asarray(lengths), lengths_before)
    assert fastrnn.get_num_threads() == old_threads


def test_failed_forward_on_read_only_inputs(mod):
    a = arrays("lstm", peep=True)
    for v in a.values():
        v.flags.writeable = False
    with refused(ValueError, "lengths"):
        fwd(mod, "lstm", a, lengths=[-1, 0])
    assert all(not v.flags.writeable for v in a.values())
    fwd(mod, "lstm", a, lengths=[1, 0])      # and a valid call works on them


# ---------------------------------------------------------------------------
# Thread settings

@pytest.fixture
def restore_threads():
    old = fastrnn.get_num_threads()
    yield old
    fastrnn.set_num_threads(old)


@pytest.mark.parametrize("value,exc", [(0, ValueError), (-1, ValueError), ("2", TypeError),
                                       (1.5, TypeError), (True, TypeError), (None, TypeError)])
def test_set_num_threads_invalid(restore_threads, value, exc):
    with pytest.raises(exc, match=re.escape(repr(value) if exc is TypeError else str(value))):
        fastrnn.set_num_threads(value)
    assert fastrnn.get_num_threads() == restore_threads


def test_set_num_threads_valid(restore_threads):
    fastrnn.set_num_threads(3)
    assert fastrnn.get_num_threads() == 3
    fastrnn.set_num_threads(np.int64(1))
    assert fastrnn.get_num_threads() == 1 and type(fastrnn.get_num_threads()) is int


def test_num_threads_context_restores(restore_threads):
    fastrnn.set_num_threads(2)
    with fastrnn.num_threads(1):
        assert fastrnn.get_num_threads() == 1
        with fastrnn.num_threads(3):
            assert fastrnn.get_num_threads() == 3
        assert fastrnn.get_num_threads() == 1
    assert fastrnn.get_num_threads() == 2


def test_num_threads_context_restores_when_the_block_raises(restore_threads):
    fastrnn.set_num_threads(2)
    with pytest.raises(KeyError):
        with fastrnn.num_threads(1):
            assert fastrnn.get_num_threads() == 1
            raise KeyError("boom")
    assert fastrnn.get_num_threads() == 2
    # ... and when a refused call inside the block raises
    with pytest.raises(ValueError, match="^lengths:"):
        with fastrnn.num_threads(1):
            fwd(fastrnn.functional, "gru", arrays("gru"), lengths=[-1, 0])
    assert fastrnn.get_num_threads() == 2


@pytest.mark.parametrize("value,exc", [(0, ValueError), ("1", TypeError)])
def test_num_threads_context_invalid(restore_threads, value, exc):
    with pytest.raises(exc, match="num_threads|n:"):
        with fastrnn.num_threads(value):
            pytest.fail("the block must not run")
    assert fastrnn.get_num_threads() == restore_threads


def _default_threads_in_subprocess(omp):
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if omp is not None:
        env["OMP_NUM_THREADS"] = omp
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", "import fastrnn; print(fastrnn.get_num_threads())"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


@pytest.mark.parametrize("omp,expected", [("1", 1), ("3", 3), ("4,2", 4)])
def test_default_threads_follow_omp_num_threads(omp, expected):
    assert _default_threads_in_subprocess(omp) == expected


@pytest.mark.parametrize("omp", [None, "", "0", "abc"], ids=["unset", "empty", "0", "abc"])
def test_default_threads_without_a_usable_omp_num_threads(omp):
    assert _default_threads_in_subprocess(omp) == len(os.sched_getaffinity(0))


# --- sizes beyond the kernels' int range, and byte order -------------------------------

@pytest.mark.parametrize("mod", [pytest.param("functional"), pytest.param("reference")])
def test_too_many_rows_is_refused_before_any_copy(mod):
    import importlib
    M = importlib.import_module("fastrnn." + mod)
    T = 1 << 31                                   # T*B = 2**31 rows: one more than a C int holds
    x = np.broadcast_to(np.zeros((1, 1, 1), np.float32), (T, 1, 1))   # no memory behind it
    w_ih = np.zeros((2, 1), np.float32)
    w_hh = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match=r"^x: .*T\*B.*T=2147483648, B=1"):
        M.rnn_forward(x, None, w_ih, w_hh)


def test_big_endian_inputs_are_a_layout():
    import fastrnn.functional as F
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    w_ih = rng.standard_normal((15, 3)).astype(np.float32)
    w_hh = rng.standard_normal((15, 5)).astype(np.float32)
    y, h, _ = F.gru_forward(x, None, w_ih, w_hh, training=False)
    xb, wib, whb = (a.astype(a.dtype.newbyteorder(">")) for a in (x, w_ih, w_hh))
    yb, hb, _ = F.gru_forward(xb, None, wib, whb, training=False)
    assert yb.dtype == np.float32 and np.array_equal(y, yb) and np.array_equal(h, hb)
