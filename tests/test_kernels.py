"""The compiled engine (`fastrnn.functional`) against `fastrnn.reference`, and the
promises of the functional API (DESIGN.md) checked on both modules.

- test_matches_reference: every cell variant x option x dtype x odd size, forward
  outputs, final states and every gradient, with 1 and 2 threads (which must
  also agree bit for bit), and the training=False forward.
- test_thread_count_does_not_change_results: bigger problems, 1 vs 2 vs 3 threads.
- The API tests run on both modules (`mod` fixture): finite differences, inputs
  never modified, outputs never alias inputs, any layout / read-only inputs,
  padding ignored, all lengths zero, T=0, None gradients, the cache serving once.

The engine is imported inside a fixture, so while it does not exist its tests
error one by one and the rest of the suite still runs.
"""
import importlib

import numpy as np
import pytest

import fastrnn.reference as R
from conftest import (FAMILIES, OPTIONS, VARIANTS, assert_close, backward, check_fd,
                      forward, make_problem, random_cotangents, seed_of, state_shapes)

KERNEL_MODULE = "fastrnn.functional"
MODULES = {"reference": "fastrnn.reference", "functional": KERNEL_MODULE}
DTYPES = [np.float32, np.float64]


@pytest.fixture(scope="module")
def F():
    """The engine under test."""
    return importlib.import_module(KERNEL_MODULE)


@pytest.fixture(params=list(MODULES))
def mod(request):
    """Each implementation of the functional API in turn."""
    return importlib.import_module(MODULES[request.param])


def assert_identical(run_a, run_b, what):
    """Two (y, states, grads) results agree bit for bit."""
    (y_a, s_a, g_a), (y_b, s_b, g_b) = run_a, run_b
    np.testing.assert_array_equal(y_a, y_b, err_msg=f"{what}: y")
    for name, a, b in zip(("h_n", "c_n"), s_a, s_b):
        np.testing.assert_array_equal(a, b, err_msg=f"{what}: {name}")
    assert set(g_a) == set(g_b)
    for name in g_a:
        np.testing.assert_array_equal(g_a[name], g_b[name], err_msg=f"{what}: d{name}")


def run(mod, prob, dy, dstates, **extra):
    """Forward (training) and backward: (y, states, grads)."""
    y, states, cache = forward(mod, prob, **extra)
    return y, states, backward(mod, prob, cache, dy, dstates)


# ---------------------------------------------------------------------------
# Engine == reference

# Odd sizes: H in {1, 17, 65}, B in {1, 3}, T in {0, 1, 7}, I odd.
SIZES = {
    "T7-B3-I5-H17": dict(T=7, B=3, I=5, H=17),
    "T7-B1-I9-H65": dict(T=7, B=1, I=9, H=65),
    "T7-B3-I3-H1": dict(T=7, B=3, I=3, H=1),
    "T1-B3-I1-H65": dict(T=1, B=3, I=1, H=65),
    "T1-B1-I3-H1": dict(T=1, B=1, I=3, H=1),
    "T0-B3-I5-H17": dict(T=0, B=3, I=5, H=17),
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_reference(F, variant, option, dtype, size):
    seed = seed_of("cmp", variant, option, size)
    prob = make_problem(variant, dtype=dtype, seed=seed, **SIZES[size], **OPTIONS[option])
    dy, dstates = random_cotangents(prob, seed)
    y_r, s_r, g_r = run(R, prob, dy, dstates)

    runs = []
    for n in (1, 2):
        what = f"{prob}, num_threads={n}"
        y, states, grads = result = run(F, prob, dy, dstates, num_threads=n)
        assert_close(y, y_r, dtype, f"{what}: y")
        for name, s, s_ref in zip(("h_n", "c_n"), states, s_r):
            assert_close(s, s_ref, dtype, f"{what}: {name}")
        assert set(grads) == set(g_r), f"{what}: grad keys {sorted(grads)}"
        for name in g_r:
            assert_close(grads[name], g_r[name], dtype, f"{what}: d{name}")
        runs.append(result)
    assert_identical(runs[0], runs[1], f"{prob}: 1 vs 2 threads")

    y, states, cache = forward(F, prob, training=False, num_threads=2)
    assert cache is None
    assert_close(y, y_r, dtype, f"{prob}, training=False: y")
    for name, s, s_ref in zip(("h_n", "c_n"), states, s_r):
        assert_close(s, s_ref, dtype, f"{prob}, training=False: {name}")


@pytest.mark.parametrize("shape", ["batch", "gemv"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_thread_count_does_not_change_results(F, variant, dtype, shape):
    # Big enough that a second thread has work to do.
    sizes = dict(T=6, B=16, I=33, H=129) if shape == "batch" else dict(T=6, B=1, I=31, H=257)
    seed = seed_of("threads", variant, shape)
    prob = make_problem(variant, dtype=dtype, seed=seed, lengths=True, relu_margin=0, **sizes)
    dy, dstates = random_cotangents(prob, seed)
    base = run(F, prob, dy, dstates, num_threads=1)
    for n in (2, 3):
        assert_identical(base, run(F, prob, dy, dstates, num_threads=n), f"{prob}: 1 vs {n} threads")


# ---------------------------------------------------------------------------
# Finite differences of either module (float64)

@pytest.mark.parametrize("option", ["plain", "combined"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_finite_differences(mod, variant, option):
    seed = seed_of("fd-k", variant, option)
    prob = make_problem(variant, T=4, B=3, I=3, H=5, seed=seed, **OPTIONS[option])
    check_fd(mod, prob, seed)


# ---------------------------------------------------------------------------
# Inputs are never modified; outputs are fresh arrays

def _problem_for_api(variant, dtype=np.float64, **kw):
    opts = dict(T=5, B=3, I=5, H=7, lengths=True, reverse=True)
    opts.update(kw)
    return make_problem(variant, dtype=dtype, seed=seed_of("api", variant, kw), **opts)


@pytest.mark.parametrize("variant", VARIANTS)
def test_inputs_not_modified_and_outputs_are_fresh(mod, variant):
    prob = _problem_for_api(variant)
    dy, dstates = random_cotangents(prob, 1)
    inputs = dict(prob.arrays(), lengths=prob.lengths, dy=dy,
                  **{f"d{n}": d for n, d in zip(("h_n", "c_n"), dstates)})
    saved = {n: a.copy() for n, a in inputs.items()}

    y_i, s_i, _ = forward(mod, prob, training=False)
    y, states, grads = run(mod, prob, dy, dstates)

    for name, arr in inputs.items():
        np.testing.assert_array_equal(arr, saved[name], err_msg=f"{name} was modified")
    outputs = dict(y=y, y_inference=y_i, **{f"grad {n}": g for n, g in grads.items()},
                   **{f"state {i}": s for i, s in enumerate(states + s_i)})
    for out_name, out in outputs.items():
        for in_name, arr in inputs.items():
            assert not np.shares_memory(out, arr), f"{out_name} shares memory with input {in_name}"
    names = list(outputs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not np.shares_memory(outputs[a], outputs[b]), f"{a} and {b} share memory"


# ---------------------------------------------------------------------------
# Any memory layout, read-only inputs

def _fortran(a):
    return np.asfortranarray(a)


def _strided(a):
    """Every other element of a bigger array along the last axis."""
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


def _negative(a):
    """A view with a negative stride on the first axis."""
    return a[::-1].copy()[::-1]


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


LAYOUTS = {"fortran": _fortran, "strided": _strided, "negative": _negative, "readonly": _readonly}


@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_any_layout_gives_the_same_answer(mod, variant, layout, batch_first):
    prob = _problem_for_api(variant, batch_first=batch_first)
    dy, dstates = random_cotangents(prob, 2)
    expect = run(mod, prob, dy, dstates)

    change = LAYOUTS[layout]
    moved = prob.replace(lengths=change(prob.lengths.astype(np.int32)),
                         **{n: change(a) for n, a in prob.arrays().items()})
    if layout != "readonly":
        assert not moved.x.flags.c_contiguous and not moved.w_hh.flags.c_contiguous
    got = run(mod, moved, change(dy), tuple(change(d) for d in dstates))
    _assert_same_results(got, expect, prob, f"{layout} layout")


def test_broadcast_initial_states(mod):
    # h0 / c0 as zero-stride broadcasts of one row: the same state for every sample.
    prob = _problem_for_api("lstm_peep_proj")
    h0 = np.broadcast_to(prob.h0[0], prob.h0.shape)
    c0 = np.broadcast_to(prob.c0[0], prob.c0.shape)
    dy, dstates = random_cotangents(prob, 3)
    expect = run(mod, prob.replace(h0=h0.copy(), c0=c0.copy()), dy, dstates)
    got = run(mod, prob.replace(h0=h0, c0=c0), dy, dstates)
    _assert_same_results(got, expect, prob, "broadcast states")


def _assert_same_results(got, expect, prob, what):
    (y, states, grads), (y_e, states_e, grads_e) = got, expect
    assert_close(y, y_e, prob.dtype, f"{prob}, {what}: y")
    for name, s, s_e in zip(("h_n", "c_n"), states, states_e):
        assert_close(s, s_e, prob.dtype, f"{prob}, {what}: {name}")
    assert set(grads) == set(grads_e)
    for name in grads_e:
        assert_close(grads[name], grads_e[name], prob.dtype, f"{prob}, {what}: d{name}")
        assert grads[name].shape == grads_e[name].shape


# ---------------------------------------------------------------------------
# Padding, zero lengths, zero steps

@pytest.mark.parametrize("variant", VARIANTS)
def test_padding_values_are_ignored(mod, variant):
    """x and dy at steps past a sample's length do not matter."""
    prob = _problem_for_api(variant, batch_first=True)
    padded = np.arange(prob.T)[None, :] >= prob.lengths[:, None]                # (B, T)
    dy, dstates = random_cotangents(prob, 4)
    expect = run(mod, prob, dy, dstates)
    garbage = 1e3 * np.random.default_rng(4).standard_normal(prob.x.shape).astype(prob.dtype)
    x, dy2 = prob.x.copy(), dy.copy()
    x[padded] = garbage[padded]
    dy2[padded] = -dy2[padded] * 1e3
    got = run(mod, prob.replace(x=x), dy2, dstates)
    _assert_same_results(got, expect, prob, "garbage in padding")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_all_lengths_zero(mod, variant, dtype):
    prob = _problem_for_api(variant, dtype=dtype, lengths=np.zeros(3, np.int64))
    dy, dstates = random_cotangents(prob, 5)
    y, states, grads = run(mod, prob, dy, dstates)
    assert y.shape == dy.shape and y.dtype == dtype and not y.any()
    for s, s0 in zip(states, (prob.h0, prob.c0)):
        np.testing.assert_array_equal(s, s0)
    _assert_only_state_gradients(grads, dstates, prob)


@pytest.mark.parametrize("states", ["given", "none"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_zero_steps(mod, variant, batch_first, states):
    prob = make_problem(variant, T=0, B=3, I=5, H=7, seed=6, batch_first=batch_first,
                        states=states)
    y, final, cache = forward(mod, prob)
    assert y.shape == ((3, 0, prob.P) if batch_first else (0, 3, prob.P)) and y.dtype == prob.dtype
    explicit = prob.with_explicit_states()
    for s, s0 in zip(final, (explicit.h0, explicit.c0)):
        np.testing.assert_array_equal(s, s0)
        assert not np.shares_memory(s, s0)
    _, dstates = random_cotangents(prob, 6)
    grads = backward(mod, prob, cache, np.zeros(y.shape, prob.dtype), dstates)
    _assert_only_state_gradients(grads, dstates, prob)
    # dy may also be None
    _, _, cache = forward(mod, prob)
    _assert_only_state_gradients(backward(mod, prob, cache, None, dstates), dstates, prob)


def _assert_only_state_gradients(grads, dstates, prob):
    """No step ran: dx and the weight gradients are zero, d(initial state) == d(final state)."""
    assert set(grads) == prob.grad_names()
    assert grads["x"].shape == prob.x.shape
    for name, g in grads.items():
        assert g.dtype == prob.dtype, name
        if name in ("h0", "c0"):
            np.testing.assert_array_equal(g, dstates[0 if name == "h0" else 1], err_msg=name)
        else:
            assert not g.any(), f"d{name} is not zero"


# ---------------------------------------------------------------------------
# Backward's arguments and the cache

@pytest.mark.parametrize("variant", ["rnn_relu", "gru_orig", "lstm_proj"])
def test_none_gradients_mean_zeros(mod, variant):
    prob = _problem_for_api(variant)
    dy, dstates = random_cotangents(prob, 7)
    zeros_y = np.zeros_like(dy)
    zeros_s = tuple(np.zeros_like(d) for d in dstates)

    def grads(dy_, ds_):
        return run(mod, prob, dy_, ds_)[2]

    cases = [((None, None), (zeros_y, zeros_s)),
             ((dy, None), (dy, zeros_s)),
             ((None, dstates), (zeros_y, dstates))]
    if prob.family == "lstm":
        cases.append(((dy, (None, dstates[1])), (dy, (zeros_s[0], dstates[1]))))
        cases.append(((dy, (dstates[0], None)), (dy, (dstates[0], zeros_s[1]))))
    for args, explicit in cases:
        g, g_e = grads(*args), grads(*explicit)
        for name in g_e:
            np.testing.assert_array_equal(g[name], g_e[name], err_msg=name)
    for name, g in grads(None, None).items():
        assert not g.any(), name


@pytest.mark.parametrize("family", FAMILIES)
def test_cache_serves_one_backward(mod, family):
    variant = {"rnn": "rnn_tanh", "gru": "gru", "lstm": "lstm_peep"}[family]
    prob = _problem_for_api(variant)
    dy, dstates = random_cotangents(prob, 8)

    _, _, cache = forward(mod, prob, training=False)
    assert cache is None
    with pytest.raises(TypeError, match="cache"):
        backward(mod, prob, None, dy, dstates)

    _, _, cache = forward(mod, prob)
    assert getattr(cache, "cell", None) is not None
    # A rejected call does not consume the cache.
    with pytest.raises(ValueError, match="dy"):
        backward(mod, prob, cache, dy[:, :-1], dstates)
    if family == "lstm":
        with pytest.raises(TypeError):
            mod.lstm_backward(dy, dstates[0], cache)        # not a (dh_n, dc_n) pair
    first = backward(mod, prob, cache, dy, dstates)
    with pytest.raises(ValueError, match="cache"):
        backward(mod, prob, cache, dy, dstates)

    # A cache from another cell is refused, and is still usable by its own cell.
    other = "gru" if family != "gru" else "rnn_tanh"
    other_prob = _problem_for_api(other)
    _, _, other_cache = forward(mod, other_prob)
    with pytest.raises(ValueError, match="cache"):
        backward(mod, prob, other_cache, dy, dstates)
    _, _, cache = forward(mod, prob)
    again = backward(mod, prob, cache, dy, dstates)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name], err_msg=name)


def test_bad_arguments_are_named(mod):
    prob = _problem_for_api("rnn_tanh")
    for bad in ("sigmoid", None, "TANH"):
        with pytest.raises(ValueError, match="nonlinearity"):
            forward(mod, prob, nonlinearity=bad)
    with pytest.raises(TypeError, match="w_hh"):
        forward(mod, prob.replace(w_hh=prob.w_hh.astype(np.float32)))
    with pytest.raises(ValueError, match="lengths"):
        forward(mod, prob.replace(lengths=np.array([1, 6, 2])))
    with pytest.raises(ValueError, match="num_threads"):
        forward(mod, prob, num_threads=0)
    lstm = _problem_for_api("lstm")
    with pytest.raises(TypeError, match="h0, c0"):
        mod.lstm_forward(lstm.x, lstm.h0, lstm.w_ih, lstm.w_hh)


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_shapes_and_dtypes(mod, variant):
    prob = _problem_for_api(variant, dtype=np.float32, batch_first=True)
    dy, dstates = random_cotangents(prob, 9)
    y, states, grads = run(mod, prob, dy, dstates)
    assert y.shape == dy.shape and y.dtype == np.float32
    for s, shape in zip(states, state_shapes(prob)):
        assert s.shape == shape and s.dtype == np.float32
    explicit = prob.with_explicit_states()
    for name, g in grads.items():
        assert g.shape == getattr(explicit, name).shape and g.dtype == np.float32, name
