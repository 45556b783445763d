"""fastrnn in child processes, after the parent ran it on several threads.

GNU OpenMP is not fork-safe: a forked child that opens a multi-threaded parallel
region waits forever for the parent's pool threads. fastrnn runs every call of a
forked child on one thread (fastrnn._threads._after_fork_in_child). Each test runs a
script in a fresh interpreter (so that this process never forks after OpenMP ran)
with a timeout: a hang fails the test instead of hanging the run. The parent part of
the script forces 2 fastrnn threads, checks that OpenMP's pool threads exist, then
starts a child one way and compares the child's results with its own, bit for bit.
"""
import os
import subprocess
import sys
import textwrap

import pytest

import fastrnn

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")

SCRIPT = textwrap.dedent('''
    import concurrent.futures
    import multiprocessing as mp
    import os
    import sys
    import time

    import numpy as np

    import fastrnn
    import fastrnn.functional as F
    from fastrnn import _threads, layers

    WAIT = 15.0                         # seconds a child may take


    def problem():
        rng = np.random.default_rng(0)
        T, B, I, H = 40, 32, 64, 128
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        w_ih = (0.1 * rng.standard_normal((4 * H, I))).astype(np.float32)
        w_hh = (0.1 * rng.standard_normal((4 * H, H))).astype(np.float32)
        return x, w_ih, w_hh


    def work(n_threads=2):
        """Forward, backward, packed forward and a few fit steps (Adam, GEMMs), asking for n threads."""
        x, w_ih, w_hh = problem()
        y, (h, c), cache = F.lstm_forward(x, None, w_ih, w_hh, num_threads=n_threads)
        g = F.lstm_backward(np.ones_like(y), None, cache)
        packed = F.pack_weights("lstm", w_ih, w_hh)
        y_p, _, _ = F.lstm_forward(x, None, w_ih, w_hh, packed=packed, training=False, num_threads=n_threads)
        model = fastrnn.Sequential([layers.GRU(32, seed=1), layers.Dense(1)])
        model.compile(optimizer="adam", loss="mse")
        xs = x.transpose(1, 0, 2)[:, :10]
        model.fit(xs, xs[:, -1, :1], epochs=2, batch_size=16, seed=0, verbose=0)
        return [y, h, c, y_p, model.predict(xs, verbose=0)] + [g[k] for k in sorted(g)]


    def child_report(_=None):
        """Runs in the child: its results, whether it counts as forked, and its thread default."""
        return work(), _threads.forked(), fastrnn.get_num_threads()


    def child_exit(queue):
        queue.put(child_report())


    def os_threads():
        return len(os.listdir("/proc/self/task"))


    def check(report, expected, want_forked):
        results, forked, n = report
        assert forked == want_forked, f"forked() is {forked}"
        want_n = 1 if want_forked else _threads._default_threads()
        assert n == want_n, f"get_num_threads() is {n} in the child, expected {want_n}"
        assert len(results) == len(expected)
        for i, (a, b) in enumerate(zip(results, expected)):
            assert np.array_equal(a, b), f"result {i} differs from the parent's"


    def main(method):
        fastrnn.set_num_threads(2)
        _threads._FAIR_SHARE = 0.0              # no contention back-off: really use 2 threads
        before = os_threads()
        expected = work()
        assert os_threads() > before, "OpenMP started no pool thread: the parent did not run multithreaded"

        if method == "os_fork":
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:                        # the child: exit code 0 only when all is right
                code = 1
                try:
                    check(child_report(), expected, True)
                    code = 0
                finally:
                    os._exit(code)
            os.close(w)
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    assert os.waitstatus_to_exitcode(status) == 0, f"child failed: status {status}"
                    break
                time.sleep(0.02)
            else:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise AssertionError("the os.fork child hung")
        elif method in ("fork", "spawn", "forkserver"):
            ctx = mp.get_context(method)
            queue = ctx.Queue()
            proc = ctx.Process(target=child_exit, args=(queue,), daemon=True)
            proc.start()
            try:
                report = queue.get(timeout=WAIT)    # raises queue.Empty if the child hangs
                proc.join(WAIT)
            finally:
                if proc.is_alive():
                    proc.kill()
            assert proc.exitcode == 0, f"{method} child exit code {proc.exitcode}"
            check(report, expected, method == "fork")
        elif method.startswith("pool_"):
            ctx = mp.get_context(method[5:])
            with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
                reports = [f.result(timeout=WAIT) for f in [pool.submit(child_report) for _ in range(3)]]
            for report in reports:
                check(report, expected, method == "pool_fork")
        else:
            raise ValueError(method)
        # the parent still runs multithreaded, with the same results
        for a, b in zip(work(), expected):
            assert np.array_equal(a, b)
        print("OK", method)


    if __name__ == "__main__":
        main(sys.argv[1])
''')


def _run(tmp_path, method, timeout=45):
    script = tmp_path / "fork_check.py"
    script.write_text(SCRIPT)
    env = dict(os.environ)
    # the children import the fastrnn under test, wherever this process found it
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("OMP_NUM_THREADS", None)
    try:
        proc = subprocess.run([sys.executable, str(script), method], env=env, capture_output=True, text=True,
                              timeout=timeout, cwd=str(tmp_path))
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{method}: the script hung (killed after {timeout} s)\n{e.stdout}\n{e.stderr}")
    assert proc.returncode == 0 and f"OK {method}" in proc.stdout, \
        f"{method}: exit code {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.skipif(not fastrnn.openmp_enabled(), reason="the engine was built without OpenMP")
@pytest.mark.parametrize("method", ["os_fork", "fork", "spawn", "forkserver", "pool_fork", "pool_spawn"])
def test_child_process_after_multithreaded_parent(tmp_path, method):
    _run(tmp_path, method)


def test_fork_flag_in_this_process():
    """The pytest process itself was not forked after fastrnn's import."""
    from fastrnn import _threads
    assert not _threads.forked()
