"""fastrnn.reference against finite differences, a written-out spec and PyTorch.

The reference is what the compiled kernels are tested against, so it is
checked here from three independent directions:
- backward against float64 central finite differences of its own forward,
  for every cell variant and option (every input, every weight);
- forward against `spec_forward`, the formulas of DESIGN.md written out per
  sample and per step (no batching, no masking machinery);
- forward and backward against torch.nn.RNN/GRU/LSTM where PyTorch has the
  same cell (skipped when torch is not installed).
"""
import numpy as np
import pytest

import fastrnn.reference as R
from conftest import (OPTIONS, VARIANTS, assert_close, backward, check_fd, forward,
                      make_problem, random_cotangents, seed_of)


# ---------------------------------------------------------------------------
# Backward == finite differences, every variant x every option

@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_backward_matches_finite_differences(variant, option):
    seed = seed_of("fd", variant, option)
    prob = make_problem(variant, T=4, B=3, I=3, H=4, seed=seed, **OPTIONS[option])
    check_fd(R, prob, seed)


@pytest.mark.parametrize("variant", ["rnn_relu", "gru_orig", "lstm_peep_proj"])
def test_finite_differences_odd_sizes(variant):
    # H=1, a single sample, T=5, lengths 3 with reverse: the smallest shapes.
    prob = make_problem(variant, T=5, B=1, I=2, H=1, seed=seed_of("fd1", variant),
                        lengths=np.array([3]), reverse=True)
    check_fd(R, prob, seed_of("fd1", variant))


# ---------------------------------------------------------------------------
# Forward == the spec written out per sample and per step

def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def spec_forward(prob):
    """DESIGN.md's formulas, one sample and one step at a time, in float64.

    Sample b is processed at t = 0 .. lengths[b]-1, or lengths[b]-1 .. 0 with
    reverse; its other steps output zeros; its final state is the state after
    its last processed step (h0 when it has none).
    """
    p = {n: np.asarray(v, np.float64) for n, v in prob.with_explicit_states().arrays().items()}
    T, B, H, P, G = prob.T, prob.B, prob.H, prob.P, {"rnn": 1, "gru": 3, "lstm": 4}[prob.family]
    x = p["x"].transpose(1, 0, 2) if prob.batch_first else p["x"]          # (T, B, I)
    w_ih, w_hh = p["w_ih"], p["w_hh"]
    b_ih, b_hh = p.get("b_ih", np.zeros(G * H)), p.get("b_hh", np.zeros(G * H))
    y = np.zeros((T, B, P))
    h_n, c_n = np.zeros((B, P)), np.zeros((B, H))
    for b in range(B):
        n_steps = T if prob.lengths is None else int(prob.lengths[b])
        order = range(n_steps - 1, -1, -1) if prob.options["reverse"] else range(n_steps)
        h = p["h0"][b]
        c = p["c0"][b] if prob.family == "lstm" else None
        for t in order:
            xt = x[t, b]
            if prob.family == "rnn":
                pre = w_ih @ xt + b_ih + w_hh @ h + b_hh
                h = np.tanh(pre) if prob.options["nonlinearity"] == "tanh" else np.maximum(pre, 0)
            elif prob.family == "gru":
                (W_ir, W_iz, W_in), (W_hr, W_hz, W_hn) = np.split(w_ih, 3), np.split(w_hh, 3)
                (b_ir, b_iz, b_in), (b_hr, b_hz, b_hn) = np.split(b_ih, 3), np.split(b_hh, 3)
                r = _sigmoid(W_ir @ xt + b_ir + W_hr @ h + b_hr)
                z = _sigmoid(W_iz @ xt + b_iz + W_hz @ h + b_hz)
                if prob.options["linear_before_reset"]:
                    n = np.tanh(W_in @ xt + b_in + r * (W_hn @ h + b_hn))
                else:
                    n = np.tanh(W_in @ xt + b_in + W_hn @ (r * h) + b_hn)
                h = (1 - z) * n + z * h
            else:
                (W_ii, W_if, W_ig, W_io), (W_hi, W_hf, W_hg, W_ho) = np.split(w_ih, 4), np.split(w_hh, 4)
                (b_ii, b_if, b_ig, b_io), (b_hi, b_hf, b_hg, b_ho) = np.split(b_ih, 4), np.split(b_hh, 4)
                p_i, p_f, p_o = p.get("w_peep", np.zeros((3, H)))
                i = _sigmoid(W_ii @ xt + b_ii + W_hi @ h + b_hi + p_i * c)
                f = _sigmoid(W_if @ xt + b_if + W_hf @ h + b_hf + p_f * c)
                g = np.tanh(W_ig @ xt + b_ig + W_hg @ h + b_hg)
                c = f * c + i * g
                o = _sigmoid(W_io @ xt + b_io + W_ho @ h + b_ho + p_o * c)
                m = o * np.tanh(c)
                h = p["w_hr"] @ m if "w_hr" in p else m
            y[t, b] = h
        h_n[b] = h
        if c is not None:
            c_n[b] = c
    if prob.batch_first:
        y = y.transpose(1, 0, 2)
    return y, ((h_n, c_n) if prob.family == "lstm" else (h_n,))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_matches_written_out_spec(variant, option, dtype):
    prob = make_problem(variant, T=5, B=4, I=3, H=5, dtype=dtype,
                        seed=seed_of("spec", variant, option), **OPTIONS[option])
    y, states, cache = forward(R, prob)
    y_spec, states_spec = spec_forward(prob)
    assert_close(y, y_spec.astype(dtype), dtype, "y")
    for name, s, s_spec in zip(("h_n", "c_n"), states, states_spec):
        assert_close(s, s_spec.astype(dtype), dtype, name)
    if prob.lengths is not None:
        padded = np.arange(prob.T)[:, None] >= prob.lengths[None, :]            # (T, B)
        y_tm = y.transpose(1, 0, 2) if prob.batch_first else y
        assert np.all(y_tm[padded] == 0)


def test_lengths_zero_and_full_are_drawn():
    # The option "lengths" must exercise both ends of the range.
    prob = make_problem("gru", T=4, B=3, lengths=True, seed=1)
    assert 0 in prob.lengths and 4 in prob.lengths


# ---------------------------------------------------------------------------
# Equivalences between options

@pytest.mark.parametrize("variant", VARIANTS)
def test_missing_bias_equals_zero_bias(variant):
    prob = make_problem(variant, seed=seed_of("bias", variant), bias="none", lengths=True)
    zeros = np.zeros(prob.w_ih.shape[0])
    with_zeros = prob.replace(b_ih=zeros, b_hh=zeros)
    dy, ds = random_cotangents(prob, 3)
    y0, s0, c0 = forward(R, prob)
    y1, s1, c1 = forward(R, with_zeros)
    np.testing.assert_array_equal(y0, y1)
    g0, g1 = backward(R, prob, c0, dy, ds), backward(R, with_zeros, c1, dy, ds)
    assert set(g1) - set(g0) == {"b_ih", "b_hh"}
    for name in g0:
        np.testing.assert_allclose(g0[name], g1[name], rtol=1e-14, atol=1e-14, err_msg=name)


def test_zero_peepholes_and_identity_projection_equal_plain_lstm():
    plain = make_problem("lstm", H=4, seed=5, lengths=True, reverse=True)
    full = plain.replace(w_peep=np.zeros((3, 4)), w_hr=np.eye(4))
    dy, ds = random_cotangents(plain, 6)
    y0, s0, c0 = forward(R, plain)
    y1, s1, c1 = forward(R, full)
    np.testing.assert_allclose(y0, y1, rtol=1e-14, atol=1e-15)
    g0, g1 = backward(R, plain, c0, dy, ds), backward(R, full, c1, dy, ds)
    for name in g0:
        np.testing.assert_allclose(g0[name], g1[name], rtol=1e-13, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("variant", ["rnn_tanh", "gru_orig", "lstm_peep_proj"])
def test_reverse_equals_forward_on_flipped_time(variant):
    prob = make_problem(variant, T=5, seed=seed_of("rev", variant), reverse=True)
    flipped = prob.replace(x=prob.x[::-1].copy(), options={**prob.options, "reverse": False})
    dy, ds = random_cotangents(prob, 7)
    y0, s0, c0 = forward(R, prob)
    y1, s1, c1 = forward(R, flipped)
    np.testing.assert_allclose(y0, y1[::-1], rtol=1e-14, atol=1e-15)
    g0 = backward(R, prob, c0, dy, ds)
    g1 = backward(R, flipped, c1, dy[::-1].copy(), ds)
    np.testing.assert_allclose(g0["x"], g1["x"][::-1], rtol=1e-13, atol=1e-14)
    for name in ("h0", "w_ih", "w_hh"):
        np.testing.assert_allclose(g0[name], g1[name], rtol=1e-13, atol=1e-14, err_msg=name)


# ---------------------------------------------------------------------------
# Padding never leaks, float32 stays float32

@pytest.mark.parametrize("variant", VARIANTS)
def test_nan_in_padding_does_not_leak(variant):
    """Steps past a sample's length are never read: NaN there changes nothing."""
    prob = make_problem(variant, T=4, B=3, seed=seed_of("nan", variant), lengths=True,
                        reverse=variant.endswith("proj"))
    padded = np.arange(prob.T)[:, None] >= prob.lengths[None, :]                # (T, B)
    dy, ds = random_cotangents(prob, 8)
    y, s, cache = forward(R, prob)
    grads = backward(R, prob, cache, dy, ds)
    x_nan, dy_nan = prob.x.copy(), dy.copy()
    x_nan[padded], dy_nan[padded] = np.nan, np.nan
    poisoned = prob.replace(x=x_nan)
    y1, s1, cache1 = forward(R, poisoned)
    grads1 = backward(R, poisoned, cache1, dy_nan, ds)
    np.testing.assert_array_equal(y, y1)
    for a, b in zip(s, s1):
        np.testing.assert_array_equal(a, b)
    for name in grads:
        np.testing.assert_array_equal(grads[name], grads1[name], err_msg=name)


@pytest.mark.parametrize("variant", ["rnn_relu", "gru", "gru_orig", "lstm_peep_proj"])
def test_float32_is_computed_in_float32_and_close_to_float64(variant):
    seed = seed_of("f32", variant)
    p32 = make_problem(variant, T=5, B=3, I=4, H=6, dtype=np.float32, seed=seed, lengths=True)
    p64 = p32.replace(dtype=np.dtype(np.float64),
                      **{n: a.astype(np.float64) for n, a in p32.arrays().items()})
    dy, ds = random_cotangents(p32, seed)
    y32, s32, c32 = forward(R, p32)
    g32 = backward(R, p32, c32, dy, ds)
    y64, s64, c64 = forward(R, p64)
    g64 = backward(R, p64, c64, dy.astype(np.float64), tuple(d.astype(np.float64) for d in ds))
    for got, want, name in [(y32, y64, "y")] + list(zip(s32, s64, ("h_n", "c_n"))) + \
            [(g32[n], g64[n], n) for n in g64]:
        assert got.dtype == np.float32, name
        scale = max(1.0, np.abs(want).max())
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale, err_msg=name)


# ---------------------------------------------------------------------------
# PyTorch, where it has the same cell (GRU linear_before_reset=True; no peepholes)

TORCH_VARIANTS = ["rnn_tanh", "rnn_relu", "gru", "lstm", "lstm_proj"]


def _torch_run(torch, prob, dy, dstates):
    """PyTorch forward + autograd backward of sum(y*dy) + sum(h_n*dh_n) (+ c_n),
    one sample at a time so that lengths and reverse need no packing."""
    e = prob.with_explicit_states()
    T, B, I, H, P = prob.T, prob.B, prob.I, prob.H, prob.P
    if prob.family == "rnn":
        mod = torch.nn.RNN(I, H, nonlinearity=prob.options["nonlinearity"])
    elif prob.family == "gru":
        mod = torch.nn.GRU(I, H)
    else:
        mod = torch.nn.LSTM(I, H, proj_size=P if prob.w_hr is not None else 0)
    mod = mod.double()
    zeros = np.zeros(prob.w_ih.shape[0])
    with torch.no_grad():
        mod.weight_ih_l0.copy_(torch.from_numpy(prob.w_ih))
        mod.weight_hh_l0.copy_(torch.from_numpy(prob.w_hh))
        mod.bias_ih_l0.copy_(torch.from_numpy(prob.b_ih if prob.b_ih is not None else zeros))
        mod.bias_hh_l0.copy_(torch.from_numpy(prob.b_hh if prob.b_hh is not None else zeros))
        if prob.w_hr is not None:
            mod.weight_hr_l0.copy_(torch.from_numpy(prob.w_hr))
    x_tm = prob.x.transpose(1, 0, 2) if prob.batch_first else prob.x
    x = torch.tensor(x_tm, requires_grad=True)                                 # (T, B, I)
    h0 = torch.tensor(e.h0, requires_grad=True)
    c0 = torch.tensor(e.c0, requires_grad=True) if prob.family == "lstm" else None
    y_cols, h_n, c_n = [], [], []
    for b in range(B):
        n_steps = T if prob.lengths is None else int(prob.lengths[b])
        hb, cb = h0[b], (c0[b] if c0 is not None else None)
        out = torch.zeros(0, P, dtype=torch.float64)
        if n_steps:
            xb = x[:n_steps, b:b + 1]
            if prob.options["reverse"]:
                xb = xb.flip(0)
            state = (hb[None, None], cb[None, None]) if c0 is not None else hb[None, None]
            out, state = mod(xb, state)
            out = out[:, 0]
            if prob.options["reverse"]:
                out = out.flip(0)
            hb, cb = (state[0][0, 0], state[1][0, 0]) if c0 is not None else (state[0, 0], None)
        y_cols.append(torch.cat([out, torch.zeros(T - n_steps, P, dtype=torch.float64)]))
        h_n.append(hb)
        c_n.append(cb)
    y = torch.stack(y_cols, 1)                                                  # (T, B, P)
    states = [torch.stack(h_n)] + ([torch.stack(c_n)] if c0 is not None else [])
    dy_tm = dy.transpose(1, 0, 2) if prob.batch_first else dy
    total = (y * torch.from_numpy(np.ascontiguousarray(dy_tm))).sum()
    for s, d in zip(states, dstates):
        total = total + (s * torch.from_numpy(d)).sum()
    total.backward()
    y_np = y.detach().numpy()
    grads = {"x": x.grad.numpy(), "h0": h0.grad.numpy(), "w_ih": mod.weight_ih_l0.grad.numpy(),
             "w_hh": mod.weight_hh_l0.grad.numpy(), "b_ih": mod.bias_ih_l0.grad.numpy(),
             "b_hh": mod.bias_hh_l0.grad.numpy()}
    if prob.batch_first:
        y_np, grads["x"] = y_np.transpose(1, 0, 2), grads["x"].transpose(1, 0, 2)
    if c0 is not None:
        grads["c0"] = c0.grad.numpy()
    if prob.w_hr is not None:
        grads["w_hr"] = mod.weight_hr_l0.grad.numpy()
    return y_np, [s.detach().numpy() for s in states], grads


@pytest.mark.parametrize("option", ["plain", "combined", "no_bias"])
@pytest.mark.parametrize("variant", TORCH_VARIANTS)
def test_matches_pytorch(variant, option):
    torch = pytest.importorskip("torch")
    seed = seed_of("torch", variant, option)
    prob = make_problem(variant, T=5, B=3, I=3, H=4, seed=seed, **OPTIONS[option])
    dy, dstates = random_cotangents(prob, seed)
    y, states, cache = forward(R, prob)
    grads = backward(R, prob, cache, dy, dstates)
    y_t, states_t, grads_t = _torch_run(torch, prob, dy, dstates)
    np.testing.assert_allclose(y, y_t, rtol=1e-12, atol=1e-13)
    for name, s, s_t in zip(("h_n", "c_n"), states, states_t):
        np.testing.assert_allclose(s, s_t, rtol=1e-12, atol=1e-13, err_msg=name)
    for name in grads:
        np.testing.assert_allclose(grads[name], grads_t[name], rtol=1e-11, atol=1e-12, err_msg=name)


def test_foreign_cache_is_refused():
    # Anything that only looks like a cache (e.g. one from fastrnn.functional) is a TypeError.
    class Foreign:
        cell, used = "gru", False
    with pytest.raises(TypeError, match="cache"):
        R.gru_backward(None, None, Foreign())
