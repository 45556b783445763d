"""Edge sizes, odd memory layouts, thread counts and SIMD paths of the engine.

- Edge sizes (T=0, T=1, B=1, B=13, H=1, odd H, all lengths 0, B=1 with 2
  threads, batch_first + lengths + reverse, LSTM projection P > H and P < H):
  `fastrnn.functional` matches `fastrnn.reference` in float64 (forward outputs,
  final states, every gradient), plus the exact promises of T=0 and of all
  lengths 0 (h_n == h0, dh0 == dh_n, zero weight gradients, y all zero).
- Strided, negative-stride, Fortran-order and read-only inputs give results
  bit-identical to contiguous ones and are never modified.
- 1 and 2 threads give bit-identical results on a problem big enough that the
  recurrence really uses 2 threads, whether set per call or with
  `fastrnn.num_threads(...)`.
- FASTRNN_ISA=avx2 / generic (/ avx512) in a subprocess: every cell still
  matches the reference, and `simd_isa()` reports the requested ISA.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastrnn
import fastrnn.functional as F
import fastrnn.reference as R
from conftest import (VARIANTS, assert_close, backward, forward, make_problem, random_cotangents,
                      seed_of, y_shape)

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))


def run(mod, prob, dy, dstates, **extra):
    """Training forward then backward: (y, states, grads)."""
    y, states, cache = forward(mod, prob, **extra)
    return y, states, backward(mod, prob, cache, dy, dstates)


def compare_with_reference(prob, seed, **extra):
    """Engine vs reference on `prob`: y, final states, every gradient, and the
    training=False forward. Returns the engine's (y, states, grads)."""
    dy, dstates = random_cotangents(prob, seed)
    y_r, s_r, g_r = run(R, prob, dy, dstates)
    y, s, g = result = run(F, prob, dy, dstates, **extra)
    what = f"{prob} {extra}"
    assert y.shape == y_shape(prob), f"{what}: y shape {y.shape}"
    assert_close(y, y_r, prob.dtype, f"{what}: y")
    assert len(s) == len(s_r)
    for name, a, b in zip(("h_n", "c_n"), s, s_r):
        assert_close(a, b, prob.dtype, f"{what}: {name}")
    assert set(g) == set(g_r) == prob.grad_names(), f"{what}: grad keys {sorted(g)}"
    for name in g_r:
        assert_close(g[name], g_r[name], prob.dtype, f"{what}: d{name}")
    y_inf, s_inf, cache = forward(F, prob, training=False, **extra)
    assert cache is None
    assert_close(y_inf, y_r, prob.dtype, f"{what}, training=False: y")
    for name, a, b in zip(("h_n", "c_n"), s_inf, s_r):
        assert_close(a, b, prob.dtype, f"{what}, training=False: {name}")
    return result


# ---------------------------------------------------------------------------
# Edge sizes against the reference (float64)

EDGES = {
    "T1": dict(T=1, B=3, I=4, H=5),
    "B1": dict(T=5, B=1, I=4, H=6),
    "H1": dict(T=5, B=3, I=2, H=1),
    "H17": dict(T=4, B=3, I=5, H=17),
    "H65": dict(T=3, B=2, I=7, H=65),
    "B13": dict(T=4, B=13, I=3, H=9),                  # more rows than one tile
    "B13-H33-lengths": dict(T=4, B=13, I=3, H=33, lengths=True),
    "I1": dict(T=4, B=3, I=1, H=5),
    "bf-lengths-reverse": dict(T=6, B=4, I=3, H=7, batch_first=True, lengths=True, reverse=True),
    "bf-lengths-reverse-B1": dict(T=4, B=1, I=3, H=7, batch_first=True, lengths=True, reverse=True),
}


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_edge_sizes_match_reference(variant, edge):
    seed = seed_of("edge", variant, edge)
    prob = make_problem(variant, seed=seed, **EDGES[edge])
    compare_with_reference(prob, seed, num_threads=2)


@pytest.mark.parametrize("variant", VARIANTS)
def test_b1_h100_two_threads(variant):
    seed = seed_of("gemv", variant)
    prob = make_problem(variant, T=4, B=1, I=9, H=100, seed=seed)
    one = compare_with_reference(prob, seed, num_threads=1)
    two = compare_with_reference(prob, seed, num_threads=2)
    assert_identical(one, two, f"{prob}: 1 vs 2 threads")


@pytest.mark.parametrize("H,P", [(5, 9), (9, 4), (8, 1), (1, 3)], ids=["P>H", "P<H", "P1", "H1-P3"])
@pytest.mark.parametrize("variant", ["lstm_proj", "lstm_peep_proj"])
@pytest.mark.parametrize("option", ["plain", "bf-lengths-reverse"])
def test_lstm_projection_sizes(variant, H, P, option):
    seed = seed_of("proj", variant, H, P, option)
    opts = dict(batch_first=True, lengths=True, reverse=True) if option != "plain" else {}
    prob = make_problem(variant, T=4, B=3, I=5, H=H, P=P, seed=seed, **opts)
    _, (h_n, c_n), grads = compare_with_reference(prob, seed, num_threads=2)
    assert h_n.shape == (3, P) and c_n.shape == (3, H)
    assert grads["w_hr"].shape == (P, H) and grads["w_hh"].shape == (4 * H, P)


@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_zero_steps(variant, batch_first):
    seed = seed_of("T0", variant, batch_first)
    prob = make_problem(variant, T=0, B=3, I=4, H=5, seed=seed, batch_first=batch_first)
    B, I, P = prob.B, prob.I, prob.P
    y, states, grads = compare_with_reference(prob, seed)
    assert y.shape == ((B, 0, P) if batch_first else (0, B, P))
    initial = (prob.h0, prob.c0) if prob.family == "lstm" else (prob.h0,)
    for s, s0 in zip(states, initial):
        assert np.array_equal(s, s0)
        assert not np.shares_memory(s, s0)
    _, dstates = random_cotangents(prob, seed)
    assert grads["x"].shape == ((B, 0, I) if batch_first else (0, B, I))
    assert np.array_equal(grads["h0"], dstates[0])
    if prob.family == "lstm":
        assert np.array_equal(grads["c0"], dstates[1])
    for name in set(grads) - {"x", "h0", "c0"}:
        assert not np.any(grads[name]), f"d{name} of a zero-step sequence"


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("variant", VARIANTS)
def test_all_lengths_zero(variant, reverse):
    seed = seed_of("len0", variant, reverse)
    prob = make_problem(variant, T=4, B=3, I=4, H=5, seed=seed, reverse=reverse,
                        lengths=np.zeros(3, np.int64))
    y, states, grads = compare_with_reference(prob, seed, num_threads=2)
    assert y.shape == (4, 3, prob.P) and not np.any(y)
    initial = (prob.h0, prob.c0) if prob.family == "lstm" else (prob.h0,)
    for s, s0 in zip(states, initial):
        assert np.array_equal(s, s0)
    _, dstates = random_cotangents(prob, seed)
    assert np.array_equal(grads["h0"], dstates[0])
    if prob.family == "lstm":
        assert np.array_equal(grads["c0"], dstates[1])
    assert not np.any(grads["x"])
    for name in set(grads) - {"x", "h0", "c0"}:
        assert not np.any(grads[name]), f"d{name} with every length 0"


@pytest.mark.parametrize("variant", ["rnn_tanh", "gru", "lstm_peep_proj"])
def test_empty_batch_and_empty_input(variant):
    """B=0 and I=0 are legal shapes; they must not crash and must agree with the reference."""
    for sizes in (dict(T=3, B=0, I=4, H=5), dict(T=3, B=2, I=0, H=5)):
        seed = seed_of("empty", variant, sizes)
        prob = make_problem(variant, seed=seed, **sizes)
        compare_with_reference(prob, seed)


@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_odd_sizes(variant):
    seed = seed_of("f32", variant)
    prob = make_problem(variant, T=5, B=13, I=3, H=17, dtype=np.float32, seed=seed,
                        lengths=True, reverse=True)
    compare_with_reference(prob, seed, num_threads=2)


# ---------------------------------------------------------------------------
# Memory layouts: strided, negative strides, Fortran order, read-only

def strided(a):
    """The same values as a view with gaps (NaN / -1 in the gaps, so reading them shows)."""
    if a.ndim == 0:
        return a.copy()
    fill = -1 if a.dtype.kind in "iu" else np.nan
    big = np.full(tuple(2 * n + 1 for n in a.shape), fill, a.dtype)
    view = big[tuple(slice(1, None, 2) for _ in a.shape)]
    view[...] = a
    return view


def negative_strides(a):
    flipped = a[tuple(slice(None, None, -1) for _ in a.shape)].copy()
    return flipped[tuple(slice(None, None, -1) for _ in a.shape)]


def fortran(a):
    return np.asfortranarray(a)


def read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def read_only_strided(a):
    a = strided(a)
    a.flags.writeable = False
    return a


LAYOUTS = {"strided": strided, "negative": negative_strides, "fortran": fortran,
           "read_only": read_only, "read_only_strided": read_only_strided}


def assert_identical(run_a, run_b, what):
    (y_a, s_a, g_a), (y_b, s_b, g_b) = run_a, run_b
    assert np.array_equal(y_a, y_b), f"{what}: y"
    for name, a, b in zip(("h_n", "c_n"), s_a, s_b):
        assert np.array_equal(a, b), f"{what}: {name}"
    assert set(g_a) == set(g_b), f"{what}: grad keys"
    for name in g_a:
        assert np.array_equal(g_a[name], g_b[name]), f"{what}: d{name}"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
@pytest.mark.parametrize("variant", ["rnn_relu", "gru", "gru_orig", "lstm", "lstm_peep_proj"])
@pytest.mark.parametrize("mod", [F, R], ids=["functional", "reference"])
def test_any_layout_same_bits_and_untouched(mod, variant, batch_first, layout):
    seed = seed_of("layout", variant, batch_first)
    prob = make_problem(variant, T=5, B=4, I=3, H=6, seed=seed, lengths=True, reverse=True,
                        batch_first=batch_first)
    dy, dstates = random_cotangents(prob, seed)
    base = run(mod, prob, dy, dstates)

    convert = LAYOUTS[layout]
    arrays = {name: convert(v) for name, v in prob.arrays().items()}
    arrays["lengths"] = convert(prob.lengths)
    dy_l, dstates_l = convert(dy), tuple(convert(d) for d in dstates)
    before = {n: v.copy() for n, v in arrays.items()}
    before_d = (dy.copy(), tuple(d.copy() for d in dstates))

    other = prob.replace(**arrays)
    got = run(mod, other, dy_l, dstates_l)
    assert_identical(base, got, f"{prob} with {layout} inputs")

    for name, v in arrays.items():
        assert np.array_equal(v, before[name]), f"{name} ({layout}) was modified"
        if layout.startswith("read_only"):
            assert not v.flags.writeable
    assert np.array_equal(dy_l, before_d[0]), "dy was modified"
    for d, d0 in zip(dstates_l, before_d[1]):
        assert np.array_equal(d, d0), "a final-state gradient was modified"
    if layout in ("strided", "read_only_strided"):   # the gaps were not written either
        assert np.isnan(dy_l.base[0]).all()
    # outputs are fresh, writeable arrays
    y, states, grads = got
    for out in (y, *states, *grads.values()):
        assert out.flags.writeable
        for v in list(arrays.values()) + [dy_l, *dstates_l]:
            assert not np.shares_memory(out, v)


# ---------------------------------------------------------------------------
# 1 vs 2 threads: bit-identical

BIG = dict(T=5, B=16, I=32, H=256)     # GRU: 16*768*256 multiply-adds a step -> 2 threads


@pytest.fixture
def restore_threads():
    old = fastrnn.get_num_threads()
    yield
    fastrnn.set_num_threads(old)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("option", ["plain", "bf-lengths-reverse"])
@pytest.mark.parametrize("variant", ["gru", "gru_orig", "lstm", "lstm_peep_proj", "rnn_tanh"])
def test_threads_bit_identical(restore_threads, variant, option, dtype):
    if not fastrnn.openmp_enabled():
        pytest.skip("built without OpenMP: the kernels always run on one thread")
    seed = seed_of("bits", variant, option)
    opts = dict(batch_first=True, lengths=True, reverse=True) if option != "plain" else {}
    prob = make_problem(variant, dtype=dtype, seed=seed, **BIG, **opts)
    dy, dstates = random_cotangents(prob, seed)
    base = run(F, prob, dy, dstates, num_threads=1)
    assert_identical(base, run(F, prob, dy, dstates, num_threads=2), f"{prob}: num_threads=1 vs 2")
    with fastrnn.num_threads(2):
        assert_identical(base, run(F, prob, dy, dstates), f"{prob}: num_threads(2) context")
    with fastrnn.num_threads(1):
        assert_identical(base, run(F, prob, dy, dstates), f"{prob}: num_threads(1) context")
    fastrnn.set_num_threads(2)
    assert_identical(base, run(F, prob, dy, dstates), f"{prob}: set_num_threads(2)")


def test_threads_and_reference_agree_on_the_big_shape():
    """The bit-identity above means something only if the answer is right."""
    seed = seed_of("bits-ref")
    prob = make_problem("lstm_peep_proj", seed=seed, lengths=True, **BIG)
    compare_with_reference(prob, seed, num_threads=2)


# ---------------------------------------------------------------------------
# SIMD paths, selected with FASTRNN_ISA in a fresh interpreter

ISA_SCRIPT = r"""
import sys
import numpy as np
import fastrnn, fastrnn.functional as F, fastrnn.reference as R
from conftest import VARIANTS, assert_close, backward, forward, make_problem, random_cotangents, seed_of

print("isa", fastrnn.simd_isa())
checked = 0
for variant in VARIANTS:
    for dtype in (np.float32, np.float64):
        for sizes in (dict(T=4, B=3, I=5, H=17, lengths=True, reverse=True),
                      dict(T=3, B=1, I=3, H=33, batch_first=True),
                      dict(T=2, B=9, I=2, H=8)):
            seed = seed_of("isa", variant, sizes)
            prob = make_problem(variant, dtype=dtype, seed=seed, **sizes)
            dy, dstates = random_cotangents(prob, seed)
            out = {}
            for name, mod in (("ref", R), ("eng", F)):
                y, s, cache = forward(mod, prob, num_threads=2)
                out[name] = (y, s, backward(mod, prob, cache, dy, dstates))
            (y_r, s_r, g_r), (y, s, g) = out["ref"], out["eng"]
            assert_close(y, y_r, dtype, f"{prob}: y")
            for a, b in zip(s, s_r):
                assert_close(a, b, dtype, f"{prob}: state")
            assert set(g) == set(g_r)
            for k in g:
                assert_close(g[k], g_r[k], dtype, f"{prob}: d{k}")
            checked += 1
print("checked", checked)
"""


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


ISA_NEEDS = {"generic": (), "avx2": ("avx2", "fma"), "avx512": ("avx512f",)}


@pytest.mark.parametrize("isa", ["avx2", "generic", "avx512"])
def test_simd_isa_matches_reference(isa):
    flags = _cpu_flags()
    if ISA_NEEDS[isa]:
        if flags is None:
            pytest.skip(f"FASTRNN_ISA={isa}: no /proc/cpuinfo to tell whether the CPU has "
                        f"{'+'.join(ISA_NEEDS[isa])}")
        missing = [f for f in ISA_NEEDS[isa] if f not in flags]
        if missing:
            pytest.skip(f"FASTRNN_ISA={isa}: this CPU lacks {', '.join(missing)} "
                        f"(per /proc/cpuinfo), so that kernel path cannot run here")
    env = dict(os.environ, FASTRNN_ISA=isa, OMP_NUM_THREADS="2")
    env["PYTHONPATH"] = os.pathsep.join([ROOT, TESTS_DIR, env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", ISA_SCRIPT], env=env, cwd=TESTS_DIR,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"FASTRNN_ISA={isa}:\n{out.stdout}\n{out.stderr}"
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    print(f"FASTRNN_ISA={isa}: simd_isa() = {lines.get('isa')}, {lines.get('checked')} problems checked")
    assert lines.get("isa") == isa, f"FASTRNN_ISA={isa} but simd_isa() = {lines.get('isa')!r}"
    assert int(lines["checked"]) == len(VARIANTS) * 2 * 3


def test_unknown_isa_falls_back_to_a_working_one():
    env = dict(os.environ, FASTRNN_ISA="sse9")
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", "import fastrnn; print(fastrnn.simd_isa())"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("avx512", "avx2", "generic")


def test_concurrent_calls_from_python_threads_agree():
    """The kernels run without the GIL and share no state: calls from several Python
    threads at once give the same bits as the same calls one after another."""
    from concurrent.futures import ThreadPoolExecutor
    import fastrnn.functional as F

    rng = np.random.default_rng(11)
    problems = []
    for i in range(6):
        H = 33 + 16 * i
        x = rng.standard_normal((9, 5, 7)).astype(np.float32)
        w_ih = (rng.standard_normal((4 * H, 7)) * 0.3).astype(np.float32)
        w_hh = (rng.standard_normal((4 * H, H)) * 0.3).astype(np.float32)
        problems.append((x, w_ih, w_hh))

    def run(p):
        x, w_ih, w_hh = p
        y, (h, c), cache = F.lstm_forward(x, None, w_ih, w_hh, num_threads=2)
        g = F.lstm_backward(np.ones_like(y), None, cache)
        return y, h, c, g["w_hh"], g["x"]

    serial = [run(p) for p in problems]
    with ThreadPoolExecutor(3) as pool:
        concurrent = list(pool.map(run, problems * 2))
    for got, want in zip(concurrent, serial * 2):
        for a, b in zip(got, want):
            assert np.array_equal(a, b)
