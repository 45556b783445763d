"""The contention back-off of fastrnn._threads: a multi-threaded call that got well under
its share of CPU time sends later calls to one thread for a while."""
import time

import numpy as np
import pytest

import fastrnn.functional as F
from fastrnn import _threads as TH


@pytest.fixture(autouse=True)
def fresh_state():
    saved = TH._backoff_until, TH._backoff_s
    TH._backoff_until, TH._backoff_s = 0.0, TH._BACKOFF_MIN
    yield
    TH._backoff_until, TH._backoff_s = saved


def test_backoff_starts_doubles_and_clears():
    assert TH.for_call(2) == 2
    TH._observe(used=2, wall=0.1, cpu=0.11)             # 55% of 2 threads x wall: contended
    assert TH.for_call(2) == 1 and TH.for_call(1) == 1
    assert TH._backoff_until > time.monotonic()
    assert TH._backoff_s == 2 * TH._BACKOFF_MIN
    for _ in range(10):
        TH._observe(used=2, wall=0.1, cpu=0.0)
    assert TH._backoff_s == TH._BACKOFF_MAX
    TH._observe(used=2, wall=0.1, cpu=0.19)             # a fair share again: back to normal
    assert TH.for_call(2) == 2 and TH._backoff_s == TH._BACKOFF_MIN


def test_backoff_expires():
    TH._observe(used=4, wall=0.1, cpu=0.1)
    assert TH.for_call(4) == 1
    TH._backoff_until = time.monotonic() - 1e-3
    assert TH.for_call(4) == 4


def test_a_missed_scheduler_tick_is_not_contention():
    """The other threads' CPU time lags by up to a tick: a 5 ms 2-thread call that
    reads one tick short of its 10 ms is not taken for contention."""
    TH._observe(used=2, wall=0.005, cpu=0.001)
    assert TH.for_call(2) == 2 and TH._backoff_until == 0.0
    TH._observe(used=2, wall=0.05, cpu=0.05)            # half its share over 50 ms: contended
    assert TH.for_call(2) == 1


def test_calls_ignore_short_and_single_thread_and_unsplittable_calls():
    with TH.Call(1) as c:
        c.used = 1
    with TH.Call(2) as c:
        c.used = 2                                       # far shorter than _MIN_WALL
    with TH.Call(2, splittable=False) as c:
        time.sleep(2 * TH._MIN_WALL)                     # long, but never timed: no clock reads
        c.used = 2
    assert TH._backoff_until == 0.0


def test_concurrent_calls_share_the_cores(monkeypatch):
    """k recurrent calls running at once (other Python threads) get cores // k threads each."""
    import threading
    monkeypatch.setattr(TH, "_omp_default", 4)
    monkeypatch.setattr(TH, "omp_limit", lambda: None)
    inside, release = threading.Event(), threading.Event()
    seen = {}

    def other():
        with TH.Call(4, splittable=False) as c:
            seen["other"] = c.n
            inside.set()
            release.wait(10)

    t = threading.Thread(target=other)
    t.start()
    try:
        assert inside.wait(10)
        with TH.Call(4, splittable=False) as c:
            seen["second"] = c.n
            with TH.Call(4, splittable=False) as c3:        # a third at once
                seen["third"] = c3.n
    finally:
        release.set()
        t.join(10)
    with TH.Call(4, splittable=False) as c:
        seen["alone"] = c.n
    assert seen == {"other": 4, "second": 2, "third": 1, "alone": 4}
    assert TH._in_flight == []


def test_results_do_not_depend_on_the_backoff():
    rng = np.random.default_rng(0)
    T, B, I, H = 60, 32, 16, 64
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    w_ih = (0.1 * rng.standard_normal((4 * H, I))).astype(np.float32)
    w_hh = (0.1 * rng.standard_normal((4 * H, H))).astype(np.float32)
    y2, _, c2 = F.lstm_forward(x, None, w_ih, w_hh, num_threads=2)
    g2 = F.lstm_backward(np.ones_like(y2), None, c2)
    TH._observe(used=2, wall=0.1, cpu=0.0)               # pretend the cores are taken
    assert TH.for_call(2) == 1
    y1, _, c1 = F.lstm_forward(x, None, w_ih, w_hh, num_threads=2)
    g1 = F.lstm_backward(np.ones_like(y1), None, c1)
    assert np.array_equal(y1, y2)
    for k in g1:
        assert np.array_equal(g1[k], g2[k]), k
