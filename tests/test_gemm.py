"""The GEMM behind the hoisted products (input projection, weight gradients),
checked on its own: any strides, odd sizes, long K in slices, both dtypes,
and bit-identical results for any thread count."""
import numpy as np
import pytest

from fastrnn import _engine


def _problem(M, N, K, dtype, a_order, b_order, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((M, K) if a_order != "T" else (K, M)).astype(dtype)
    b = rng.standard_normal((K, N) if b_order != "T" else (N, K)).astype(dtype)
    a = a.T if a_order == "T" else a
    b = b.T if b_order == "T" else b
    return a, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,N,K", [(1, 1, 1), (7, 33, 5), (129, 65, 300), (300, 1000, 3000), (5, 17, 70000)])
@pytest.mark.parametrize("a_order,b_order", [("N", "N"), ("T", "N"), ("N", "T"), ("T", "T")])
def test_gemm_matches_numpy(dtype, M, N, K, a_order, b_order):
    a, b = _problem(M, N, K, dtype, a_order, b_order)
    want = a.astype(np.float64) @ b.astype(np.float64)
    c = np.empty((M, N), dtype)
    _engine.gemm(c, a, b, False, 2)
    tol = 1e-12 if dtype == np.float64 else 2e-6
    scale = np.sqrt(K) * 4
    assert np.abs(c - want).max() <= tol * scale * max(1.0, np.abs(want).max() / scale)
    # accumulate: c += a @ b
    c2 = c.copy()
    _engine.gemm(c2, a, b, True, 2)
    np.testing.assert_allclose(c2, 2 * want, rtol=tol * scale * 10, atol=tol * scale * 10)


@pytest.mark.parametrize("M,N,K", [(300, 1000, 3000), (2048, 64, 700), (64, 2048, 600)])
def test_gemm_threads_bit_identical(M, N, K):
    a, b = _problem(M, N, K, np.float32, "T", "N", seed=1)
    c1 = np.empty((M, N), np.float32)
    c2 = np.empty((M, N), np.float32)
    _engine.gemm(c1, a, b, False, 1)
    _engine.gemm(c2, a, b, False, 2)
    assert np.array_equal(c1, c2)


def test_gemm_empty_k_clears_or_keeps():
    c = np.ones((3, 4), np.float32)
    a = np.zeros((3, 0), np.float32)
    b = np.zeros((0, 4), np.float32)
    _engine.gemm(c, a, b, True, 1)
    assert np.array_equal(c, np.ones((3, 4), np.float32))
    _engine.gemm(c, a, b, False, 1)
    assert np.array_equal(c, np.zeros((3, 4), np.float32))
