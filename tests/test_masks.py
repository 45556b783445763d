"""A general step mask (`step_mask`, (T, B) bool) and a recurrent mask
(`recurrent_mask`, (B, P): variational recurrent dropout) in both modules.

The reference is checked against finite differences and against equivalent
formulations (a right-padded step mask is `lengths`; a recurrent mask of ones
is no mask); the kernels are checked against the reference, across thread
counts (bit-identical) and with packed weights.
"""
import numpy as np
import pytest

import fastrnn.functional as F
import fastrnn.reference as R

from conftest import (VARIANTS, assert_close, backward, central_difference, forward, make_problem,
                      random_cotangents, rel_error)


def _masks(prob, seed, step=True, rec=True, p=0.4):
    """A random step mask with a few holes (layout like x) and a recurrent mask of 0 and 1/(1-p)."""
    rng = np.random.default_rng(seed)
    kw = {}
    if step:
        m = rng.random((prob.T, prob.B)) > 0.3
        kw["step_mask"] = np.ascontiguousarray(m.T) if prob.batch_first else m
    if rec:
        keep = rng.random((prob.B, prob.P)) > p
        kw["recurrent_mask"] = (keep / (1 - p)).astype(prob.dtype)
    return kw


def _run(mod, prob, masks, dy, dstates, **extra):
    y, states, cache = forward(mod, prob, **masks, **extra)
    grads = backward(mod, prob, cache, dy, dstates)
    return y, states, grads


CASES = [dict(), dict(reverse=True), dict(lengths=True), dict(batch_first=True), dict(bias="none", states="none")]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("which", ["step", "rec", "both"])
def test_reference_finite_differences(variant, case, which):
    prob = make_problem(variant, T=4, B=3, I=3, H=4, dtype=np.float64, seed=case * 7 + len(which), **CASES[case])
    masks = _masks(prob, seed=case, step=which != "rec", rec=which != "step")
    weights = random_cotangents(prob, seed=case + 11)
    y, states, cache = forward(R, prob, **masks)
    grads = backward(R, prob, cache, *weights)
    explicit = prob.with_explicit_states()

    def loss(p):
        y, states, _ = forward(R, p, training=False, **masks)
        return float(np.sum(y * weights[0]) + sum(np.sum(s * w) for s, w in zip(states, weights[1])))

    for name, value in explicit.arrays().items():
        if name not in grads:
            continue
        fd = central_difference(lambda arr: loss(explicit.replace(**{name: arr})), value, 1e-6)
        err = rel_error(grads[name], fd)
        assert err < 1e-6, f"{prob} {which}: d{name} relative error {err}"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_reference_equivalences(variant):
    """A right-padded step mask is lengths; ones as a recurrent mask change nothing;
    zeros as a recurrent mask cut an RNN's recurrence (each step sees only its input;
    GRU's z * h and LSTM's cell state still carry)."""
    prob = make_problem(variant, T=5, B=3, I=3, H=4, dtype=np.float64, seed=4, lengths=np.array([5, 0, 2]))
    mask = np.arange(5)[:, None] < prob.lengths[None, :]
    y1, s1, _ = forward(R, prob, training=False)
    y2, s2, _ = forward(R, prob.replace(lengths=None), training=False, step_mask=mask)
    np.testing.assert_array_equal(y1, y2)
    for a, b in zip(s1, s2):
        np.testing.assert_array_equal(a, b)
    ones = np.ones((prob.B, prob.P))
    y3, _, _ = forward(R, prob, training=False, recurrent_mask=ones)
    np.testing.assert_array_equal(y1, y3)
    # zero mask: step t's output is the first step's function of x_t from the same state
    zero = np.zeros((prob.B, prob.P))
    full = prob.replace(lengths=None)
    y4, _, _ = forward(R, full, training=False, recurrent_mask=zero)
    for t in range(prob.T):
        one = full.replace(x=full.x[t:t + 1], h0=np.zeros((prob.B, prob.P)) if full.h0 is not None else None)
        y_t, _, _ = forward(R, one, training=False, recurrent_mask=zero)
        if prob.family == "rnn":
            np.testing.assert_allclose(y4[t], y_t[0], rtol=1e-12, atol=1e-12)


SHAPES = [(1, 1, 3, 5), (2, 2, 4, 6), (6, 3, 5, 9), (9, 4, 7, 33)]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_kernels_match_reference(variant, shape, dtype, case):
    T, B, I, H = shape
    opts = dict(CASES[case])
    if opts.get("lengths") and B == 1:
        opts["lengths"] = np.array([T])
    prob = make_problem(variant, T=T, B=B, I=I, H=H, dtype=dtype, seed=hash((T, B, H, case)) % 1000, **opts)
    masks = _masks(prob, seed=case)
    dy, dstates = random_cotangents(prob, seed=3)
    y_r, s_r, g_r = _run(R, prob, masks, dy, dstates)
    y1, s1, g1 = _run(F, prob, masks, dy, dstates, num_threads=1)
    y2, s2, g2 = _run(F, prob, masks, dy, dstates, num_threads=2)
    assert_close(y1, y_r, dtype, f"{prob}: y")
    for a, b in zip(s1, s_r):
        assert_close(a, b, dtype, f"{prob}: state")
    for k in g_r:
        assert_close(g1[k], g_r[k], dtype, f"{prob}: d{k}")
    assert np.array_equal(y1, y2)
    for k in g1:
        assert np.array_equal(g1[k], g2[k]), f"{prob}: d{k} differs between 1 and 2 threads"
    packed = F.pack_weights(prob.family, prob.w_ih, prob.w_hh, w_hr=prob.w_hr,
                            linear_before_reset=prob.options.get("linear_before_reset", True))
    y3, s3, _ = forward(F, prob, training=False, packed=packed, **masks)
    assert_close(y3, y_r, dtype, f"{prob}: packed y")


def test_mask_validation():
    prob = make_problem("gru", T=3, B=2, I=3, H=4, dtype=np.float32, seed=0)
    args = (prob.x, None, prob.w_ih, prob.w_hh)
    for mod in (F, R):
        with pytest.raises(TypeError, match=r"step_mask: expected a bool array \(T, B\), got dtype int64"):
            mod.gru_forward(*args, step_mask=np.ones((3, 2), np.int64))
        with pytest.raises(ValueError, match=r"step_mask: expected shape \(3, 2\) \(T, B\), got \(2, 3\)"):
            mod.gru_forward(*args, step_mask=np.ones((2, 3), bool))
        with pytest.raises(ValueError, match=r"step_mask: expected shape \(2, 3\) \(B, T\) with batch_first=True, got \(3, 2\)"):
            mod.gru_forward(prob.x.transpose(1, 0, 2), None, prob.w_ih, prob.w_hh, batch_first=True,
                            step_mask=np.ones((2, 3), bool).T)
        with pytest.raises(TypeError, match="recurrent_mask: expected dtype float32"):
            mod.gru_forward(*args, recurrent_mask=np.ones((2, 4)))
        with pytest.raises(ValueError, match=r"recurrent_mask: expected shape \(2, 4\) \(B, H\), got \(4, 2\)"):
            mod.gru_forward(*args, recurrent_mask=np.ones((4, 2), np.float32))


def test_step_mask_batch_first_layout():
    """batch_first takes the mask as (B, T), like x."""
    prob = make_problem("lstm", T=5, B=3, I=3, H=4, dtype=np.float64, seed=9)
    mask = np.random.default_rng(0).random((5, 3)) > 0.4
    y1, _, _ = forward(F, prob, training=False, step_mask=mask)
    bf = prob.replace(x=np.ascontiguousarray(prob.x.transpose(1, 0, 2)), options={**prob.options, "batch_first": True})
    y2, _, _ = forward(F, bf, training=False, step_mask=np.ascontiguousarray(mask.T))
    np.testing.assert_array_equal(y1, y2.transpose(1, 0, 2))
