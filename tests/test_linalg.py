"""fastrnn._linalg.matmul (the layers' products on the engine's GEMM) against NumPy."""
import numpy as np
import pytest

import fastrnn
from fastrnn._linalg import matmul


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 3, 7), (64, 100, 33), (300, 17, 129), (0, 4, 5), (4, 0, 5)])
@pytest.mark.parametrize("layout", ["c", "a_t", "b_t", "both_t", "sliced"])
def test_matmul_matches_numpy(dtype, shape, layout):
    M, K, N = shape
    rng = np.random.default_rng(M * 1000 + K * 10 + N)
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    if layout in ("a_t", "both_t"):
        a = np.ascontiguousarray(a.T).T
    if layout in ("b_t", "both_t"):
        b = np.ascontiguousarray(b.T).T
    if layout == "sliced":
        a = np.repeat(a, 2, axis=1)[:, ::2]
        b = np.repeat(b, 3, axis=0)[::3]
    expect = a.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    got = matmul(a, b)
    assert got.dtype == dtype and got.shape == (M, N)
    np.testing.assert_allclose(got, expect, rtol=tol, atol=tol * max(1, K))
    out = np.ones((M, N), dtype)
    matmul(a, b, out=out, accumulate=True)
    np.testing.assert_allclose(out, expect + 1, rtol=tol, atol=tol * max(1, K))
    with fastrnn.num_threads(1):
        one = matmul(a, b)
    with fastrnn.num_threads(2):
        two = matmul(a, b)
    assert np.array_equal(one, two)


def test_matmul_fallback_and_errors():
    a = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(matmul(a, a.T), a @ a.T)          # ints: NumPy
    f = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"matmul: expected a \(M, K\) and b \(K, N\)"):
        matmul(f, f)
    with pytest.raises(ValueError, match="out expected a writeable C-contiguous float32 array of shape"):
        matmul(f, f.T, out=np.zeros((3, 3), np.float32))
