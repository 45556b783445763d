"""Matrix products for the layers, on fastrnn's own GEMM kernel.

Layers outside the recurrent engine (Dense, the losses' projections) multiply
through here rather than through NumPy's BLAS, so that one thread pool (the
kernels' OpenMP threads, sized by `fastrnn.set_num_threads`) is in charge of
the cores during training: a second pool (OpenBLAS's spinning threads) would
compete with it. Results do not depend on the thread count.
"""
import numpy as np

from . import _engine, _threads

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def matmul(a, b, out=None, accumulate=False):
    """a (M, K) @ b (K, N) for float32/float64 2-d arrays of one dtype, any strides.

    With `out` (C-contiguous (M, N), same dtype) the product is written, or added
    when `accumulate`, into it. Other dtypes fall back to NumPy.
    """
    if a.dtype != b.dtype or a.dtype not in _FLOATS or a.ndim != 2 or b.ndim != 2:
        prod = np.matmul(a, b)
        if out is None:
            return prod
        if accumulate:
            out += prod
        else:
            out[...] = prod
        return out
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: expected a (M, K) and b (K, N), got {a.shape} and {b.shape}")
    if a.strides[0] % a.itemsize or a.strides[1] % a.itemsize:
        a = np.ascontiguousarray(a)
    if b.strides[0] % b.itemsize or b.strides[1] % b.itemsize:
        b = np.ascontiguousarray(b)
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), a.dtype)
        accumulate = False
    elif (out.shape != (a.shape[0], b.shape[1]) or out.dtype != a.dtype or not out.flags.c_contiguous
          or not out.flags.writeable):
        raise ValueError(f"matmul: out expected a writeable C-contiguous {a.dtype} array of shape "
                         f"{(a.shape[0], b.shape[1])}, got {out.dtype} {out.shape}")
    _engine.gemm(out, a, b, bool(accumulate), _threads.get_num_threads())
    return out
