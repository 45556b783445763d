"""PyTorch parity for the functional API (skipped when torch is not installed).

Each case builds a single-layer torch.nn.RNN / GRU / LSTM, hands its
`weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, weight_hr_l0` (or the
`_reverse` ones of a bidirectional module) to fastrnn, and compares:

- outputs and final states (training and inference forwards);
- gradients of a random-weighted scalar loss
  `L = sum(y * w_y) + sum(h_n * w_h) [+ sum(c_n * w_c)]` with respect to the
  input, the initial states and every weight, against `*_backward` given
  `dy = w_y` and `dh_n = w_h` (`dc_n = w_c`).

Configurations cover the reverse direction, packed sequences (unsorted
lengths including a full one; `lengths=` in fastrnn), batch_first, no bias,
`None` initial states and `None` upstream gradients.
"""
import importlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

# The module under test. `fastrnn.reference` has the identical API.
F = importlib.import_module("fastrnn.functional")

# torch falls back from oneDNN for proj_size; that is its business, not ours
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections:UserWarning")

T, B, I, H, P = 7, 3, 5, 6, 4
LENGTHS = np.array([4, 7, 1])  # unsorted, one full length, one of a single step

# cell id -> (torch class, torch kwargs, fastrnn family, projection size or None)
CELLS = {
    "rnn_tanh": (torch.nn.RNN, {"nonlinearity": "tanh"}, "rnn", None),
    "rnn_relu": (torch.nn.RNN, {"nonlinearity": "relu"}, "rnn", None),
    "gru": (torch.nn.GRU, {}, "gru", None),
    "lstm": (torch.nn.LSTM, {}, "lstm", None),
    "lstm_proj": (torch.nn.LSTM, {}, "lstm", P),
}

# config id -> options of `_case`
CONFIGS = {
    "plain": {},
    "reverse": {"reverse": True},
    "packed": {"packed": True},
    "packed_reverse": {"packed": True, "reverse": True},
    "batch_first": {"batch_first": True},
    "batch_first_packed_reverse": {"batch_first": True, "packed": True, "reverse": True},
    "no_bias": {"bias": False},
    "states_none": {"states_none": True},
    "dy_only": {"use_states": False},   # final-state gradients passed as None
    "states_only": {"use_y": False},    # dy passed as None
}

DTYPES = {
    np.float32: (torch.float32, 1e-4, 1e-5),
    np.float64: (torch.float64, 1e-10, 1e-10),
}

WEIGHT_NAMES = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0",
                "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0", "w_hr": "weight_hr_l0"}


def assert_close(actual, expected, dtype, what):
    """Close within rtol, with atol relative to the scale of `expected`."""
    _, rtol, atol = DTYPES[dtype]
    expected = np.asarray(expected)
    assert actual is not None, f"{what}: got None"
    actual = np.asarray(actual)
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=what)


def _np(t):
    return t.detach().cpu().numpy()


def _case(cell, dtype, *, reverse=False, packed=False, batch_first=False, bias=True,
          states_none=False, use_y=True, use_states=True, seed=0):
    """Run torch forward + autograd; return inputs for fastrnn and torch's results."""
    cls, kwargs, family, proj = CELLS[cell]
    tdtype = DTYPES[dtype][0]
    is_lstm = family == "lstm"
    Hout = proj or H
    D = 2 if reverse else 1  # the reverse direction comes from a bidirectional module
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mod = cls(I, H, num_layers=1, bias=bias, batch_first=batch_first, bidirectional=reverse,
              dtype=tdtype, **({"proj_size": proj} if proj else {}), **kwargs)
    with torch.no_grad():  # a wider spread than the default init, so gates do not sit at 0.5
        for p in mod.parameters():
            p.uniform_(-0.6, 0.6)
    suffix = "_reverse" if reverse else ""
    params = {k: getattr(mod, v + suffix) for k, v in WEIGHT_NAMES.items()
              if hasattr(mod, v + suffix)}

    xshape = (B, T, I) if batch_first else (T, B, I)
    x = torch.tensor(rng.standard_normal(xshape), dtype=tdtype, requires_grad=True)
    # (D, B, *) states; the direction under test is the last one
    if states_none:
        h0 = torch.zeros(D, B, Hout, dtype=tdtype, requires_grad=True)
        c0 = torch.zeros(D, B, H, dtype=tdtype, requires_grad=True)
    else:
        h0 = torch.tensor(rng.standard_normal((D, B, Hout)) * 0.5, dtype=tdtype, requires_grad=True)
        c0 = torch.tensor(rng.standard_normal((D, B, H)) * 0.5, dtype=tdtype, requires_grad=True)
    hx = (h0, c0) if is_lstm else h0

    lengths = LENGTHS.copy() if packed else None
    inp = (pack_padded_sequence(x, torch.as_tensor(lengths), batch_first=batch_first,
                                enforce_sorted=False) if packed else x)
    out, hn = mod(inp, hx)
    if packed:
        out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    h_n, c_n = hn if is_lstm else (hn, None)
    y = out[..., Hout:] if reverse else out           # this direction's half
    h_n, c_n = h_n[-1], (c_n[-1] if is_lstm else None)

    w_y = rng.standard_normal(y.shape)
    w_h = rng.standard_normal(h_n.shape)
    w_c = rng.standard_normal((B, H))
    loss = torch.zeros((), dtype=tdtype)
    if use_y:
        loss = loss + (y * torch.as_tensor(w_y, dtype=tdtype)).sum()
    if use_states:
        loss = loss + (h_n * torch.as_tensor(w_h, dtype=tdtype)).sum()
        if is_lstm:
            loss = loss + (c_n * torch.as_tensor(w_c, dtype=tdtype)).sum()
    loss.backward()

    grads = {"x": _np(x.grad), "h0": _np(h0.grad[-1])}
    if is_lstm:
        grads["c0"] = _np(c0.grad[-1])
    for k, p in params.items():
        grads[k] = _np(p.grad)

    args = {
        "x": _np(x), "h0": None if states_none else _np(h0[-1]),
        "c0": None if states_none else _np(c0[-1]),
        "weights": {k: _np(p) for k, p in params.items()},
        "dy": w_y.astype(dtype) if use_y else None,
        "dh_n": w_h.astype(dtype) if use_states else None,
        "dc_n": w_c.astype(dtype) if use_states else None,
        "lengths": lengths, "reverse": reverse, "batch_first": batch_first,
    }
    expected = {"y": _np(y), "h_n": _np(h_n), "c_n": None if c_n is None else _np(c_n),
                "grads": grads}
    return family, kwargs, args, expected


def _fastrnn_forward(family, kwargs, a, training):
    w = a["weights"]
    opts = dict(reverse=a["reverse"], lengths=a["lengths"], batch_first=a["batch_first"],
                training=training)
    if family == "rnn":
        y, h_n, cache = F.rnn_forward(a["x"], a["h0"], w["w_ih"], w["w_hh"], w.get("b_ih"),
                                      w.get("b_hh"), nonlinearity=kwargs["nonlinearity"], **opts)
        return y, h_n, None, cache
    if family == "gru":
        y, h_n, cache = F.gru_forward(a["x"], a["h0"], w["w_ih"], w["w_hh"], w.get("b_ih"),
                                      w.get("b_hh"), linear_before_reset=True, **opts)
        return y, h_n, None, cache
    states = None if a["h0"] is None else (a["h0"], a["c0"])
    y, (h_n, c_n), cache = F.lstm_forward(a["x"], states, w["w_ih"], w["w_hh"], w.get("b_ih"),
                                          w.get("b_hh"), w_hr=w.get("w_hr"), **opts)
    return y, h_n, c_n, cache


def _fastrnn_backward(family, a, cache):
    if family == "lstm":
        dstates = None if a["dh_n"] is None else (a["dh_n"], a["dc_n"])
        return F.lstm_backward(a["dy"], dstates, cache)
    backward = F.rnn_backward if family == "rnn" else F.gru_backward
    return backward(a["dy"], a["dh_n"], cache)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("cell", list(CELLS))
def test_matches_torch(cell, config, dtype):
    family, kwargs, a, want = _case(cell, dtype, **CONFIGS[config])

    y, h_n, c_n, cache = _fastrnn_forward(family, kwargs, a, training=True)
    assert_close(y, want["y"], dtype, "y")
    assert_close(h_n, want["h_n"], dtype, "h_n")
    if family == "lstm":
        assert_close(c_n, want["c_n"], dtype, "c_n")
    if a["lengths"] is not None:  # zeros past each length, exactly
        yt = y.transpose(1, 0, 2) if a["batch_first"] else y
        for b, n in enumerate(a["lengths"]):
            assert not np.any(yt[n:, b]), f"y: nonzero output past length {n} of sample {b}"

    y_inf, h_inf, c_inf, cache_inf = _fastrnn_forward(family, kwargs, a, training=False)
    assert cache_inf is None
    assert_close(y_inf, want["y"], dtype, "y (training=False)")
    assert_close(h_inf, want["h_n"], dtype, "h_n (training=False)")
    if family == "lstm":
        assert_close(c_inf, want["c_n"], dtype, "c_n (training=False)")

    grads = _fastrnn_backward(family, a, cache)
    expected_keys = set(want["grads"])
    assert set(grads) == expected_keys, f"gradient keys {sorted(grads)}, expected {sorted(expected_keys)}"
    for k, g in want["grads"].items():
        assert_close(grads[k], g, dtype, f"d{k}")


@pytest.mark.parametrize("cell", ["rnn_tanh", "gru", "lstm"])
def test_inference_matches_torch_inference_mode(cell):
    """fastrnn's inference path against torch's (oneDNN) inference path, float32."""
    cls, kwargs, family, _ = CELLS[cell]
    torch.manual_seed(1)
    mod = cls(I, H, **kwargs)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    c0 = rng.standard_normal((B, H)).astype(np.float32)
    with torch.inference_mode():
        hx = torch.from_numpy(h0)[None]
        if family == "lstm":
            hx = (hx, torch.from_numpy(c0)[None])
        out, hn = mod(torch.from_numpy(x), hx)
    a = {"x": x, "h0": h0, "c0": c0, "lengths": None, "reverse": False, "batch_first": False,
         "weights": {k: _np(getattr(mod, v)) for k, v in WEIGHT_NAMES.items() if hasattr(mod, v)}}
    y, h_n, c_n, cache = _fastrnn_forward(family, kwargs, a, training=False)
    assert cache is None
    assert_close(y, _np(out), np.float32, "y")
    if family == "lstm":
        assert_close(h_n, _np(hn[0][0]), np.float32, "h_n")
        assert_close(c_n, _np(hn[1][0]), np.float32, "c_n")
    else:
        assert_close(h_n, _np(hn[0]), np.float32, "h_n")
