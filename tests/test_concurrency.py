"""Python threads sharing fastrnn: the kernels release the GIL, and threads that share
models, layers and packed weights get the same bits as serial calls.

The models' recurrent layers build their engine-layout weights and packing lazily
(after each weights_changed()); the tests below reset those caches and start the
threads at a barrier so that several threads build them at once.
"""
import sys
import threading
import time

import numpy as np
import pytest

import fastrnn
import fastrnn.functional as F
from fastrnn import layers

N_THREADS = 8


def _run_threads(fn, n=N_THREADS, timeout=120):
    """fn(i) in n threads started together; returns their results in order (re-raises the first error)."""
    barrier = threading.Barrier(n)
    out, errors = [None] * n, []

    def target(i):
        try:
            barrier.wait(timeout)
            out[i] = fn(i)
        except BaseException as e:          # re-raised below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread did not finish in time"
    if errors:
        raise errors[0]
    return out


# ---- the GIL ---------------------------------------------------------------------------------

def test_kernels_release_the_gil():
    """While one thread is inside a long forward (and backward), another keeps running
    Python code. With the GIL held for the kernel call, the ticker would not tick at all."""
    rng = np.random.default_rng(0)
    T, B, I, H = 1500, 16, 32, 128
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    w_ih = (0.1 * rng.standard_normal((4 * H, I))).astype(np.float32)
    w_hh = (0.1 * rng.standard_normal((4 * H, H))).astype(np.float32)
    span = {}

    def worker():
        t0 = time.perf_counter()
        y, _, cache = F.lstm_forward(x, None, w_ih, w_hh, num_threads=1)
        t1 = time.perf_counter()
        F.lstm_backward(y, None, cache)
        t2 = time.perf_counter()
        span["forward"], span["backward"] = (t0, t1), (t1, t2)

    ticks = []
    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    while thread.is_alive():
        ticks.append(time.perf_counter())
        time.sleep(5e-4)
    thread.join()
    for name, (t0, t1) in span.items():
        inside = sum(t0 < t < t1 for t in ticks)
        # at least a tick every 10 ms on average (0.5 ms sleeps: far more when a core is free)
        assert inside >= max(3, (t1 - t0) / 0.01), f"{name}: {inside} ticks in {t1 - t0:.3f} s"


# ---- shared models -------------------------------------------------------------------------------

def _model():
    model = fastrnn.Sequential([
        layers.LSTM(24, return_sequences=True, seed=1),
        layers.Bidirectional(layers.GRU(12, return_sequences=True, seed=2)),
        layers.GRU(16, seed=3),
        layers.Dense(3)])
    model.build((None, 20, 6))
    return model


def _reset_caches(model):
    for layer in model.layers:
        layer.weights_changed()


@pytest.mark.parametrize("threads", [1, None], ids=["fastrnn_threads_1", "fastrnn_threads_default"])
def test_shared_model_predict_matches_serial(threads):
    model = _model()
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((9 + i, 20, 6)).astype(np.float32) for i in range(N_THREADS)]
    n = fastrnn.get_num_threads() if threads is None else threads
    with fastrnn.num_threads(n):
        expected = [model.predict(x, batch_size=4) for x in xs]
        for _ in range(5):
            _reset_caches(model)            # every round: threads build the caches at once
            got = _run_threads(lambda i: [model.predict(xs[i], batch_size=4) for _ in range(2)])
            for i in range(N_THREADS):
                for g in got[i]:
                    assert np.array_equal(g, expected[i]), f"thread {i}: predict differs from serial"


def test_shared_layer_cache_is_built_consistently():
    """Many rounds of: drop the layer's engine-weight cache, then 8 threads call it at once.
    Each call must pair weights with their own packing (a mismatched pair is refused) and
    give the serial bits. (On CPython 3.11 the GIL made the old two-attribute cache safe
    for this pattern by luck of where threads may switch; the cache is now one tuple.)"""
    layer = layers.LSTM(32, return_sequences=True, seed=5)
    layer.maybe_build((None, 6, 8))
    x = np.random.default_rng(2).standard_normal((3, 6, 8)).astype(np.float32)
    expected = layer(x)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)                 # switch threads as often as possible: widen any race
    try:
        for _ in range(30):
            layer.weights_changed()
            for y in _run_threads(lambda i: layer(x)):
                assert np.array_equal(y, expected)
            assert layer._engine_weights is not None and layer._packed is not None
            assert layer._packed.sources[0] is layer._engine_weights["w_ih"]
    finally:
        sys.setswitchinterval(interval)


def test_weights_changed_during_build_is_not_lost():
    """A build that started before weights_changed() is not published: the next call
    sees the new weights."""
    layer = layers.GRU(8, return_sequences=True, seed=6)
    layer.maybe_build((None, 4, 3))
    x = np.ones((2, 4, 3), np.float32)
    real_pack = F.pack_weights
    changed = threading.Event()

    def pack_then_change(*args, **kwargs):      # the weights change while this build packs
        out = real_pack(*args, **kwargs)
        if not changed.is_set():
            changed.set()
            layer.set_weights([w * 0.5 for w in layer.get_weights()])
        return out

    y_old = layer(x)
    layer.weights_changed()
    F.pack_weights = pack_then_change
    try:
        layer(x)
    finally:
        F.pack_weights = real_pack
    assert changed.is_set()
    fresh = layers.GRU(8, return_sequences=True, seed=6)
    fresh.maybe_build((None, 4, 3))
    fresh.set_weights(layer.get_weights())
    np.testing.assert_array_equal(layer(x), fresh(x))
    assert not np.array_equal(layer(x), y_old)


# ---- the functional API with shared packed weights ---------------------------------------------------

def _weights(family, I, H, rng, dtype):
    G = {"rnn": 1, "gru": 3, "lstm": 4}[family]
    return [(0.2 * rng.standard_normal(s)).astype(dtype) for s in ((G * H, I), (G * H, H), (G * H,), (G * H,))]


FORWARD = {"rnn": F.rnn_forward, "gru": F.gru_forward, "lstm": F.lstm_forward}
BACKWARD = {"rnn": F.rnn_backward, "gru": F.gru_backward, "lstm": F.lstm_backward}


@pytest.mark.parametrize("family", ["rnn", "gru", "lstm"])
def test_functional_shared_packed_weights(family):
    rng = np.random.default_rng(3)
    T, I, H = 12, 10, 40
    w_ih, w_hh, b_ih, b_hh = _weights(family, I, H, rng, np.float32)
    xs = [rng.standard_normal((T, 1 + 3 * i, I)).astype(np.float32) for i in range(N_THREADS)]
    fwd, bwd = FORWARD[family], BACKWARD[family]

    def run(i, packed, n_threads):
        y, h, cache = fwd(xs[i], None, w_ih, w_hh, b_ih, b_hh, packed=packed, num_threads=n_threads)
        g = bwd(np.ones_like(y), None, cache)
        y_inf, _, _ = fwd(xs[i], None, w_ih, w_hh, b_ih, b_hh, packed=packed, training=False,
                          num_threads=n_threads)
        return [y, y_inf] + [g[k] for k in sorted(g)]

    shared = F.pack_weights(family, w_ih, w_hh)
    expected = [run(i, shared, 1) for i in range(N_THREADS)]
    for n_threads in (1, 2):
        for packed in (shared, None):
            got = _run_threads(lambda i: run(i, packed, n_threads))
            for i in range(N_THREADS):
                for a, b in zip(got[i], expected[i]):
                    assert np.array_equal(a, b), f"thread {i}, {n_threads} threads, packed={packed is not None}"
    # packing itself, concurrently: every thread's packing is byte-identical
    packs = _run_threads(lambda i: F.pack_weights(family, w_ih, w_hh, num_threads=1 + i % 2))
    for p in packs:
        assert np.array_equal(p.buffer, shared.buffer)
