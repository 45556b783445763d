"""Whole-model training parity with PyTorch: with identical initial weights and
batches, fastrnn models trained with SGD (momentum) and Adam follow PyTorch's
loss curve step by step, in float64.

Matching the optimizers (see fastrnn.optimizers): SGD with momentum agrees with
torch's while the learning rate is constant; Adam agrees exactly when epsilon is
0 on both sides (Keras adds epsilon to the uncorrected root, torch to the
corrected one). Keras's LSTM has one bias; torch's two are summed, so torch's
`bias_hh` stays frozen at zero. GRU gate blocks are reordered (Keras z, r, h;
torch r, z, n); both have reset_after biases.
"""
import numpy as np
import pytest

import fastrnn as fr
from fastrnn import layers, losses, optimizers

torch = pytest.importorskip("torch")

F64 = "float64"
STEPS, B, T, F, H, C = 20, 8, 6, 3, 5, 4
REPORT = {}


def _gru_to_torch(a, H):
    """Keras gate blocks z, r, h (last axis) -> torch r, z, n, transposed to (3H, rows)."""
    z, r, h = a[..., :H], a[..., H:2 * H], a[..., 2 * H:]
    return np.concatenate([r, z, h], axis=-1).T


def _torch_model(kind, model):
    rnn_layer, dense = model.layers[0], model.layers[1]
    p = rnn_layer.params
    if kind == "gru":
        rnn = torch.nn.GRU(F, H, batch_first=True).double()
        w = {"weight_ih_l0": _gru_to_torch(p["kernel"], H), "weight_hh_l0": _gru_to_torch(p["recurrent_kernel"], H),
             "bias_ih_l0": _gru_to_torch(p["bias"][0], H), "bias_hh_l0": _gru_to_torch(p["bias"][1], H)}
    else:
        rnn = torch.nn.LSTM(F, H, batch_first=True).double()
        w = {"weight_ih_l0": p["kernel"].T, "weight_hh_l0": p["recurrent_kernel"].T, "bias_ih_l0": p["bias"],
             "bias_hh_l0": np.zeros(4 * H)}
    lin = torch.nn.Linear(H, dense.units).double()
    with torch.no_grad():
        for name, value in w.items():
            getattr(rnn, name).copy_(torch.from_numpy(np.ascontiguousarray(value)))
        lin.weight.copy_(torch.from_numpy(dense.params["kernel"].T.copy()))
        lin.bias.copy_(torch.from_numpy(dense.params["bias"].copy()))
    if kind != "gru":
        rnn.bias_hh_l0.requires_grad_(False)
    return rnn, lin


def _problem(kind, seed):
    """20 batches: 4 distinct ones, cycled (so 20 steps visibly learn); targets follow a rule."""
    rng = np.random.default_rng(seed)
    xs = np.tile(rng.standard_normal((4, B, T, F)), (STEPS // 4, 1, 1, 1))
    if kind == "regressor":
        ys = np.tanh(np.cumsum(xs[..., :1] - xs[..., 1:2], axis=2) / 2)      # (STEPS, B, T, 1)
    else:
        ys = np.argmax(xs.mean(axis=2) @ rng.standard_normal((F, C)), axis=-1)
    return xs, ys


def _fastrnn_model(kind, seed):
    if kind == "gru":
        rnn = layers.GRU(H, dtype=F64)
    else:
        rnn = layers.LSTM(H, return_sequences=kind == "regressor", dtype=F64)
    model = fr.Sequential([rnn, layers.Dense(1 if kind == "regressor" else C, dtype=F64)], seed=seed)
    model.build((None, T, F))
    rng = np.random.default_rng(seed + 100)
    model.set_weights([w + rng.uniform(-0.1, 0.1, w.shape) for w in model.get_weights()])   # nonzero biases
    return model


OPTIMIZERS = {
    "sgd": (lambda: optimizers.SGD(0.1, momentum=0.9), lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9)),
    "adam": (lambda: optimizers.Adam(0.01, epsilon=0.0), lambda ps: torch.optim.Adam(ps, lr=0.01, eps=0.0)),
}


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("kind", ["lstm", "gru", "regressor"])
def test_loss_curve_follows_pytorch(kind, opt):
    seed = {"lstm": 0, "gru": 1, "regressor": 2}[kind]
    xs, ys = _problem(kind, seed)
    model = _fastrnn_model(kind, seed)
    loss = losses.MeanSquaredError() if kind == "regressor" else losses.SparseCategoricalCrossentropy(from_logits=True)
    make_ours, make_torch = OPTIMIZERS[opt]
    model.compile(make_ours(), loss)
    rnn, lin = _torch_model("gru" if kind == "gru" else "lstm", model)
    params = [p for p in list(rnn.parameters()) + list(lin.parameters()) if p.requires_grad]
    topt = make_torch(params)
    torch_loss = torch.nn.MSELoss() if kind == "regressor" else torch.nn.CrossEntropyLoss()

    ours, theirs = [], []
    for step in range(STEPS):
        ours.append(model.train_on_batch(xs[step], ys[step]))
        topt.zero_grad()
        out, hidden = rnn(torch.from_numpy(xs[step]))
        if kind == "regressor":
            value = torch_loss(lin(out), torch.from_numpy(ys[step]))
        else:
            h_n = hidden[0] if kind == "lstm" else hidden
            value = torch_loss(lin(h_n[-1]), torch.from_numpy(ys[step]))
        value.backward()
        topt.step()
        theirs.append(value.item())
    ours, theirs = np.array(ours), np.array(theirs)
    rel = np.abs(ours - theirs) / np.abs(theirs)
    REPORT[(kind, opt)] = float(rel.max())
    print(f"\n{kind}/{opt}: loss {theirs[0]:.4f} -> {theirs[-1]:.4f}, max relative deviation {rel.max():.2e}")
    assert theirs[-4:].mean() < 0.9 * theirs[:4].mean()         # it trained
    assert rel.max() < 1e-5, (ours, theirs)
    # the weights after 20 steps agree too
    k = model.layers[0].params["kernel"]
    torch_k = rnn.weight_ih_l0.detach().numpy()
    mine = _gru_to_torch(k, H) if kind == "gru" else k.T
    np.testing.assert_allclose(mine, torch_k, rtol=1e-7, atol=1e-9)


def test_fit_equals_train_on_batch_loop():
    """fit(shuffle=False) over the same batches takes the same steps as the train_on_batch loop above."""
    xs, ys = _problem("lstm", 0)
    a, b = _fastrnn_model("lstm", 0), _fastrnn_model("lstm", 0)
    for m in (a, b):
        m.compile(optimizers.Adam(0.01, epsilon=0.0), losses.SparseCategoricalCrossentropy(from_logits=True))
    for step in range(STEPS):
        a.train_on_batch(xs[step], ys[step])
    b.fit(xs.reshape(-1, T, F), ys.reshape(-1), batch_size=B, shuffle=False, verbose=0)
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(u, v)
