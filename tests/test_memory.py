"""Long runs leave the process's memory flat: 10,000 rounds of functional forward and
backward calls over every cell variant, and 50 fit epochs of a small model.

How: resident set size (psutil) after a warm-up and after the run, with a garbage
collection and glibc's malloc_trim before each reading. Tolerance: TOLERANCE (5 MiB) of growth. Why 5 MiB:
the run's own allocations are tiny and are freed each round, but the allocator keeps
freed pages and the interpreter keeps caches, so a flat run still moves RSS a little
(0 to 0.3 MiB measured here); and every output array of a round is at least 1 KiB, so
leaking any one of them (or a kernel's work buffer, which is larger) for 10,000 rounds
grows RSS by at least 10 MiB, past the tolerance (keeping every round's y grew it by
143 MiB). A leak of a few bytes a call (below
~500 bytes a round) would go unseen: valgrind is the tool for those (see the report
of the hardening work). `test_the_measure_detects_a_leak` checks that the same
measurement does see a 1 KiB-a-round leak.
"""
import ctypes
import gc

import numpy as np
import pytest

import fastrnn
import fastrnn.functional as F
from fastrnn import layers

from conftest import VARIANTS, backward, forward, make_problem

psutil = pytest.importorskip("psutil")

MiB = 1 << 20
TOLERANCE = 5 * MiB
ROUNDS = 10_000


def _find_malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim        # glibc
    except (OSError, AttributeError):
        return None


_malloc_trim = _find_malloc_trim()


def rss():
    """Resident set size after a garbage collection and, with glibc, malloc_trim(0): memory
    freed earlier (by other tests too) but still resident would otherwise hide new allocations."""
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
    return psutil.Process().memory_info().rss


def growth(run_round, rounds, warmup):
    """RSS growth over `rounds` calls of run_round(i), after `warmup` calls."""
    for i in range(warmup):
        run_round(i)
    before = rss()
    for i in range(rounds):
        run_round(i)
    return rss() - before


def _problems():
    """Every cell variant, float32 and float64, with and without lengths; y is at least 1 KiB (T*B*P*itemsize)."""
    probs = []
    for k, variant in enumerate(sorted(VARIANTS)):
        for dtype in (np.float32, np.float64):
            probs.append(make_problem(variant, T=8, B=4, I=5, H=16, dtype=dtype, seed=k,
                                      lengths=k % 2 == 0, reverse=k % 3 == 0))
    return probs


def test_the_measure_detects_a_leak():
    kept = []
    leaked = growth(lambda i: kept.append(np.ones(128)), ROUNDS, warmup=100)      # 1 KiB a round
    assert leaked > TOLERANCE, f"a 10 MiB leak moved RSS by only {leaked / MiB:.2f} MiB"


def test_functional_calls_leave_memory_flat():
    probs = _problems()
    packed = [F.pack_weights(p.family, p.w_ih, p.w_hh, w_hr=p.w_hr,
                             linear_before_reset=p.options.get("linear_before_reset", True)) for p in probs]

    def one_round(i):
        j = i % len(probs)
        prob = probs[j]
        y, states, cache = forward(F, prob, training=True)
        grads = backward(F, prob, cache, y, states)
        assert grads["x"].shape == prob.x.shape
        forward(F, prob, training=False)
        forward(F, prob, training=False, packed=packed[j])

    grew = growth(one_round, ROUNDS, warmup=500)
    assert grew < TOLERANCE, f"RSS grew by {grew / MiB:.2f} MiB over {ROUNDS} rounds"


def test_fit_epochs_leave_memory_flat():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 10, 3)).astype(np.float32)
    y = x[:, -3:, :1].sum(axis=1)
    model = fastrnn.Sequential([layers.LSTM(16, return_sequences=True, seed=1), layers.GRU(8, seed=2),
                                layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")

    def one_epoch(i):
        model.fit(x, y, epochs=1, batch_size=16, seed=i, verbose=0)
        model.predict(x, verbose=0)

    grew = growth(one_epoch, 50, warmup=5)
    assert grew < TOLERANCE, f"RSS grew by {grew / MiB:.2f} MiB over 50 epochs"
