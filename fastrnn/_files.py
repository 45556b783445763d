"""Writing a file atomically: a reader finds the old content or the new, never a part."""
import contextlib
import os
import stat
import tempfile


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path, mode="wb", *, encoding=None, permissions=None):
    """A file object, open with `mode`, whose content replaces `path` when the block ends.

    It is a hidden temporary file in the same folder (".NAME.XXXX.tmp"). At the
    end it is flushed, fsync'ed, given `permissions` (default: 0o666 less the
    umask, as for a new file) and renamed over `path` (`os.replace`), and the
    folder is fsync'ed so that the rename lasts. If the block (or any of that)
    raises, the temporary file is removed and `path` keeps its old content.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, stat.S_IMODE(0o666 & ~_umask()) if permissions is None else permissions)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:                                  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
