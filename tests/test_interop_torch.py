"""fastrnn.interop.torch against PyTorch itself: outputs, final states and gradients of
converted nn.RNN/GRU/LSTM (every option), cells and Sequentials; state-dict round trips;
from_state_dict's errors."""
import itertools
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from fastrnn import optimizers  # noqa: E402
from fastrnn.interop import torch as frt  # noqa: E402

TOL = {np.float32: 1e-5, np.float64: 1e-12}
TDTYPE = {np.float32: torch.float32, np.float64: torch.float64}


def close(got, want, tol, what=""):
    """max |got - want| within tol relative to the size of want (at least 1)."""
    want = want.detach().numpy() if hasattr(want, "detach") else np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    err = np.max(np.abs(got - want)) if got.size else 0.0
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol:.1g} * {scale:.3g}"


def _t(a, requires_grad=False):
    return torch.from_numpy(np.ascontiguousarray(a)).requires_grad_(requires_grad)


MODES = {  # name -> (torch class, extra options)
    "rnn_tanh": (nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
    "gru": (nn.GRU, {}),
    "lstm": (nn.LSTM, {}),
    "lstm_proj": (nn.LSTM, {"proj_size": 3}),
}
T, B, I, H = 5, 3, 4, 6


def make_module(mode, num_layers, bidirectional, batch_first, bias, dtype, seed=0, dropout=0.0):
    cls, extra = MODES[mode]
    torch.manual_seed(seed)
    m = cls(I, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias,
            dropout=dropout, dtype=TDTYPE[dtype], **extra)
    with torch.no_grad():           # spread the weights so that the tolerance means something
        for p in m.parameters():
            p.uniform_(-0.6, 0.6)
    return m.eval()


def inputs(m, dtype, rng):
    D = 2 if m.bidirectional else 1
    P = getattr(m, "proj_size", 0) or m.hidden_size
    x = rng.standard_normal((B, T, I) if m.batch_first else (T, B, I)).astype(dtype)
    h0 = rng.standard_normal((m.num_layers * D, B, P)).astype(dtype)
    c0 = rng.standard_normal((m.num_layers * D, B, m.hidden_size)).astype(dtype)
    return x, h0, c0


COMBOS = list(itertools.product(MODES, (1, 2), (False, True), (False, True), (True, False)))


def combo_id(c):
    mode, L, bi, bf, bias = c
    return f"{mode}-L{L}{'-bi' if bi else ''}{'-bf' if bf else ''}{'' if bias else '-nobias'}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_recurrent_forward_matches_torch(combo, dtype):
    mode, L, bi, bf, bias = combo
    m = make_module(mode, L, bi, bf, bias, dtype)
    fm = frt.from_torch(m)
    assert fm.dtype == dtype
    rng = np.random.default_rng(len(combo_id(combo)))
    x, h0, c0 = inputs(m, dtype, rng)
    lstm = isinstance(m, nn.LSTM)
    tol = TOL[dtype]
    with torch.no_grad():
        if lstm:
            want, (wh, wc) = m(_t(x), (_t(h0), _t(c0)))
            got, (gh, gc) = fm(x, (h0, c0))
            close(gc, wc, tol, "c_n")
        else:
            want, wh = m(_t(x), _t(h0))
            got, gh = fm(x, h0)
    close(got, want, tol, "out")
    close(gh, wh, tol, "h_n")
    # zero initial states (None) as well, twice (the second call uses the packed weights)
    with torch.no_grad():
        want, wst = m(_t(x))
    for _ in range(2):
        got, gst = fm(x)
        close(got, want, tol, "out (no states)")
        close(gst[0] if lstm else gst, wst[0] if lstm else wst, tol, "h_n (no states)")


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_recurrent_gradients_match_autograd(combo):
    mode, L, bi, bf, bias = combo
    dtype = np.float64
    m = make_module(mode, L, bi, bf, bias, dtype, seed=1)
    fm = frt.from_torch(m)
    rng = np.random.default_rng(7)
    x, h0, c0 = inputs(m, dtype, rng)
    lstm = isinstance(m, nn.LSTM)
    tx, th, tc = _t(x, True), _t(h0, True), _t(c0, True)
    if lstm:
        out, (hn, cn) = m(tx, (th, tc))
    else:
        out, hn = m(tx, th)
    d_out = rng.standard_normal(out.shape)
    d_h = rng.standard_normal(hn.shape)
    loss = (out * _t(d_out)).sum() + (hn * _t(d_h)).sum()
    if lstm:
        d_c = rng.standard_normal(cn.shape)
        loss = loss + (cn * _t(d_c)).sum()
    loss.backward()

    got_out, got_states, _ = fm.forward(x, (h0, c0) if lstm else h0, training=True)
    close(got_out, out, 1e-12, "out (training)")
    d_x, d_hx = fm.backward(d_out, (d_h, d_c) if lstm else d_h)
    close(d_x, tx.grad, 1e-12, "d_x")
    if lstm:
        close(d_hx[0], th.grad, 1e-12, "d_h0")
        close(d_hx[1], tc.grad, 1e-12, "d_c0")
    else:
        close(d_hx, th.grad, 1e-12, "d_h0")
    names = [n for n, _ in m.named_parameters()]
    assert [n for n, _ in fm.named_parameters()] == names
    assert list(fm.grads) == names
    for n, p in m.named_parameters():
        close(fm.grads[n], p.grad, 1e-12, n)


@pytest.mark.parametrize("mode", ["gru", "lstm"])
def test_gradients_of_output_only_and_reused_cache_error(mode):
    m = make_module(mode, 2, True, False, True, np.float64)
    fm = frt.from_torch(m)
    x = np.random.default_rng(0).standard_normal((T, B, I))
    tx = _t(x, True)
    m(tx)[0].sum().backward()
    _, _, cache = fm.forward(x, training=True)
    d_x, _ = fm.backward(np.ones((T, B, 2 * H)), None, cache)
    close(d_x, tx.grad, 1e-12, "d_x")
    with pytest.raises(RuntimeError, match="already used"):
        fm.backward(np.ones((T, B, 2 * H)), None, cache)
    with pytest.raises(RuntimeError, match="training=True"):
        fm.backward(np.ones((T, B, 2 * H)))


@pytest.mark.parametrize("mode", ["rnn_tanh", "gru", "lstm_proj"])
def test_unbatched_input(mode):
    m = make_module(mode, 2, True, True, True, np.float64)
    fm = frt.from_torch(m)
    x = np.random.default_rng(3).standard_normal((T, I))
    with torch.no_grad():
        want, wst = m(_t(x))
    got, gst = fm(x)
    close(got, want, 1e-12, "out")
    if isinstance(m, nn.LSTM):
        close(gst[0], wst[0], 1e-12, "h_n")
        close(gst[1], wst[1], 1e-12, "c_n")
    else:
        close(gst, wst, 1e-12, "h_n")


@pytest.mark.parametrize("mode", ["gru", "lstm", "lstm_proj"])
def test_lengths_match_packed_sequences(mode):
    m = make_module(mode, 2, True, True, True, np.float64)
    fm = frt.from_torch(m)
    x = np.random.default_rng(4).standard_normal((B, T, I))
    lengths = np.array([3, T, 1])
    packed = nn.utils.rnn.pack_padded_sequence(_t(x), torch.from_numpy(lengths), batch_first=True,
                                               enforce_sorted=False)
    with torch.no_grad():
        out, st = m(packed)
        want, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    got, gst = fm(x, lengths=lengths)
    close(got, want, 1e-12, "out")
    lstm = isinstance(m, nn.LSTM)
    close(gst[0] if lstm else gst, st[0] if lstm else st, 1e-12, "h_n")
    # gradients through the packed sequence
    tx = _t(x, True)
    packed = nn.utils.rnn.pack_padded_sequence(tx, torch.from_numpy(lengths), batch_first=True,
                                               enforce_sorted=False)
    out, st = m(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    rng = np.random.default_rng(5)
    d_out, d_h = rng.standard_normal(out.shape), rng.standard_normal((4, B, out.shape[2] // 2))
    ((out * _t(d_out)).sum() + ((st[0] if lstm else st) * _t(d_h)).sum()).backward()
    fm.forward(x, lengths=lengths, training=True)
    d_x, _ = fm.backward(d_out, (d_h, None) if lstm else d_h)
    close(d_x, tx.grad, 1e-12, "d_x")
    for n, p in m.named_parameters():
        close(fm.grads[n], p.grad, 1e-12, n)


CELLS = {"rnn_tanh": (nn.RNNCell, {"nonlinearity": "tanh"}), "rnn_relu": (nn.RNNCell, {"nonlinearity": "relu"}),
         "gru": (nn.GRUCell, {}), "lstm": (nn.LSTMCell, {})}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("kind", CELLS)
def test_cells_match_torch(kind, batched, bias, dtype):
    cls, extra = CELLS[kind]
    torch.manual_seed(2)
    m = cls(I, H, bias=bias, dtype=TDTYPE[dtype], **extra)
    with torch.no_grad():
        for p in m.parameters():
            p.uniform_(-0.6, 0.6)
    fm = frt.from_torch(m)
    rng = np.random.default_rng(5)
    shape = (B,) if batched else ()
    x = rng.standard_normal(shape + (I,)).astype(dtype)
    h = rng.standard_normal(shape + (H,)).astype(dtype)
    c = rng.standard_normal(shape + (H,)).astype(dtype)
    lstm = kind == "lstm"
    tol = TOL[dtype]
    tx, th, tc = _t(x, True), _t(h, True), _t(c, True)
    if lstm:
        wh, wc = m(tx, (th, tc))
        gh, gc = fm(x, (h, c))
        close(gh, wh, tol, "h'")
        close(gc, wc, tol, "c'")
        close(fm(x)[0], m(_t(x))[0], tol, "h' (no state)")
    else:
        wh = m(tx, th)
        close(fm(x, h), wh, tol, "h'")
        close(fm(x), m(_t(x)), tol, "h' (no state)")
    if dtype != np.float64:
        return
    dh = rng.standard_normal(wh.shape)
    loss = (wh * _t(dh)).sum()
    if lstm:
        dc = rng.standard_normal(wc.shape)
        loss = loss + (wc * _t(dc)).sum()
    loss.backward()
    fm.forward(x, (h, c) if lstm else h, training=True)
    d_x, d_hx = fm.backward((dh, dc) if lstm else dh)
    close(d_x, tx.grad, 1e-12, "d_x")
    close(d_hx[0] if lstm else d_hx, th.grad, 1e-12, "d_h")
    if lstm:
        close(d_hx[1], tc.grad, 1e-12, "d_c")
    for n, p in m.named_parameters():
        close(fm.grads[n], p.grad, 1e-12, n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sequential_embedding_lstm_linear(dtype):
    torch.manual_seed(3)
    V, E = 11, 5
    tdt = TDTYPE[dtype]
    seq = nn.Sequential(nn.Embedding(V, E, padding_idx=0, dtype=tdt),
                        nn.LSTM(E, H, num_layers=2, bidirectional=True, batch_first=True, dropout=0.3, dtype=tdt),
                        nn.Dropout(0.5),
                        nn.Linear(2 * H, 3, dtype=tdt)).eval()
    emb, lstm, _, lin = seq
    fm = frt.from_torch(seq)
    assert [n for n, _ in fm.named_parameters()] == [n for n, _ in seq.named_parameters()]
    idx = np.random.default_rng(6).integers(0, V, (B, T))
    idx[:, -1] = 0                          # padding
    with torch.no_grad():
        want = lin(lstm(emb(torch.from_numpy(idx)))[0])
    close(fm(idx), want, TOL[dtype], "y")
    if dtype != np.float64:
        return
    d_y = np.random.default_rng(8).standard_normal(want.shape)
    (lin(lstm(emb(torch.from_numpy(idx)))[0]) * _t(d_y)).sum().backward()
    seq_nodrop = frt.from_torch(seq)
    seq_nodrop[1].dropout = 0.0          # the parity check of gradients runs without dropout
    seq_nodrop[2].p = 0.0
    y, cache = seq_nodrop.forward(idx, training=True)
    close(y, want, 1e-12, "y (training)")
    assert seq_nodrop.backward(d_y) is None
    for n, p in seq.named_parameters():
        close(seq_nodrop.grads[n], p.grad, 1e-12, n)
    assert np.all(seq_nodrop.grads["0.weight"][0] == 0)     # padding_idx gets no gradient


def test_sequential_linear_gru_cell_float_input():
    torch.manual_seed(4)
    seq = nn.Sequential(nn.Linear(I, 5, dtype=torch.float64), nn.GRU(5, H, dtype=torch.float64),
                        nn.Identity(), nn.Linear(H, 2, bias=False, dtype=torch.float64))
    lin0, gru, _, lin1 = seq
    fm = frt.from_torch(seq)
    x = np.random.default_rng(9).standard_normal((T, B, I))
    tx = _t(x, True)
    want = lin1(gru(lin0(tx))[0])
    close(fm(x), want, 1e-12, "y")
    want.sum().backward()
    fm.forward(x, training=True)
    close(fm.backward(np.ones(want.shape)), tx.grad, 1e-12, "d_x")
    for n, p in seq.named_parameters():
        close(fm.grads[n], p.grad, 1e-12, n)


def test_between_layer_dropout_in_training():
    """Training with dropout: the mask multiplies the first layer's output; outputs and
    gradients equal torch's two one-layer modules with that same mask in between."""
    m = make_module("lstm", 2, True, False, True, np.float64, dropout=0.4)
    fm = frt.from_torch(m, seed=0)
    x = np.random.default_rng(10).standard_normal((T, B, I))
    got, _, cache = fm.forward(x, training=True)
    mask = cache["layers"][0][1]
    assert set(np.unique(mask)) <= {0.0, 1 / 0.6} and 0 < (mask == 0).mean() < 1
    sd = m.state_dict()
    l0 = nn.LSTM(I, H, bidirectional=True, dtype=torch.float64)
    l1 = nn.LSTM(2 * H, H, bidirectional=True, dtype=torch.float64)
    for layer, mod in ((0, l0), (1, l1)):
        mod.load_state_dict({k.replace(f"_l{layer}", "_l0"): v for k, v in sd.items() if f"_l{layer}" in k})
    tx = _t(x, True)
    want = l1(l0(tx)[0] * _t(mask))[0]
    close(got, want, 1e-12, "out")
    d_out = np.random.default_rng(11).standard_normal(got.shape)
    (want * _t(d_out)).sum().backward()
    d_x, _ = fm.backward(d_out)
    close(d_x, tx.grad, 1e-12, "d_x")
    close(fm.grads["weight_hh_l0_reverse"], l0.weight_hh_l0_reverse.grad, 1e-12, "weight_hh_l0_reverse")
    close(fm.grads["weight_ih_l1"], l1.weight_ih_l0.grad, 1e-12, "weight_ih_l1")
    # inference: no dropout, torch's eval output
    with torch.no_grad():
        close(fm(x)[0], m(_t(x))[0], 1e-12, "eval out")


def test_training_steps_follow_torch_sgd():
    m = make_module("gru", 2, True, True, True, np.float64)
    fm = frt.from_torch(m)
    opt_t = torch.optim.SGD(m.parameters(), lr=0.1)
    opt_f = optimizers.SGD(0.1)
    rng = np.random.default_rng(12)
    for _ in range(3):
        x = rng.standard_normal((B, T, I))
        target = rng.standard_normal((B, T, 2 * H))
        opt_t.zero_grad()
        out, _ = m(_t(x))
        ((out - _t(target)) ** 2).sum().backward()
        opt_t.step()
        out_f, _, _ = fm.forward(x, training=True)
        fm.backward(2 * (out_f - target))
        opt_f.apply(fm.parameters(), fm.gradients())
    for n, p in m.named_parameters():
        close(dict(fm.named_parameters())[n], p, 1e-12, n)
    x = rng.standard_normal((B, T, I))
    with torch.no_grad():       # the inference path repacks the changed weights
        close(fm(x)[0], m(_t(x))[0], 1e-12, "out after training")


@pytest.mark.parametrize("mode", list(MODES))
def test_state_dict_round_trip(mode):
    m = make_module(mode, 2, True, True, True, np.float32)
    fm = frt.from_torch(m)
    sd = frt.to_state_dict(fm)
    assert list(sd) == list(m.state_dict())
    for k, v in m.state_dict().items():
        assert isinstance(sd[k], np.ndarray) and np.array_equal(sd[k], v.numpy())
    # into a fresh torch module: same outputs
    cls, extra = MODES[mode]
    fresh = cls(I, H, num_layers=2, bidirectional=True, batch_first=True, **extra)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    x = np.random.default_rng(13).standard_normal((B, T, I)).astype(np.float32)
    with torch.no_grad():
        close(fm(x)[0], fresh(_t(x))[0], 1e-5, "out via load_state_dict")
        close(fm(x)[0], frt.to_torch(fm)(_t(x))[0], 1e-5, "out via to_torch")
    # from_state_dict infers the structure (batch_first and nonlinearity are given)
    kind = mode.split("_")[0]
    opts = {"nonlinearity": MODES[mode][1]["nonlinearity"]} if kind == "rnn" else {}
    again = frt.from_state_dict(sd, kind, batch_first=True, **opts)
    assert (again.num_layers, again.bidirectional, again.bias, again.hidden_size, again.input_size) == (2, True, True, H, I)
    assert getattr(again, "proj_size", 0) == MODES[mode][1].get("proj_size", 0)
    assert np.array_equal(again(x)[0], fm(x)[0])


def test_state_dict_round_trip_cells_and_sequential():
    cell = nn.GRUCell(I, H, bias=False)
    fc = frt.from_state_dict({k: v.numpy() for k, v in cell.state_dict().items()}, "gru_cell")
    assert fc.bias is False
    x = np.random.default_rng(14).standard_normal((B, I)).astype(np.float32)
    with torch.no_grad():
        close(fc(x), cell(_t(x)), 1e-5, "cell")
    seq = nn.Sequential(nn.Embedding(7, I), nn.LSTM(I, H), nn.Linear(H, 2))
    fs = frt.from_torch(seq)
    sd = frt.to_state_dict(fs)
    assert list(sd) == list(seq.state_dict())
    back = frt.to_torch(fs)
    assert isinstance(back, nn.Sequential) and isinstance(back[1], nn.LSTM)
    for k, v in back.state_dict().items():
        assert np.array_equal(v.numpy(), sd[k])


def test_from_state_dict_errors():
    sd = {k: v.numpy() for k, v in nn.LSTM(I, H, num_layers=2).state_dict().items()}
    with pytest.raises(KeyError, match="missing keys \\['bias_hh_l1'\\]"):
        frt.from_state_dict({k: v for k, v in sd.items() if k != "bias_hh_l1"}, "lstm")
    with pytest.raises(KeyError, match="unexpected keys \\['extra'\\]"):
        frt.from_state_dict({**sd, "extra": np.zeros(3)}, "lstm")
    with pytest.raises(KeyError, match="weight_ih_l0"):
        frt.from_state_dict({"foo": np.zeros(3)}, "gru")
    bad = dict(sd, weight_hh_l1=np.zeros((4 * H, H + 1), np.float32))
    with pytest.raises(ValueError, match="weight_hh_l1 expected shape \\(24, 6\\), got \\(24, 7\\)"):
        frt.from_state_dict(bad, "lstm")
    with pytest.raises(ValueError, match="num_layers=3 given"):
        frt.from_state_dict(sd, "lstm", num_layers=3)
    with pytest.raises(ValueError, match="weight_hh_l0 expected shape \\(24, 8\\), got \\(24, 6\\)"):
        frt.from_state_dict(sd, "gru")          # 24 rows read as a GRU of H=8: the shapes then fail
    gru_sd = {k: v.numpy() for k, v in nn.GRU(I, H).state_dict().items()}
    with pytest.raises(ValueError, match="4 \\* hidden_size rows"):
        frt.from_state_dict(gru_sd, "lstm")     # 18 rows
    with pytest.raises(ValueError, match="kind expected"):
        frt.from_state_dict(sd, "transformer")
    with pytest.raises(TypeError, match="bad config"):
        frt.from_state_dict(sd, "lstm", units=3)


def test_bad_calls_raise_clear_errors():
    fm = frt.from_torch(nn.LSTM(I, H, num_layers=2))
    x = np.zeros((T, B, I), np.float32)
    with pytest.raises(ValueError, match="h0 expected shape \\(2, 3, 6\\)"):
        fm(x, (np.zeros((1, B, H), np.float32), None))
    with pytest.raises(ValueError, match="input features"):
        fm(np.zeros((T, B, I + 1), np.float32))
    with pytest.raises(TypeError, match="tuple"):
        fm(x, np.zeros((2, B, H), np.float32))
    with pytest.raises(TypeError, match="unsupported module"):
        frt.from_torch(nn.Sequential(nn.LSTM(I, H), nn.ReLU()))
    with pytest.raises(NotImplementedError, match="max_norm"):
        frt.from_torch(nn.Embedding(5, 3, max_norm=1.0))
    with pytest.raises(NotImplementedError, match="scale_grad_by_freq"):
        frt.from_torch(nn.Embedding(5, 3, scale_grad_by_freq=True)).forward(np.array([1]), training=True)
    with pytest.raises(TypeError, match="float"):
        frt.from_torch(nn.GRU(I, H).half())


def test_interop_import_needs_no_torch():
    code = ("import sys, fastrnn.interop, fastrnn.interop.torch as frt; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "import numpy as np; "
            "m = frt.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0); "
            "sd = frt.to_state_dict(m); m2 = frt.from_state_dict(sd, 'lstm'); "
            "x = np.ones((2, 5, 3), np.float32); "
            "assert np.array_equal(m(x)[0], m2(x)[0]); "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sequential_dropout_in_training():
    seq = nn.Sequential(nn.Linear(I, 8, dtype=torch.float64), nn.Dropout(0.5), nn.GRU(8, H, dtype=torch.float64))
    fm = frt.from_torch(seq, seed=0)
    x = np.random.default_rng(15).standard_normal((T, B, I))
    y, cache = fm.forward(x, training=True)
    mask = cache["caches"][1]["mask"]
    assert set(np.unique(mask)) == {0.0, 2.0}
    lin, _, gru = seq
    tx = _t(x, True)
    want = gru(lin(tx) * _t(mask))[0]
    close(y, want, 1e-12, "y")
    want.sum().backward()
    close(fm.backward(np.ones(want.shape)), tx.grad, 1e-12, "d_x")
    for n, p in seq.named_parameters():
        close(fm.grads[n], p.grad, 1e-12, n)
    y2, _ = fm.forward(x, training=True)        # a fresh mask per call
    assert not np.array_equal(y, y2)
    with torch.no_grad():
        close(fm(x), gru(lin(_t(x)))[0], 1e-12, "eval (no dropout)")
