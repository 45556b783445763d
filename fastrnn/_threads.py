"""The one piece of global mutable state: how many threads a kernel call may use
(the setting, and a short back-off when other processes take the cores)."""
import contextlib
import os
import time

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
    """The default thread count: set_num_threads(), else OMP_NUM_THREADS, else the cores available."""
    return _num_threads


@contextlib.contextmanager
def num_threads(n):
    """`with fastrnn.num_threads(n):` runs the block with n threads, then restores the setting."""
    old = _num_threads
    set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(old)


def resolve(num_threads):
    """The thread count for one call: its own argument, else the global setting."""
    n = check_num_threads(num_threads)
    return _num_threads if n is None else n


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


def for_call(n):
    """The threads a kernel call asking for `n` should use now."""
    if n > 1 and _backoff_until and time.monotonic() < _backoff_until:
        return 1
    return n


class Timed:
    """Times one kernel call: `with Timed(n) as t: t.used = _engine.forward(...)`,
    where `used` is the threads its step loop ran on."""

    __slots__ = ("n", "used", "wall", "cpu")

    def __init__(self, n):
        self.n, self.used = n, 1

    def __enter__(self):
        if self.n > 1:
            self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        if self.n > 1 and exc[0] is None and self.used > 1:
            wall = time.perf_counter() - self.wall
            if wall >= _MIN_WALL:
                _observe(self.used, wall, time.process_time() - self.cpu)
        return False


def _observe(used, wall, cpu):
    global _backoff_until, _backoff_s
    if cpu < _FAIR_SHARE * used * wall:
        _backoff_until = time.monotonic() + _backoff_s
        _backoff_s = min(2 * _backoff_s, _BACKOFF_MAX)
    else:
        _backoff_until, _backoff_s = 0.0, _BACKOFF_MIN
