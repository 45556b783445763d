"""The one piece of global mutable state: how many threads a kernel call may use."""
import contextlib
import os

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
