"""The compiled Adam step (fastrnn/_engine.adam, used by optimizers.Adam for contiguous
float arrays) against the NumPy code it replaces, which is the specification."""
import numpy as np
import pytest

from fastrnn import optimizers


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("order", ["C", "F"])
def test_fused_adam_matches_numpy_bits(dtype, amsgrad, order):
    rng = np.random.default_rng(1)
    shapes = [(37, 5), (70000,), (3, 4, 5)]
    fused = [np.asarray(rng.standard_normal(s), dtype=dtype, order=order) for s in shapes]
    # the same values behind every-other-element views: not contiguous, so the NumPy path runs
    plain = []
    for p in fused:
        buf = np.repeat(p.ravel(order="K"), 2)
        step = np.empty(p.shape, dtype, order=order).strides
        plain.append(np.lib.stride_tricks.as_strided(buf, shape=p.shape, strides=tuple(2 * s for s in step)))
    for p, q in zip(plain, fused):
        np.testing.assert_array_equal(p, q)
        assert not (p.flags.c_contiguous or p.flags.f_contiguous)
    opt_f = optimizers.Adam(3e-3, amsgrad=amsgrad)
    opt_p = optimizers.Adam(3e-3, amsgrad=amsgrad)
    for step in range(5):
        grads = [np.asarray(rng.standard_normal(p.shape), dtype=dtype, order=order) for p in fused]
        opt_f.apply(fused, grads)
        opt_p.apply(plain, [g.copy() for g in grads])
    for p, q in zip(plain, fused):
        np.testing.assert_array_equal(p, q)
