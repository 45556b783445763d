"""Python threads sharing fastrnn: the kernels release the GIL, and threads that share
models, layers and packed weights get the same bits as serial calls.

The models' recurrent layers build their engine-layout weights and packing lazily
(after each weights_changed()); the tests below reset those caches and start the
threads at a barrier so that several threads build them at once.
"""
import ctypes
import importlib.util
import os
import subprocess
import sys
import textwrap
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


# ---- other thread pools: threadpoolctl, BLAS, torch ---------------------------------------------------

try:
    import threadpoolctl
except ImportError:             # in the test extra; only the tests that use it are skipped
    threadpoolctl = None
needs_openmp = pytest.mark.skipif(not fastrnn.openmp_enabled() or threadpoolctl is None,
                                  reason="needs OpenMP in the engine, and threadpoolctl")


def _lstm_problem(T=40, B=32, I=64, H=128, seed=4):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((T, B, I)).astype(np.float32),
            (0.1 * rng.standard_normal((4 * H, I))).astype(np.float32),
            (0.1 * rng.standard_normal((4 * H, H))).astype(np.float32))


@pytest.fixture
def steps_threads(monkeypatch):
    """The threads each forward/backward step loop ran on (the engine's steps_threads), in call order;
    and no contention back-off (the shared test machine would otherwise send calls to one thread)."""
    from fastrnn import _threads
    used = []

    class Recording(_threads.Call):
        __slots__ = ()

        def __exit__(self, *exc):
            used.append(self.used)
            return super().__exit__(*exc)

    monkeypatch.setattr(_threads, "Call", Recording)
    monkeypatch.setattr(_threads, "_FAIR_SHARE", 0.0)
    monkeypatch.setattr(_threads, "_backoff_until", 0.0)
    return used


def _engine_openmp_path():
    """The file of the OpenMP runtime fastrnn's engine calls (dladdr of its omp_get_max_threads)."""
    from fastrnn import _threads

    class DlInfo(ctypes.Structure):
        _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                    ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]

    info = DlInfo()
    libc = ctypes.CDLL(None)
    addr = ctypes.cast(_threads._omp_get_max_threads, ctypes.c_void_p)
    assert libc.dladdr(addr, ctypes.byref(info)) != 0
    return os.path.realpath(info.dli_fname.decode())


@needs_openmp
def test_threadpoolctl_sees_fastrnn_openmp():
    paths = [os.path.realpath(i["filepath"]) for i in threadpoolctl.threadpool_info() if i["user_api"] == "openmp"]
    assert _engine_openmp_path() in paths, (_engine_openmp_path(), paths)


@needs_openmp
def test_threadpool_limits_bound_fastrnn(steps_threads):
    x, w_ih, w_hh = _lstm_problem()
    with fastrnn.num_threads(2):
        y2, _, c = F.lstm_forward(x, None, w_ih, w_hh)
        g2 = F.lstm_backward(np.ones_like(y2), None, c)
        assert steps_threads == [2, 2], "the problem is too small to run on 2 threads"
        for limits in [dict(limits=1), dict(limits=1, user_api="openmp"), dict(limits={"openmp": 1})]:
            steps_threads.clear()
            with threadpoolctl.threadpool_limits(**limits):
                assert fastrnn.get_num_threads() == 1
                y1, _, c = F.lstm_forward(x, None, w_ih, w_hh, num_threads=2)    # an explicit count too
                g1 = F.lstm_backward(np.ones_like(y1), None, c)
            assert steps_threads == [1, 1], limits
            assert np.array_equal(y1, y2) and all(np.array_equal(g1[k], g2[k]) for k in g1)
        steps_threads.clear()
        with threadpoolctl.threadpool_limits(1, user_api="blas"):     # BLAS only: fastrnn keeps its threads
            F.lstm_forward(x, None, w_ih, w_hh, training=False)
        with fastrnn.num_threads(1):                                    # fastrnn's own setting
            F.lstm_forward(x, None, w_ih, w_hh, training=False)
        F.lstm_forward(x, None, w_ih, w_hh, training=False)           # the limits are gone again
        assert steps_threads == [2, 1, 2]


PYTHON_CHILD_TIMEOUT = 60


def _run_script(tmp_path, code):
    """Run `code` in a fresh interpreter that imports the fastrnn under test; fail on a hang."""
    script = tmp_path / "check.py"
    script.write_text(textwrap.dedent(code))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    env.pop("OMP_NUM_THREADS", None)
    try:
        proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                              timeout=PYTHON_CHILD_TIMEOUT, cwd=str(tmp_path))
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the script hung (killed after {PYTHON_CHILD_TIMEOUT} s)\n{e.stdout}\n{e.stderr}")
    assert proc.returncode == 0 and "OK" in proc.stdout, f"exit code {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@needs_openmp
def test_threadpool_limits_start_no_os_threads(tmp_path):
    """Oversubscription, counted in OS threads: in a fresh process, fastrnn under
    threadpool_limits(1) starts no thread; asked for 2 outside it, OpenMP starts one."""
    _run_script(tmp_path, """
        import os
        import numpy as np
        import threadpoolctl
        import fastrnn, fastrnn.functional as F
        from fastrnn import _threads
        _threads._FAIR_SHARE = 0.0
        count = lambda: len(os.listdir("/proc/self/task"))
        rng = np.random.default_rng(0)
        x = rng.standard_normal((40, 32, 64)).astype(np.float32)
        w_ih, w_hh = (0.1 * rng.standard_normal((512, 64))).astype(np.float32), \\
                     (0.1 * rng.standard_normal((512, 128))).astype(np.float32)
        n0 = count()
        with threadpoolctl.threadpool_limits(1):
            y, _, c = F.lstm_forward(x, None, w_ih, w_hh, num_threads=2)
            F.lstm_backward(y, None, c)
        assert count() == n0, (n0, count())
        F.lstm_forward(x, None, w_ih, w_hh, num_threads=2, training=False)
        assert count() == n0 + 1, (n0, count())
        print("OK")
    """)


@needs_openmp
def test_no_deadlock_beside_blas_and_torch_threads(tmp_path):
    """fastrnn on 2 threads in Python threads while NumPy's BLAS and torch's intra-op
    OpenMP threads (torch shares fastrnn's libgomp when both are loaded) run in others:
    everything finishes (a hang fails on the timeout) and fastrnn gives the serial bits."""
    has_torch = importlib.util.find_spec("torch") is not None
    _run_script(tmp_path, f"""
        import threading, time
        import numpy as np
        import threadpoolctl
        import fastrnn.functional as F
        from fastrnn import _threads
        _threads._FAIR_SHARE = 0.0
        HAS_TORCH = {has_torch}
        if HAS_TORCH:
            import torch
            torch.set_num_threads(2)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((40, 32, 64)).astype(np.float32)
        w_ih, w_hh = (0.1 * rng.standard_normal((512, 64))).astype(np.float32), \\
                     (0.1 * rng.standard_normal((512, 128))).astype(np.float32)

        def run():
            y, _, c = F.lstm_forward(x, None, w_ih, w_hh, num_threads=2)
            return [y] + list(F.lstm_backward(y, None, c).values())

        expected = run()
        stop = time.monotonic() + 2.0
        errors, counts = [], {{}}

        def loop(name, fn):
            try:
                n = 0
                while time.monotonic() < stop:
                    fn(); n += 1
                counts[name] = n
            except BaseException as e:
                errors.append(e)

        def fastrnn_check():
            for a, b in zip(run(), expected):
                assert np.array_equal(a, b)

        a = rng.standard_normal((400, 400))
        jobs = [("fastrnn", fastrnn_check), ("fastrnn2", fastrnn_check), ("blas", lambda: a @ a)]
        if HAS_TORCH:
            t = torch.randn(400, 400)
            jobs.append(("torch", lambda: (t @ t).relu_().sum()))
            jobs.append(("torch_eltwise", lambda: torch.tanh(torch.randn(1 << 18)).sum()))
        with threadpoolctl.threadpool_limits(2):
            threads = [threading.Thread(target=loop, args=job, daemon=True) for job in jobs]
            for th in threads: th.start()
            for th in threads: th.join(40)
        assert not any(th.is_alive() for th in threads), "a thread is stuck"
        assert not errors, errors
        assert all(counts[name] > 0 for name, _ in jobs), counts
        print("OK", counts)
    """)


OMP_HOST = """
#include <omp.h>
typedef int (*callback)(int);
/* An OpenMP program that calls back into Python from each thread of its parallel region. */
int run_parallel(callback cb, int n)
{
    int failures = 0;
#pragma omp parallel num_threads(n) reduction(+:failures)
    failures += cb(omp_get_thread_num());
    return failures;
}
"""


@needs_openmp
def test_called_from_inside_another_openmp_parallel_region(tmp_path):
    """fastrnn called from every thread of another program's OpenMP parallel region
    (a small C library built here, calling back into Python): no deadlock (a hang fails
    on the timeout), the serial bits, and no threads beyond the host's (OpenMP runs the
    nested region on the calling thread)."""
    import shutil
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the OpenMP host program")
    src, lib = tmp_path / "host.c", tmp_path / "libhost.so"
    src.write_text(OMP_HOST)
    subprocess.run([cc, "-shared", "-fPIC", "-fopenmp", "-O1", str(src), "-o", str(lib)], check=True,
                   capture_output=True, timeout=120)
    _run_script(tmp_path, f"""
        import ctypes, os
        import numpy as np
        import fastrnn.functional as F
        from fastrnn import _threads
        _threads._FAIR_SHARE = 0.0
        rng = np.random.default_rng(0)
        x = rng.standard_normal((30, 16, 32)).astype(np.float32)
        w_ih = (0.1 * rng.standard_normal((512, 32))).astype(np.float32)
        w_hh = (0.1 * rng.standard_normal((512, 128))).astype(np.float32)
        want, _, c = F.lstm_forward(x, None, w_ih, w_hh, num_threads=1)
        want_g = F.lstm_backward(want, None, c)["w_hh"]
        tasks = set()

        def work(tid):
            y, _, c = F.lstm_forward(x, None, w_ih, w_hh, num_threads=2)
            g = F.lstm_backward(y, None, c)["w_hh"]
            tasks.update(os.listdir("/proc/self/task"))
            return int(not (np.array_equal(y, want) and np.array_equal(g, want_g)))

        CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)
        host = ctypes.CDLL({str(lib)!r})
        host.run_parallel.argtypes = [CB, ctypes.c_int]
        cb = CB(work)
        before = set(os.listdir("/proc/self/task"))
        assert host.run_parallel(cb, 3) == 0, "a callback got other bits"
        assert host.run_parallel(cb, 2) == 0, "a callback got other bits"
        new = tasks - before
        assert len(new) <= 2, f"threads started beyond the host's 2: {{sorted(new)}}"
        print("OK", len(new))
    """)
