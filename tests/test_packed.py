"""Forward weights packed once (`functional.pack_weights`) and passed as `packed=`.

A packed forward must give the same bits as an unpacked one wherever both take
the same path (more than 4 rows), match the reference everywhere (a streamed
step of at most 4 rows takes the packed GEMV path instead of the unpacked one),
give the same bits for 1 and 2 threads, and refuse packings that do not fit.
"""
import numpy as np
import pytest

import fastrnn.functional as F
import fastrnn.reference as R

from conftest import VARIANTS, assert_close, backward, forward, make_problem


def _pack(prob):
    return F.pack_weights(prob.family, prob.w_ih, prob.w_hh, w_hr=prob.w_hr,
                          linear_before_reset=prob.options.get("linear_before_reset", True))


SHAPES = [  # (T, B, I, H): streamed single steps, few rows, chunks, odd sizes
    (1, 1, 5, 7), (1, 4, 3, 9), (4, 1, 6, 5), (2, 2, 17, 33), (7, 3, 5, 9), (30, 1, 64, 70), (3, 5, 20, 100)]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packed_matches_reference_and_threads(variant, shape, dtype):
    T, B, I, H = shape
    prob = make_problem(variant, T=T, B=B, I=I, H=H, dtype=dtype, seed=T * 1000 + B * 100 + H, lengths=B > 1)
    pk = _pack(prob)
    y_ref, s_ref, _ = forward(R, prob, training=False)
    y1, s1, _ = forward(F, prob, training=False, packed=pk, num_threads=1)
    y2, s2, _ = forward(F, prob, training=False, packed=pk, num_threads=2)
    y3, s3, _ = forward(F, prob, training=True, packed=pk, num_threads=2)
    assert_close(y1, y_ref, dtype, f"{prob}: y")
    for a, b in zip(s1, s_ref):
        assert_close(a, b, dtype, f"{prob}: final state")
    assert np.array_equal(y1, y2) and np.array_equal(y1, y3), f"{prob}: threads or training changed the bits"
    for a, b, c in zip(s1, s2, s3):
        assert np.array_equal(a, b) and np.array_equal(a, c)
    if T * B > 4:      # the same path as without packing: the same bits
        y0, s0, _ = forward(F, prob, training=False, num_threads=1)
        assert np.array_equal(y0, y1), f"{prob}: packed and unpacked differ"


@pytest.mark.parametrize("variant", ["gru", "lstm_peep_proj", "rnn_relu"])
def test_packed_training_gradients(variant):
    """Backward after a packed training forward gives the unpacked call's gradients."""
    prob = make_problem(variant, T=6, B=3, I=4, H=5, dtype=np.float64, seed=3)
    rng = np.random.default_rng(0)
    y, states, cache = forward(F, prob, packed=_pack(prob))
    dy = rng.standard_normal(y.shape)
    g1 = backward(F, prob, cache, dy, None)
    y0, _, cache0 = forward(F, prob)
    g0 = backward(F, prob, cache0, dy, None)
    assert np.array_equal(y, y0)
    for k in g0:
        assert np.array_equal(g0[k], g1[k]), k


def test_packed_is_used_not_the_arrays():
    """The packing is a snapshot: changing the weights in place afterwards is not seen
    (documented), and packing again picks the change up."""
    prob = make_problem("lstm", T=5, B=2, I=3, H=4, dtype=np.float64, seed=1)
    pk = _pack(prob)
    y_before, _, _ = forward(F, prob, training=False, packed=pk)
    prob.w_hh[...] *= 2
    y_stale, _, _ = forward(F, prob, training=False, packed=pk)
    assert np.array_equal(y_before, y_stale)
    y_new, _, _ = forward(F, prob, training=False, packed=_pack(prob))
    y_ref, _, _ = forward(R, prob, training=False)
    assert_close(y_new, y_ref, np.float64, "repacked")
    assert not np.allclose(y_new, y_before)


def test_packed_refusals():
    prob = make_problem("gru", T=3, B=2, I=3, H=4, dtype=np.float32, seed=2)
    pk = _pack(prob)
    x, w_ih, w_hh = prob.x, prob.w_ih, prob.w_hh
    with pytest.raises(TypeError, match="packed: expected the PackedWeights"):
        F.gru_forward(x, None, w_ih, w_hh, packed="weights")
    with pytest.raises(ValueError, match="packed: expected weights packed for 'rnn', got weights packed for 'gru'"):
        F.rnn_forward(x, None, w_ih[:4], w_hh[:4, :4], packed=pk)
    with pytest.raises(ValueError, match="linear_before_reset=False"):
        F.gru_forward(x, None, w_ih, w_hh, linear_before_reset=False, packed=pk)
    with pytest.raises(TypeError, match="packed: expected weights packed as float64"):
        F.gru_forward(x.astype(np.float64), None, w_ih.astype(np.float64), w_hh.astype(np.float64), packed=pk)
    with pytest.raises(ValueError, match="packed: expected weights packed for I=5"):
        F.gru_forward(np.zeros((3, 2, 5), np.float32), None, w_ih, w_hh, packed=pk)
    with pytest.raises(ValueError, match="packed from the w_hh passed to this call"):
        F.gru_forward(x, None, w_ih, w_hh.copy(), packed=pk)
    with pytest.raises(ValueError, match="family: expected 'rnn', 'gru' or 'lstm'"):
        F.pack_weights("lstm_peep", w_ih, w_hh)
    with pytest.raises(ValueError, match="w_hh: expected shape"):
        F.pack_weights("gru", w_ih, w_hh[:, :3])
    with pytest.raises(ValueError, match="w_ih: expected a 2-d array"):
        F.pack_weights("gru", w_ih[0], w_hh)
    lstm = make_problem("lstm_proj", T=3, B=2, I=3, H=4, dtype=np.float32, seed=2)
    pk_proj = _pack(lstm)
    with pytest.raises(ValueError, match="packed from the w_hr passed to this call"):
        F.lstm_forward(lstm.x, None, lstm.w_ih, lstm.w_hh, w_hr=lstm.w_hr.copy(), packed=pk_proj)
