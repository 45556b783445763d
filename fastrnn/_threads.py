"""The one piece of global mutable state: how many threads a kernel call may use
(the setting, and a short back-off when other processes take the cores).

Every kernel call takes its thread count from here, and three things can lower it:

- OpenMP's own setting. The kernels' parallel regions name their thread count, so
  OpenMP's max-threads setting (`omp_set_num_threads`, which
  `threadpoolctl.threadpool_limits` calls) would not bound them by itself. fastrnn
  therefore reads the calling thread's max-threads setting of the OpenMP runtime its
  engine is linked to, and when it is below fastrnn's default (OMP_NUM_THREADS, else
  the cores available), caps every call at it. So
  `with threadpool_limits(1): ...` (or `threadpool_limits(1, user_api="openmp")`)
  runs fastrnn on one thread, while `fastrnn.set_num_threads(n)` above the core
  count still works outside such a block. Like OpenMP's setting, the limit belongs to
  the thread that set it. A library sharing the runtime that lowers the setting
  (e.g. torch.set_num_threads when torch uses the same libgomp) lowers fastrnn's too.
- fork. See `_after_fork_in_child`: a forked child runs fastrnn on one thread.
- the contention back-off below.
"""
import contextlib
import ctypes
import os
import time

from . import _engine
from ._validate import check_num_threads


def _default_threads():
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n >= 1:
            return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


_num_threads = _default_threads()


def set_num_threads(n):
    """Set the default thread count of kernel calls (a positive int)."""
    global _num_threads
    n = check_num_threads(n)
    if n is None:
        raise TypeError("n: expected a positive int, got None")
    _num_threads = n


def get_num_threads():
    """The default thread count: set_num_threads(), else OMP_NUM_THREADS, else the cores available;
    lowered to OpenMP's max-threads setting of the calling thread when that was set lower
    (threadpoolctl's threadpool_limits does), and 1 in a process made by fork (see the module)."""
    return cap(_num_threads)


@contextlib.contextmanager
def num_threads(n):
    """`with fastrnn.num_threads(n):` runs the block with n threads, then restores the setting."""
    old = _num_threads
    set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(old)


def requested(num_threads):
    """A call's own (already checked) thread count, else the setting, before any cap."""
    return _num_threads if num_threads is None else num_threads


def resolve(num_threads):
    """The thread count for one call: its own argument, else the global setting (both capped, see `cap`)."""
    n = check_num_threads(num_threads)
    return cap(_num_threads if n is None else n)


# ---- OpenMP's setting (threadpoolctl) and fork ---------------------------------------------------

def _find_omp_get_max_threads():
    """omp_get_max_threads of the OpenMP runtime the engine is linked to (ctypes), or None.

    dlsym on the engine's own handle searches the engine and then the libraries it
    depends on, so this is the runtime the kernels use even when two are loaded."""
    if not _engine.openmp_enabled():
        return None
    try:
        fn = ctypes.CDLL(_engine.__file__).omp_get_max_threads
    except (OSError, AttributeError):
        return None
    fn.restype, fn.argtypes = ctypes.c_int, []
    return fn


_omp_get_max_threads = _find_omp_get_max_threads()
_omp_default = _default_threads()   # OpenMP's own default: OMP_NUM_THREADS, else the cores available
_forked = False                     # True in a process made by fork after fastrnn was imported


def omp_limit():
    """The calling thread's OpenMP max-threads setting when it is below OpenMP's default
    (someone lowered it: omp_set_num_threads, threadpoolctl), else None."""
    if _omp_get_max_threads is None:
        return None
    m = _omp_get_max_threads()
    return m if 1 <= m < _omp_default else None


def cap(n):
    """`n` threads as a kernel call may use them here: 1 in a forked child, at most the
    OpenMP limit (`omp_limit`) when there is one."""
    if n <= 1:
        return n
    if _forked:
        return 1
    m = omp_limit()
    return n if m is None else min(n, m)


def _after_fork_in_child():
    """Run by os.register_at_fork in a child made by fork (os.fork, multiprocessing's
    "fork" start method, and the children of a forkserver that had imported fastrnn).

    GNU OpenMP (libgomp) is not fork-safe: the child inherits the parent's thread pool
    bookkeeping but not its threads, so a parallel region that wants more than one
    thread waits forever for threads that do not exist. (Measured here: after a
    2-thread LSTM forward in the parent, or only torch's multi-threaded matmul, the
    child's 2-thread fastrnn forward hung.) The
    runtime is shared with any library linked to the same libgomp (torch loads its own
    copy under the same name, which the loader then shares), so fastrnn cannot know
    whether the parent's pool was started. Every fastrnn call in a forked child
    therefore runs on one thread, whatever set_num_threads or num_threads= ask: the
    engine then opens no parallel region at all, or one of a single thread, which
    libgomp runs on the calling thread without its pool. Results are bit-identical
    for any thread count, so this changes speed only. Processes started with "spawn"
    or "forkserver" (when the server did not import fastrnn) are fresh and keep their
    threads; children of a forked child stay single-threaded."""
    global _forked, _backoff_until, _backoff_s
    _forked = True
    _backoff_until, _backoff_s = 0.0, _BACKOFF_MIN


def forked():
    """True in a process made by fork after fastrnn was imported: its calls run on one thread."""
    return _forked


# Contention back-off. The kernels' step loops meet at a barrier after every step,
# so their threads help only while each has a core of its own. When other processes
# keep the cores busy, a thread waits at each barrier for its partner's next time
# slice: on this 2-core machine a 2-thread LSTM step loop ran 2x slower (median) and
# 8x slower (90th percentile) than one thread while another process computed. So a
# multi-threaded call that got well under its share of CPU time switches later calls
# to one thread for a while (doubling, from 0.25 s up to 30 s, while it recurs), then
# tries again. Results are bit-identical for any thread count: this changes speed only.
_backoff_until = 0.0
_backoff_s = 0.25
_BACKOFF_MIN, _BACKOFF_MAX = 0.25, 30.0
_MIN_WALL = 2e-3                # shorter calls say too little about the machine
_FAIR_SHARE = 0.75              # CPU time below this share of threads x wall: contended
# The CPU time of the other threads of the process is brought up to date at the
# scheduler's tick (4-10 ms), so a reading may miss up to one tick of each: without
# this allowance, 2-thread calls of 2-8 ms read as contended on an idle machine.
_CPU_TICK = 0.01


def for_call(n):
    """The threads a kernel call asking for `n` should use now."""
    n = cap(n)
    if n > 1 and _backoff_until and time.monotonic() < _backoff_until:
        return 1
    return n


# Recurrent kernel calls running now, from any Python thread (the kernels release
# the GIL): concurrent calls share the cores rather than each asking for all of them.
# One entry per call; list.append and list.pop are atomic under the GIL, so no lock.
_in_flight = []


class Call:
    """One recurrent kernel call:

        with Call(requested, splittable) as c:
            c.used = _engine.forward(a, c.n, ...)

    `c.n` is the threads it may use: `requested` capped (`cap`), 1 during a
    contention back-off, and with k calls running at once in other Python threads,
    at most cores / k, so that 8 threads sharing a model on a 2-core machine do not
    start 16 OpenMP threads. A `splittable` call (one whose step loop can use two
    threads) is timed for the back-off; `used` is the threads its step loop ran on."""

    __slots__ = ("requested", "splittable", "n", "used", "wall", "cpu")

    def __init__(self, requested, splittable=True):
        self.requested, self.splittable = requested, splittable
        self.n, self.used = 1, 1

    def __enter__(self):
        _in_flight.append(None)
        k = len(_in_flight)
        n = for_call(self.requested)
        if k > 1 and n > 1:
            n = min(n, max(1, _omp_default // k))
        self.n = n
        if n > 1 and self.splittable:
            self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        _in_flight.pop()
        if self.n > 1 and self.splittable and exc[0] is None and self.used > 1:
            wall = time.perf_counter() - self.wall
            if wall >= _MIN_WALL:
                _observe(self.used, wall, time.process_time() - self.cpu)
        return False


def _observe(used, wall, cpu):
    global _backoff_until, _backoff_s
    if cpu + (used - 1) * _CPU_TICK < _FAIR_SHARE * used * wall:
        _backoff_until = time.monotonic() + _backoff_s
        _backoff_s = min(2 * _backoff_s, _BACKOFF_MAX)
    else:
        _backoff_until, _backoff_s = 0.0, _BACKOFF_MIN


if hasattr(os, "register_at_fork"):     # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
