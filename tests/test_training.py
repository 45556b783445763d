"""compile / fit / evaluate / predict: logs, progress output, validation, callbacks
(EarlyStopping, ModelCheckpoint, TerminateOnNaN), seeds, generators, sample
weights, multi-output models and stateful training over windows."""
import re

import numpy as np
import pytest

import fastrnn as fr
from fastrnn import callbacks, layers, losses, metrics, optimizers


def _regression(n=64, seed=0, T=None, F=3):
    rng = np.random.default_rng(seed)
    shape = (n, F) if T is None else (n, T, F)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((F, 1)).astype(np.float32)
    y = (x if T is None else x.mean(1)) @ w
    return x, y.astype(np.float32)


def _dense_model(seed=0, lr=0.05, **compile_kw):
    model = fr.Sequential([layers.Dense(4, activation="tanh"), layers.Dense(1)], seed=seed)
    model.compile(optimizers.SGD(lr), "mse", **compile_kw)
    return model


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


# ---------------------------------------------------------------------------
# fit basics

def test_fit_returns_history_and_reduces_loss():
    x, y = _regression()
    model = _dense_model(metrics=["mae"])
    history = model.fit(x, y, epochs=8, batch_size=16, verbose=0)
    assert isinstance(history, callbacks.History) and model.history is history
    assert history.epoch == list(range(8))
    assert set(history.history) == {"loss", "mae"}
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert model.optimizer.iterations == 8 * 4


def test_fit_logged_loss_is_the_batch_size_weighted_mean():
    """Keras's convention: the epoch's "loss" is the mean of the batch losses weighted by batch size."""
    x, y = _regression(n=10)
    model = _dense_model(lr=0.0)           # no update: every batch sees the same weights
    history = model.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    pred = model.predict(x)
    batch_losses = [float(np.mean((pred[s] - y[s]) ** 2)) for s in (slice(0, 4), slice(4, 8), slice(8, 10))]
    expected = (4 * batch_losses[0] + 4 * batch_losses[1] + 2 * batch_losses[2]) / 10
    np.testing.assert_allclose(history.history["loss"][0], expected, rtol=1e-5)


def test_compile_required_and_argument_checks():
    x, y = _regression()
    model = fr.Sequential([layers.Dense(1)])
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(x, y)
    model.compile("adam", "mse")
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(x, y, validation_split=1.5)
    with pytest.raises(ValueError, match="same number of samples"):
        model.fit(x, y[:-1], verbose=0)
    with pytest.raises(TypeError, match="epochs"):
        model.fit(x, y, epochs=1.5)
    with pytest.raises(ValueError, match="unknown identifier"):
        model.compile("adam", "nope")


def test_progress_bar_verbose_1(capsys):
    x, y = _regression(n=40)
    model = _dense_model(metrics=["mae"])
    model.fit(x, y, epochs=2, batch_size=10, verbose=1, validation_data=(x, y))
    out = capsys.readouterr().out
    assert out.count("Epoch 1/2\n") == 1 and out.count("Epoch 2/2\n") == 1
    assert "\r" in out
    assert re.search(r"\r ?1/4 \[=*>?\.*\] - ETA: \S+ - loss: \d+\.\d{4} - mae: \d", out)
    finals = re.findall(r"\r4/4 \[={30}\] - \S+ \S+/step - loss: \S+ - mae: \S+ - val_loss: \S+ - val_mae: \S+\n",
                        out)
    assert len(finals) == 2


def test_progress_verbose_2_and_0(capsys):
    x, y = _regression(n=40)
    model = _dense_model()
    model.fit(x, y, epochs=3, batch_size=10, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines):
        assert re.fullmatch(rf"Epoch {i + 1}/3 - \S+ \S+/step - loss: \S+", line), line
    model.fit(x, y, epochs=2, verbose=0)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    assert capsys.readouterr().out == ""


def test_validation_split_uses_the_last_samples():
    x, y = _regression(n=50)
    model = _dense_model()
    history = model.fit(x, y, epochs=1, batch_size=8, validation_split=0.2, verbose=0)
    assert model.optimizer.iterations == 5          # 40 training samples, batch 8
    np.testing.assert_allclose(history.history["val_loss"][0], model.evaluate(x[40:], y[40:], verbose=0),
                               rtol=1e-6)


def test_validation_data_arrays_generator_and_freq():
    x, y = _regression(n=32)
    xv, yv = _regression(n=12, seed=1)
    model = _dense_model()
    h = model.fit(x, y, epochs=4, batch_size=8, validation_data=(xv, yv), validation_freq=2, verbose=0)
    assert len(h.history["loss"]) == 4 and len(h.history["val_loss"]) == 2
    model2 = _dense_model()
    batches = [(xv[:6], yv[:6]), (xv[6:], yv[6:])]           # a list: restartable
    h2 = model2.fit(x, y, epochs=2, batch_size=8, validation_data=batches, verbose=0)
    np.testing.assert_allclose(h2.history["val_loss"][-1], model2.evaluate(xv, yv, batch_size=6, verbose=0),
                               rtol=1e-6)


def test_evaluate_forms_and_sample_weight():
    x, y = _regression(n=20)
    model = _dense_model(metrics=["mae"])
    model.fit(x, y, epochs=1, verbose=0)
    loss, mae = model.evaluate(x, y, verbose=0)
    assert model.evaluate(x, y, verbose=0, return_dict=True) == {"loss": loss, "mae": mae}
    assert model.metrics_names == ["loss", "mae"]
    pred = model.predict(x)
    np.testing.assert_allclose(loss, np.mean((pred - y) ** 2), rtol=1e-5)
    sw = np.linspace(0, 2, 20)
    wl = model.evaluate(x, y, sample_weight=sw, batch_size=20, verbose=0)[0]
    np.testing.assert_allclose(wl, np.sum(sw * ((pred - y) ** 2)[:, 0]) / 20, rtol=1e-5)
    plain = _dense_model()
    assert isinstance(plain.evaluate(x, y, verbose=0), float)


def test_sample_weight_changes_the_training_step():
    x, y = _regression(n=16)
    a, b, c = _dense_model(seed=3), _dense_model(seed=3), _dense_model(seed=3)
    sw = np.r_[np.ones(8), np.zeros(8)]
    a.train_on_batch(x, y, sample_weight=sw)
    b.train_on_batch(x[:8], y[:8])
    c.train_on_batch(x, y)
    # zero weights drop samples, but the divisor stays the batch size (Keras): half the step of b
    fresh = _dense_model(seed=3)
    fresh.build((None, 3))
    for wa, wb, w0 in zip(a.get_weights(), b.get_weights(), fresh.get_weights()):
        np.testing.assert_allclose(wa - w0, 0.5 * (wb - w0), rtol=1e-4, atol=1e-7)
    assert not _same(a.get_weights(), c.get_weights())


def test_train_test_predict_on_batch():
    x, y = _regression(n=8)
    model = _dense_model(metrics=["mse"])
    before = model.test_on_batch(x, y)
    assert isinstance(before, list) and before[0] == pytest.approx(before[1], rel=1e-6)
    loss = model.train_on_batch(x, y, return_dict=True)
    assert set(loss) == {"loss", "mse"} and loss["loss"] == pytest.approx(before[0], rel=1e-6)
    after = model.test_on_batch(x, y, return_dict=True)
    assert after["loss"] < before[0]
    np.testing.assert_array_equal(model.predict_on_batch(x), model(x))


def test_predict_batches_and_multi_output():
    a = fr.Input((3,), name="pa")
    h = layers.Dense(4, name="ph")(a)
    model = fr.Model(a, [layers.Dense(2, name="p1")(h), layers.Dense(1, name="p2")(h)])
    x = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)
    out = model.predict(x, batch_size=3)
    full = model(x)
    assert isinstance(out, list) and len(out) == 2
    for o, f in zip(out, full):
        np.testing.assert_allclose(o, f, rtol=1e-6)
    assert model.predict({"pa": x})[0].shape == (10, 2)
    gen = (x[i:i + 4] for i in range(0, 10, 4))
    np.testing.assert_allclose(model.predict(gen)[1], full[1], rtol=1e-6)


def test_multi_output_losses_weights_and_log_names():
    rng = np.random.default_rng(1)
    a = fr.Input((3,), name="mi")
    h = layers.Dense(4, name="mh")(a)
    o1, o2 = layers.Dense(3, name="cls")(h), layers.Dense(1, name="reg")(h)
    model = fr.Model(a, [o1, o2])
    model.compile("sgd", {"cls": losses.SparseCategoricalCrossentropy(from_logits=True), "reg": "mse"},
                  loss_weights={"cls": 2.0, "reg": 0.5}, metrics={"cls": ["accuracy"], "reg": ["mae"]})
    x = rng.standard_normal((12, 3)).astype(np.float32)
    y1, y2 = rng.integers(0, 3, 12), rng.standard_normal((12, 1)).astype(np.float32)
    logs = model.evaluate(x, {"cls": y1, "reg": y2}, batch_size=12, return_dict=True, verbose=0)
    assert list(logs) == ["loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae"]
    np.testing.assert_allclose(logs["loss"], 2.0 * logs["cls_loss"] + 0.5 * logs["reg_loss"], rtol=1e-6)
    p1, p2 = model.predict(x)
    np.testing.assert_allclose(logs["reg_loss"], np.mean((p2 - y2) ** 2), rtol=1e-5)
    np.testing.assert_allclose(logs["cls_accuracy"], np.mean(np.argmax(p1, 1) == y1))
    h = model.fit(x, [y1, y2], epochs=2, verbose=0)
    assert set(h.history) == set(logs)


def test_accuracy_resolves_from_the_loss():
    model = fr.Sequential([layers.Dense(3, input_shape=(2,))])
    model.compile("sgd", losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy", "acc"])
    model._ensure_compiled()
    assert [type(m) for m in model._metric_fns[0]] == [metrics.SparseCategoricalAccuracy] * 2
    assert [n for n, _ in model._metric_names] == ["accuracy", "acc"]
    model.compile("sgd", losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    model._ensure_compiled()
    assert isinstance(model._metric_fns[0][0], metrics.BinaryAccuracy)
    assert model._metric_fns[0][0].threshold == 0.0


# ---------------------------------------------------------------------------
# callbacks

def test_early_stopping_restores_best_weights():
    """Training pulls towards y = x w while validation wants -x w: val_loss is best after
    the first epoch and the weights of that epoch come back."""
    x, y = _regression(n=32)
    model = _dense_model(lr=0.1)
    seen = []
    record = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(model.get_weights()))
    stop = callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    h = model.fit(x, y, epochs=20, batch_size=8, validation_data=(x, -y), callbacks=[record, stop], verbose=0)
    val = h.history["val_loss"]
    best = int(np.argmin(val))
    assert len(val) == best + 3 < 20               # stopped after `patience` epochs without improvement
    assert model.stop_training
    assert _same(model.get_weights(), seen[best]) and not _same(seen[best], seen[-1])


def test_model_checkpoint_saves_loadable_models(tmp_path):
    x, y = _regression(n=32)
    model = _dense_model()
    states = []
    record = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: states.append(model.predict(x)))
    ckpt = callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}.fastrnn"), monitor="loss")
    wonly = callbacks.ModelCheckpoint(str(tmp_path / "w.fastrnn"), save_weights_only=True, save_best_only=True,
                                      monitor="loss")
    model.fit(x, y, epochs=3, batch_size=8, callbacks=[record, ckpt, wonly], verbose=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-01.fastrnn", "ckpt-02.fastrnn",
                                                           "ckpt-03.fastrnn", "w.fastrnn"]
    for epoch in range(3):
        loaded = fr.load_model(tmp_path / f"ckpt-{epoch + 1:02d}.fastrnn")
        np.testing.assert_array_equal(loaded.predict(x), states[epoch])
    other = _dense_model(seed=9)
    other.build((None, 3))
    other.load_weights(tmp_path / "w.fastrnn")
    np.testing.assert_array_equal(other.predict(x), states[-1])


def test_terminate_on_nan_leaves_the_weights_before_the_bad_update(capsys):
    x, y = _regression(n=40)
    x[21] = np.nan                           # batch 2 (0-based) of batch size 10
    model = _dense_model()
    after = []
    record = callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: after.append(model.get_weights()))
    stop = callbacks.TerminateOnNaN()
    model.fit(x, y, epochs=3, batch_size=10, shuffle=False, callbacks=[stop, record], verbose=0)
    assert stop.stopped_epoch == 0 and stop.stopped_batch == 2
    assert model.stop_training and model.optimizer.iterations == 2
    assert "epoch 1, batch 3" in capsys.readouterr().out
    assert len(after) == 3
    assert _same(model.get_weights(), after[1])          # exactly as after the last good batch
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert model.history.epoch == [0]


def test_terminate_on_nan_check_can_fail():
    """Without TerminateOnNaN the NaN update goes through (so the test above can fail)."""
    x, y = _regression(n=40)
    x[21] = np.nan
    model = _dense_model()
    model.fit(x, y, epochs=1, batch_size=10, shuffle=False, verbose=0)
    assert not all(np.isfinite(w).all() for w in model.get_weights())


def test_callback_hooks_order():
    x, y = _regression(n=20)
    model = _dense_model()
    events = []
    cb = callbacks.LambdaCallback(
        on_train_begin=lambda logs: events.append("train_begin"),
        on_epoch_begin=lambda e, logs: events.append(f"epoch_begin {e}"),
        on_train_batch_end=lambda b, logs: events.append(f"batch_end {b} {sorted(logs)}"),
        on_epoch_end=lambda e, logs: events.append(f"epoch_end {e} {sorted(logs)}"),
        on_train_end=lambda logs: events.append("train_end"))
    model.fit(x, y, epochs=2, initial_epoch=1, batch_size=10, validation_data=(x, y), callbacks=[cb], verbose=0)
    assert events == ["train_begin", "epoch_begin 1", "batch_end 0 ['loss']", "batch_end 1 ['loss']",
                      "epoch_end 1 ['loss', 'val_loss']", "train_end"]


def test_reduce_lr_and_scheduler_change_the_optimizer():
    x, y = _regression(n=16)
    model = _dense_model(lr=0.1)
    sched = callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))
    h = model.fit(x, y, epochs=3, callbacks=[sched], verbose=0)
    assert h.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.1 / 3])
    assert model.optimizer.learning_rate == pytest.approx(0.1 / 3)


# ---------------------------------------------------------------------------
# seeds

def _dropout_rnn(seed=None):
    return fr.Sequential([
        layers.LSTM(6, return_sequences=True, dropout=0.2, recurrent_dropout=0.2),
        layers.Dropout(0.3),
        layers.Bidirectional(layers.GRU(4, dropout=0.1, recurrent_dropout=0.1)),
        layers.Dense(1),
    ], seed=seed)


def test_fit_seed_is_reproducible_bit_for_bit():
    x, y = _regression(n=48, T=5)
    runs = []
    for seed in (5, 5, 6):
        model = _dropout_rnn()
        model.compile(optimizers.Adam(0.01), "mse")
        model.fit(x, y, epochs=3, batch_size=8, seed=seed, verbose=0)
        runs.append(model.get_weights())
    assert _same(runs[0], runs[1])
    assert not _same(runs[0], runs[2])


def test_fit_seed_redraws_untouched_weights_only():
    x, y = _regression(n=16, T=4)
    a, b = _dropout_rnn(), _dropout_rnn()
    for m in (a, b):
        m.compile("sgd", "mse")
    a.build((None, 4, 3))
    a.summary(print_fn=lambda s: None)          # built (unseeded) before fit: fit(seed=) redraws
    a.fit(x, y, epochs=1, seed=3, verbose=0)
    b.fit(x, y, epochs=1, seed=3, verbose=0)   # built inside fit from the seed
    assert _same(a.get_weights(), b.get_weights())
    # weights set by the user are kept
    c = _dropout_rnn()
    c.compile("sgd", "mse")
    c.build((None, 4, 3))
    chosen = [np.full_like(w, 0.01 * i) for i, w in enumerate(c.get_weights())]
    c.set_weights(chosen)
    c.fit(x, y, epochs=1, seed=3, verbose=0, batch_size=16)
    d = _dropout_rnn()
    d.compile("sgd", "mse")
    d.build((None, 4, 3))
    d.set_weights(chosen)
    d.fit(x, y, epochs=1, seed=3, verbose=0, batch_size=16)
    assert _same(c.get_weights(), d.get_weights()) and not _same(c.get_weights(), a.get_weights())


def test_model_seed_functional_and_sequential():
    def functional(seed):
        inp = fr.Input((4, 3))
        out = layers.Dense(1)(layers.LSTM(5, dropout=0.3)(inp))
        return fr.Model(inp, out, seed=seed)

    assert _same(functional(1).get_weights(), functional(1).get_weights())
    assert not _same(functional(1).get_weights(), functional(2).get_weights())
    s1 = fr.Sequential([layers.LSTM(5, input_shape=(4, 3)), layers.Dense(1)], seed=1)
    s2 = fr.Sequential([layers.LSTM(5), layers.Dense(1)], seed=1)
    s2.build((None, 4, 3))
    assert _same(s1.get_weights(), s2.get_weights())
    # a model seed also seeds fit's shuffling and masks
    x, y = _regression(n=24, T=4)
    runs = []
    for _ in range(2):
        m = functional(4)
        m.compile("adam", "mse")
        m.fit(x, y, epochs=2, batch_size=8, verbose=0)
        runs.append(m.get_weights())
    assert _same(*runs)


def test_unseeded_runs_differ():
    x, y = _regression(n=24, T=4)
    runs = []
    for _ in range(2):
        m = _dropout_rnn()
        m.compile("adam", "mse")
        m.fit(x, y, epochs=1, batch_size=8, verbose=0)
        runs.append(m.get_weights())
    assert not _same(*runs)


# ---------------------------------------------------------------------------
# generators

def test_generator_input_matches_arrays():
    x, y = _regression(n=40)
    ref = _dense_model(seed=2)
    ref.fit(x, y, epochs=3, batch_size=10, shuffle=False, verbose=0)

    def gen():
        while True:
            for i in range(0, 40, 10):
                yield x[i:i + 10], y[i:i + 10]

    m1 = _dense_model(seed=2)
    h = m1.fit(gen(), steps_per_epoch=4, epochs=3, verbose=0)
    assert _same(m1.get_weights(), ref.get_weights())
    assert len(h.history["loss"]) == 3
    m2 = _dense_model(seed=2)
    batches = [(x[i:i + 10], y[i:i + 10], np.ones(10)) for i in range(0, 40, 10)]    # restartable, 3-tuples
    m2.fit(batches, epochs=3, verbose=0)
    assert _same(m2.get_weights(), ref.get_weights())
    np.testing.assert_allclose(m2.evaluate(iter(batches), verbose=0), ref.evaluate(x, y, verbose=0), rtol=1e-6)


def test_generator_that_runs_out():
    x, y = _regression(n=20)
    model = _dense_model()
    gen = ((x[i:i + 5], y[i:i + 5]) for i in range(0, 20, 5))
    with pytest.warns(RuntimeWarning, match="ran out"):
        h = model.fit(gen, epochs=3, verbose=0)
    assert h.epoch == [0] and model.optimizer.iterations == 4
    with pytest.raises(ValueError, match="tuple"):
        model.fit(iter([x]), epochs=1, verbose=0)


def test_lazy_sequential_builds_from_a_generator():
    x, y = _regression(n=20)
    model = fr.Sequential([layers.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(((x[i:i + 5], y[i:i + 5]) for i in range(0, 20, 5)), verbose=0)
    assert model.built and model.input_shape == (None, 3)


# ---------------------------------------------------------------------------
# stateful training over windows (truncated BPTT)

def test_stateful_windows_match_the_full_sequence():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 12, 3)).astype(np.float32)
    full = fr.Sequential([layers.LSTM(4, return_sequences=True, input_shape=(None, 3))], seed=0)
    stateful = fr.Sequential([fr.Input((4, 3), batch_size=2), layers.LSTM(4, return_sequences=True,
                                                                           stateful=True)])
    stateful.set_weights(full.get_weights())
    windows = [stateful.predict(x[:, i:i + 4]) for i in range(0, 12, 4)]
    np.testing.assert_allclose(np.concatenate(windows, axis=1), full.predict(x), rtol=1e-5, atol=1e-6)
    stateful.reset_states()
    np.testing.assert_array_equal(stateful.predict(x[:, :4]), windows[0])


def test_stateful_fit_over_windows():
    """Truncated BPTT: a stateful GRU learns to output the running sum of a long
    sequence fed in windows of 5 steps, states reset at each pass."""
    rng = np.random.default_rng(4)
    B, T, W = 8, 40, 5
    x = rng.uniform(-1, 1, (B, T, 1)).astype(np.float32)
    y = np.cumsum(x, axis=1) / 4
    model = fr.Sequential([fr.Input((W, 1), batch_size=B),
                           layers.GRU(16, return_sequences=True, stateful=True), layers.Dense(1)], seed=1)
    model.compile(optimizers.Adam(0.003), "mse")
    xw = np.concatenate([x[:, i:i + W] for i in range(0, T, W)])    # window-major: batch b = window
    yw = np.concatenate([y[:, i:i + W] for i in range(0, T, W)])
    reset = callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: model.reset_states())
    h = model.fit(xw, yw, batch_size=B, epochs=200, shuffle=False, callbacks=[reset], verbose=0)
    assert h.history["loss"][-1] < 0.1 * h.history["loss"][0]
    model.reset_states()
    pred = np.concatenate([model.predict(x[:, i:i + W], batch_size=B) for i in range(0, T, W)], axis=1)
    assert np.mean((pred - y) ** 2) < 0.02 < 0.1 * np.mean(y ** 2)       # 0.0036 here


def test_compile_checks_names_before_the_model_is_built():
    model = fr.Sequential([layers.Dense(1)])
    with pytest.raises(ValueError, match="unknown identifier 'nope'"):
        model.compile("adam", "nope")
    with pytest.raises(ValueError, match="unknown identifier 'bad_metric'"):
        model.compile("adam", "mse", metrics=["mae", "bad_metric"])
    with pytest.raises(ValueError, match="optimizer"):
        model.compile("adamx", "mse")
    model.compile("adam", losses.serialize(losses.Huber(delta=2.0)))
    model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)
    assert isinstance(model._loss_fns[0], losses.Huber) and model._loss_fns[0].delta == 2.0


def test_ctrl_c_during_the_update_finishes_it_first(monkeypatch):
    """A SIGINT arriving while the optimizer updates the weights is raised after the
    update: the weights are those of a complete step, never half of one."""
    import os
    import signal
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("a custom SIGINT handler is installed")
    x, y = _regression(n=8)
    a, b = _dense_model(seed=4), _dense_model(seed=4)
    b.train_on_batch(x, y)
    real = a.optimizer._update
    calls = []

    def interrupted(param, grad, lr, slots):
        if not calls:
            os.kill(os.getpid(), signal.SIGINT)          # Ctrl-C after the first parameter
        calls.append(1)
        return real(param, grad, lr, slots)

    monkeypatch.setattr(a.optimizer, "_update", interrupted)
    with pytest.raises(KeyboardInterrupt):
        a.train_on_batch(x, y)
    assert len(calls) == 4 and a.optimizer.iterations == 1
    assert _same(a.get_weights(), b.get_weights())
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_history_plot_and_csv_logger(tmp_path):
    x, y = _regression(n=24)
    model = _dense_model(metrics=["mae"])
    log = tmp_path / "log.csv"
    h = model.fit(x, y, epochs=3, batch_size=8, validation_split=0.25, verbose=0,
                  callbacks=[callbacks.CSVLogger(str(log))])
    rows = log.read_text().splitlines()
    assert rows[0] == "epoch,loss,mae,val_loss,val_mae" and len(rows) == 4
    assert float(rows[3].split(",")[1]) == pytest.approx(h.history["loss"][2])
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    fig = h.plot()
    assert [a.get_title() for a in fig.axes] == ["loss", "mae"]
    assert len(fig.axes[0].lines) == 2                 # training and validation
