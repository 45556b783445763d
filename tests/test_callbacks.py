"""Callbacks against a small fake model and a fake training loop.

The fake model has what callbacks may rely on (stop_training, get/set_weights,
optimizer.learning_rate, save, save_weights); the fake loop drives the hooks
in Keras's order. Its weights after epoch e are all equal to e, so a test can
tell which epoch's weights a model holds. When keras is installed, the
monitor-based callbacks are also run side by side with Keras 3's on the same
sequences of logs.
"""
import csv
import os
import types

import numpy as np
import pytest

from fastrnn import callbacks as C


class FakeModel:
    def __init__(self, lr=1.0):
        self.stop_training = False
        self.weights = [np.full(3, -1.0), np.full((2, 2), -1.0)]
        self.optimizer = types.SimpleNamespace(learning_rate=lr)
        self.saves = []

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w, copy=True) for w in weights]

    def _write(self, kind, path):
        with open(path, "w") as f:
            f.write(kind)
        self.saves.append((kind, os.fspath(path)))

    def save(self, path, **kwargs):
        self._write("model", path)

    def save_weights(self, path, **kwargs):
        self._write("weights", path)

    def epoch_of_weights(self):
        values = {float(v) for w in self.weights for v in np.ravel(w)}
        assert len(values) == 1
        return int(values.pop())


def fit(callbacks, epoch_logs, model=None, steps=1, batch_losses=None, list_cls=None):
    """Run a fake fit: `epoch_logs[e]` are epoch e's logs; returns (model, CallbackList, epochs run).

    `batch_losses[e][b]`, when given, is the loss of batch b of epoch e; the loop
    asks `check_loss` before each update (an update adds 1 to the weights) and
    skips it when told to.
    """
    model = model or FakeModel()
    model.stop_training = False
    cbs = C.CallbackList(callbacks, model=model, add_history=True,
                         params={"epochs": len(epoch_logs), "steps": steps, "verbose": 0})
    cbs.on_train_begin()
    run = 0
    for epoch, logs in enumerate(epoch_logs):
        cbs.on_epoch_begin(epoch)
        for batch in range(steps):
            cbs.on_train_batch_begin(batch)
            loss = 0.5 if batch_losses is None else batch_losses[epoch][batch]
            if not cbs.check_loss(epoch, batch, loss):
                model.weights = [w + 1 for w in model.weights]
            cbs.on_train_batch_end(batch, {"loss": loss})
            if model.stop_training:
                break
        if batch_losses is None:
            model.weights = [np.full_like(w, epoch) for w in model.weights]
        cbs.on_epoch_end(epoch, dict(logs))
        run += 1
        if model.stop_training:
            break
    cbs.on_train_end()
    return model, cbs, run


def val_losses(*values):
    return [{"loss": 1.0, "val_loss": v} for v in values]


# ---------------------------------------------------------------------------
# CallbackList and the base class

class Recorder(C.Callback):
    def __init__(self, tag, log):
        super().__init__()
        self.tag, self.log = tag, log

    def on_train_begin(self, logs=None):
        self.log.append((self.tag, "train_begin", self.params.get("epochs")))

    def on_epoch_end(self, epoch, logs=None):
        self.log.append((self.tag, "epoch_end", epoch, dict(logs)))
        logs[f"seen_by_{self.tag}"] = 1.0

    def on_batch_end(self, batch, logs=None):          # the old name still gets called
        self.log.append((self.tag, "batch_end", batch))


def test_callback_list_fans_out_in_order_with_shared_logs():
    log = []
    model, cbs, _ = fit([Recorder("a", log), Recorder("b", log)], val_losses(0.5, 0.4))
    assert all(cb.model is model for cb in cbs)
    assert log[0] == ("a", "train_begin", 2) and log[1] == ("b", "train_begin", 2)
    ends = [entry for entry in log if entry[1] == "epoch_end"]
    assert [(e[0], e[2]) for e in ends] == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    assert "seen_by_a" in ends[1][3]                     # b sees what a added
    assert ("a", "batch_end", 0) in log
    history = cbs.history
    assert isinstance(cbs.callbacks[-1], C.History) and history is cbs.callbacks[-1]
    assert history.history["seen_by_b"] == [1.0, 1.0]   # History runs last


def test_callback_list_validation_and_check_loss():
    with pytest.raises(TypeError, match=r"callbacks\[1\]"):
        C.CallbackList([C.History(), object()])
    asked = []

    class Skipper(C.Callback):
        def check_loss(self, epoch, batch, loss):
            asked.append((epoch, batch))
            return loss > 1

    cbs = C.CallbackList([Skipper(), Skipper(), C.Callback()])
    assert cbs.check_loss(0, 3, 2.0) is True
    assert cbs.check_loss(0, 4, 0.5) is False
    assert asked == [(0, 3), (0, 3), (0, 4), (0, 4)]   # every callback is asked
    history = C.History()
    assert C.CallbackList([history], add_history=True).history is history
    assert len(C.CallbackList(None)) == 0


def test_callback_hooks_exist_and_do_nothing():
    cb = C.Callback()
    for hook in ("on_train_begin", "on_train_end", "on_test_begin", "on_test_end", "on_predict_begin",
                 "on_predict_end"):
        getattr(cb, hook)(logs={})
    for hook in ("on_epoch_begin", "on_epoch_end", "on_train_batch_begin", "on_train_batch_end",
                 "on_test_batch_begin", "on_test_batch_end", "on_predict_batch_begin",
                 "on_predict_batch_end"):
        getattr(cb, hook)(0, logs={})
    assert cb.check_loss(0, 0, float("nan")) is False


def test_lambda_callback():
    seen = []
    cb = C.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append((epoch, logs["val_loss"])))
    fit([cb], val_losses(0.3, 0.2))
    assert seen == [(0, 0.3), (1, 0.2)]
    with pytest.raises(TypeError, match="on_epoch_ending"):
        C.LambdaCallback(on_epoch_ending=print)


# ---------------------------------------------------------------------------
# History

def test_history_records():
    logs = [{"loss": 1.0, "accuracy": 0.5, "val_loss": 1.2, "val_accuracy": 0.4},
            {"loss": 0.8, "accuracy": 0.6, "val_loss": 1.1, "val_accuracy": np.float32(0.45)}]
    model, cbs, _ = fit([], logs)
    h = cbs.history
    assert h.epoch == [0, 1]
    assert h.history["loss"] == [1.0, 0.8]
    assert h.history["val_accuracy"] == [0.4, pytest.approx(0.45)]
    assert type(h.history["val_accuracy"][1]) is float
    assert model.history is h


def test_history_plot():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    logs = [{"loss": 1.0 - 0.1 * e, "accuracy": 0.5 + 0.1 * e, "val_loss": 1.1 - 0.1 * e,
             "val_accuracy": 0.4 + 0.1 * e, "learning_rate": 0.1} for e in range(4)]
    _, cbs, _ = fit([], logs)
    fig = cbs.history.plot()
    try:
        assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
        loss_ax = fig.axes[0]
        lines = {line.get_label(): line for line in loss_ax.get_lines()}
        assert set(lines) == {"train", "validation"}
        np.testing.assert_allclose(lines["train"].get_ydata(), [1.0, 0.9, 0.8, 0.7])
        np.testing.assert_allclose(lines["validation"].get_ydata(), [1.1, 1.0, 0.9, 0.8])
        assert list(lines["train"].get_xdata()) == [1, 2, 3, 4]
    finally:
        plt.close(fig)
    fig, ax = plt.subplots()
    try:
        assert cbs.history.plot(metrics="accuracy", ax=ax) is fig
        assert len(ax.get_lines()) == 2
        with pytest.raises(ValueError, match="precision"):
            cbs.history.plot(metrics=["precision"])
    finally:
        plt.close(fig)


def test_history_plot_without_matplotlib(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    h = C.History()
    h.on_epoch_end(0, {"loss": 1.0})
    with pytest.raises(ImportError, match="matplotlib"):
        h.plot()


# ---------------------------------------------------------------------------
# EarlyStopping

@pytest.mark.parametrize("values, patience, stopped", [
    ((1.0, 0.9, 0.95, 0.8), 0, 2),
    ((1.0, 0.9, 0.95, 0.96, 0.5, 0.4), 2, 3),
    ((1.0, 0.9, 0.95, 0.85, 0.9, 0.91, 0.1), 2, 5),      # an improvement resets the count
    ((1.0, 0.9, 0.8, 0.7), 1, None),                      # always improving
    ((1.0, 1.0, 1.0), 0, 1),                              # equal is no improvement
])
def test_early_stopping_patience(values, patience, stopped):
    es = C.EarlyStopping(patience=patience)
    _, _, run = fit([es], val_losses(*values))
    if stopped is None:
        assert run == len(values) and es.stopped_epoch == 0
    else:
        assert es.stopped_epoch == stopped and run == stopped + 1


def test_early_stopping_min_delta():
    values = val_losses(1.0, 0.95, 0.85, 0.8)
    es = C.EarlyStopping(patience=1, min_delta=0.1)
    _, _, run = fit([es], values)
    assert es.stopped_epoch == 1 and run == 2               # 0.05 better is not enough
    assert C.EarlyStopping(min_delta=-0.1).min_delta == 0.1   # the sign is ignored, as in Keras
    _, _, run = fit([C.EarlyStopping(patience=1)], values)
    assert run == 4


def test_early_stopping_baseline():
    values = val_losses(0.9, 0.8, 0.7, 0.75, 0.76, 0.77)
    es = C.EarlyStopping(patience=2)
    fit([es], values)
    assert es.stopped_epoch == 4
    # With a baseline that is never beaten, the epochs keep counting from the start:
    # improvements over the best so far only delay the stop until one fails.
    es = C.EarlyStopping(patience=2, baseline=0.5)
    fit([es], values)
    assert es.stopped_epoch == 3
    # Beating the baseline resets the count.
    es = C.EarlyStopping(patience=2, baseline=0.5)
    fit([es], val_losses(0.9, 0.4, 0.45, 0.46, 0.47))
    assert es.stopped_epoch == 3


def test_early_stopping_restore_best_weights_on_stop():
    es = C.EarlyStopping(patience=2, restore_best_weights=True)
    model, _, run = fit([es], val_losses(1.0, 0.5, 0.7, 0.8, 0.1))
    assert run == 4 and es.best_epoch == 1 and es.best == 0.5
    assert model.epoch_of_weights() == 1


def test_early_stopping_restores_at_train_end_without_a_stop():
    # Keras 3 restores the best weights at the end of training even when it did not stop early.
    es = C.EarlyStopping(patience=10, restore_best_weights=True)
    model, _, run = fit([es], val_losses(1.0, 0.5, 0.7))
    assert run == 3 and es.stopped_epoch == 0
    assert model.epoch_of_weights() == 1
    model, _, _ = fit([C.EarlyStopping(patience=10)], val_losses(1.0, 0.5, 0.7))
    assert model.epoch_of_weights() == 2


def test_early_stopping_best_weights_are_copies():
    es = C.EarlyStopping(patience=0, restore_best_weights=True)
    model = FakeModel()
    model.weights = [np.zeros(2)]
    model.get_weights = lambda: model.weights            # a model that hands out its own arrays
    es.set_model(model)
    es.on_train_begin()
    es.on_epoch_end(0, {"val_loss": 1.0})
    model.weights[0] += 5
    assert np.array_equal(es.best_weights[0], np.zeros(2))


def test_early_stopping_modes():
    es = C.EarlyStopping(monitor="val_accuracy", patience=0)           # auto -> max
    _, _, run = fit([es], [{"val_accuracy": v} for v in (0.5, 0.6, 0.55, 0.7)])
    assert es.stopped_epoch == 2
    es = C.EarlyStopping(monitor="score", mode="max", patience=0)
    fit([es], [{"score": v} for v in (1.0, 2.0, 1.5)])
    assert es.stopped_epoch == 2
    es = C.EarlyStopping(monitor="score", mode="min", patience=0)
    fit([es], [{"score": v} for v in (1.0, 2.0, 1.5)])
    assert es.stopped_epoch == 1


@pytest.mark.parametrize("monitor, direction", [
    ("loss", "min"), ("val_loss", "min"), ("accuracy", "max"), ("val_acc", "max"),
    ("val_sparse_categorical_accuracy", "max"), ("auc", "max"), ("f1_score", "max"),
    ("mae", "min"), ("val_mean_squared_error", "min"), ("perplexity", "min"),
])
def test_auto_mode_from_the_name(monitor, direction):
    assert C._direction(monitor, "auto") == direction


def test_early_stopping_start_from_epoch():
    es = C.EarlyStopping(monitor="val_loss", patience=0, start_from_epoch=2)
    _, _, run = fit([es], val_losses(1.0, 2.0, 3.0, 4.0, 0.5))
    assert es.stopped_epoch == 3 and run == 4


def test_early_stopping_missing_key_warns_with_available_keys():
    es = C.EarlyStopping(monitor="val_los", patience=0)
    with pytest.warns(RuntimeWarning, match=r"val_los.*available: loss, val_loss"):
        _, _, run = fit([es], val_losses(1.0, 2.0))
    assert run == 2


def test_early_stopping_is_reset_by_a_new_fit():
    es = C.EarlyStopping(patience=0, restore_best_weights=True)
    fit([es], val_losses(1.0, 2.0))
    assert es.stopped_epoch == 1
    _, _, run = fit([es], val_losses(5.0, 4.0, 3.0))
    assert run == 3 and es.stopped_epoch == 0 and es.best == 3.0


def test_early_stopping_verbose(capsys):
    fit([C.EarlyStopping(patience=0, verbose=1, restore_best_weights=True)], val_losses(1.0, 2.0))
    out = capsys.readouterr().out
    assert "Epoch 2: early stopping" in out and "best epoch: 1" in out


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"patience": -1}, ValueError, "patience"),
    ({"patience": 1.5}, TypeError, "patience"),
    ({"mode": "maximum"}, ValueError, "mode"),
    ({"baseline": "0.5"}, TypeError, "baseline"),
    ({"restore_best_weights": "yes"}, TypeError, "restore_best_weights"),
    ({"start_from_epoch": -2}, ValueError, "start_from_epoch"),
    ({"monitor": 3}, TypeError, "monitor"),
    ({"min_delta": None}, TypeError, "min_delta"),
])
def test_early_stopping_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        C.EarlyStopping(**kwargs)


# ---------------------------------------------------------------------------
# ModelCheckpoint

def read(path):
    with open(path) as f:
        return f.read()


def test_checkpoint_every_epoch_with_formatted_names(tmp_path):
    pattern = str(tmp_path / "sub" / "ckpt-{epoch:02d}-{val_loss:.2f}.fastrnn")
    mc = C.ModelCheckpoint(pattern)
    model, _, _ = fit([mc], val_losses(0.9, 0.8123, 1.5))
    names = sorted(os.listdir(tmp_path / "sub"))
    assert names == ["ckpt-01-0.90.fastrnn", "ckpt-02-0.81.fastrnn", "ckpt-03-1.50.fastrnn"]
    assert all(read(tmp_path / "sub" / n) == "model" for n in names)
    assert [kind for kind, _ in model.saves] == ["model"] * 3


def test_checkpoint_weights_only(tmp_path):
    mc = C.ModelCheckpoint(tmp_path / "w-{epoch}.npz", save_weights_only=True)
    fit([mc], val_losses(0.9, 0.8))
    assert read(tmp_path / "w-1.npz") == "weights" and read(tmp_path / "w-2.npz") == "weights"


def test_checkpoint_save_best_only(tmp_path):
    mc = C.ModelCheckpoint(str(tmp_path / "best-{epoch}.fastrnn"), save_best_only=True)
    fit([mc], val_losses(1.0, 0.8, 0.9, 0.7, 0.7))
    assert sorted(os.listdir(tmp_path)) == ["best-1.fastrnn", "best-2.fastrnn", "best-4.fastrnn"]
    assert mc.best == 0.7
    # A fixed name is overwritten by each better model only.
    model = FakeModel()
    mc = C.ModelCheckpoint(str(tmp_path / "best.fastrnn"), save_best_only=True)
    fit([mc], val_losses(1.0, 0.8, 0.9), model=model)
    assert len(model.saves) == 2


def test_checkpoint_mode_max_and_initial_threshold(tmp_path):
    mc = C.ModelCheckpoint(str(tmp_path / "a-{epoch}"), monitor="val_accuracy", save_best_only=True)
    fit([mc], [{"val_accuracy": v} for v in (0.5, 0.4, 0.6)])
    assert sorted(os.listdir(tmp_path)) == ["a-1", "a-3"]
    mc = C.ModelCheckpoint(str(tmp_path / "b-{epoch}"), save_best_only=True, initial_value_threshold=0.85)
    fit([mc], val_losses(1.0, 0.8, 0.9, 0.7))
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith("b")) == ["b-2", "b-4"]


def test_checkpoint_every_n_batches(tmp_path):
    mc = C.ModelCheckpoint(str(tmp_path / "e{epoch}-b{batch}"), save_freq=2)
    fit([mc], val_losses(1.0, 0.9), steps=3)
    # Batches are counted across epochs: saves after the 2nd, 4th and 6th batch.
    assert sorted(os.listdir(tmp_path)) == ["e1-b2", "e2-b1", "e2-b3"]


def test_checkpoint_missing_monitor_saves_with_a_warning(tmp_path):
    mc = C.ModelCheckpoint(str(tmp_path / "m"), monitor="val_acc", save_best_only=True)
    with pytest.warns(RuntimeWarning, match="val_acc"):
        model, _, _ = fit([mc], val_losses(1.0))
    assert len(model.saves) == 1


def test_checkpoint_errors(tmp_path):
    mc = C.ModelCheckpoint(str(tmp_path / "{epoch}-{val_acc:.2f}"))
    with pytest.raises(KeyError, match="val_acc"):
        fit([mc], val_losses(1.0))
    with pytest.raises(ValueError, match="save_freq"):
        C.ModelCheckpoint("x", save_freq="batch")
    with pytest.raises(ValueError, match="save_freq"):
        C.ModelCheckpoint("x", save_freq=0)
    with pytest.raises(TypeError, match="filepath"):
        C.ModelCheckpoint(None)
    with pytest.raises(IsADirectoryError):
        fit([C.ModelCheckpoint(str(tmp_path))], val_losses(1.0))


def test_checkpoint_verbose(tmp_path, capsys):
    fit([C.ModelCheckpoint(str(tmp_path / "c"), save_best_only=True, verbose=1)], val_losses(1.0, 2.0))
    out = capsys.readouterr().out
    assert "val_loss improved from None to 1.00000" in out and "did not improve from 1.00000" in out


# ---------------------------------------------------------------------------
# ReduceLROnPlateau

def test_reduce_lr_on_plateau_patience_and_min_lr():
    rl = C.ReduceLROnPlateau(factor=0.5, patience=2, min_lr=0.3)
    model, cbs, _ = fit([rl], val_losses(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0))
    # No improvement after epoch 0: reduced at the ends of epochs 2, 4 (to min_lr), then no lower.
    assert cbs.history.history["learning_rate"] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.3, 0.3, 0.3]
    assert model.optimizer.learning_rate == 0.3


def test_reduce_lr_on_plateau_cooldown():
    rl = C.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2)
    model, cbs, _ = fit([rl], val_losses(*[1.0] * 8))
    # Reduced at epoch 1; the cooldown counter is decremented at the start of
    # the next epochs' checks (Keras's order), so the next reduction is at epoch 3.
    assert cbs.history.history["learning_rate"] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125]
    rl = C.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=0)
    _, cbs, _ = fit([rl], val_losses(*[1.0] * 4))
    assert cbs.history.history["learning_rate"] == [1.0, 1.0, 0.5, 0.25]


def test_reduce_lr_on_plateau_min_delta_and_improvement():
    rl = C.ReduceLROnPlateau(factor=0.1, patience=1, min_delta=0.01)
    model, _, _ = fit([rl], val_losses(1.0, 0.995, 0.5))
    # 0.995 is not an improvement by more than 0.01: reduced once at epoch 1.
    assert model.optimizer.learning_rate == pytest.approx(0.1)
    rl = C.ReduceLROnPlateau(factor=0.1, patience=1, min_delta=0.001)
    model, _, _ = fit([rl], val_losses(1.0, 0.995, 0.5))
    assert model.optimizer.learning_rate == 1.0


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"factor": 1.0}, ValueError, "factor"),
    ({"factor": -0.5}, ValueError, "factor"),
    ({"cooldown": -1}, ValueError, "cooldown"),
    ({"min_lr": -1e-3}, ValueError, "min_lr"),
    ({"patience": "3"}, TypeError, "patience"),
])
def test_reduce_lr_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        C.ReduceLROnPlateau(**kwargs)


def test_lr_callbacks_need_a_numeric_learning_rate():
    model = FakeModel()
    model.optimizer.learning_rate = object()
    with pytest.raises(TypeError, match="learning_rate"):
        fit([C.ReduceLROnPlateau()], val_losses(1.0), model=model)
    model.optimizer = None
    with pytest.raises(RuntimeError, match="optimizer"):
        fit([C.LearningRateScheduler(lambda e, lr: lr)], val_losses(1.0), model=model)


# ---------------------------------------------------------------------------
# LearningRateScheduler

def test_learning_rate_scheduler():
    seen = []

    def schedule(epoch, lr):
        seen.append((epoch, lr))
        return lr if epoch < 2 else lr * 0.5

    model, cbs, _ = fit([C.LearningRateScheduler(schedule)], val_losses(*[1.0] * 4))
    assert seen == [(0, 1.0), (1, 1.0), (2, 1.0), (3, 0.5)]
    assert cbs.history.history["learning_rate"] == [1.0, 1.0, 0.5, 0.25]
    assert model.optimizer.learning_rate == 0.25


def test_learning_rate_scheduler_one_argument_and_errors(capsys):
    model, _, _ = fit([C.LearningRateScheduler(lambda epoch: 0.1 * (epoch + 1), verbose=1)], val_losses(1.0, 1.0))
    assert model.optimizer.learning_rate == pytest.approx(0.2)
    assert "Epoch 2: LearningRateScheduler setting learning rate to 0.2" in capsys.readouterr().out
    with pytest.raises(ValueError, match="finite float"):
        fit([C.LearningRateScheduler(lambda e, lr: "fast")], val_losses(1.0))
    with pytest.raises(ValueError, match="finite float"):
        fit([C.LearningRateScheduler(lambda e, lr: float("nan"))], val_losses(1.0))
    with pytest.raises(TypeError, match="schedule"):
        C.LearningRateScheduler(0.1)
    with pytest.raises(TypeError, match="schedule"):
        C.LearningRateScheduler(lambda: 0.1)


# ---------------------------------------------------------------------------
# TerminateOnNaN

def test_terminate_on_nan_check_loss(capsys):
    model = FakeModel()
    cb = C.TerminateOnNaN()
    cb.set_model(model)
    cb.on_train_begin()
    assert cb.check_loss(0, 0, 0.5) is False and not model.stop_training
    assert cb.check_loss(0, 1, np.float32(1e30)) is False
    assert cb.check_loss(2, 7, float("nan")) is True
    assert model.stop_training and (cb.stopped_epoch, cb.stopped_batch) == (2, 7)
    out = capsys.readouterr().out
    assert "epoch 3, batch 8" in out and "epoch index 2, batch index 7" in out and "skipped" in out
    assert cb.check_loss(0, 0, -np.inf) is True


def test_terminate_on_nan_skips_the_bad_update():
    losses = [[0.5, 0.4], [0.3, float("inf"), 0.2]]
    cb = C.TerminateOnNaN()
    model, _, run = fit([cb], val_losses(1.0, 1.0), steps=2, batch_losses=losses)
    # Three good updates were applied; the fourth batch's was skipped and training stopped.
    assert model.epoch_of_weights() == -1 + 3
    assert run == 2 and (cb.stopped_epoch, cb.stopped_batch) == (1, 1)


def test_terminate_on_nan_from_batch_logs(capsys):
    model = FakeModel()
    cbs = C.CallbackList([C.TerminateOnNaN()], model=model)
    cbs.on_train_begin()
    cbs.on_epoch_begin(4)
    cbs.on_train_batch_end(0, {"loss": 1.0})
    assert not model.stop_training
    cbs.on_train_batch_end(1, {"loss": float("nan")})
    assert model.stop_training and (cbs.callbacks[0].stopped_epoch, cbs.callbacks[0].stopped_batch) == (4, 1)
    assert "epoch 5, batch 2" in capsys.readouterr().out


def test_terminate_on_nan_reports_once_and_can_raise(capsys):
    model = FakeModel()
    cbs = C.CallbackList([C.TerminateOnNaN()], model=model)
    cbs.on_train_begin()
    cbs.on_epoch_begin(0)
    assert cbs.check_loss(0, 3, float("nan"))
    cbs.on_train_batch_end(3, {"loss": float("nan")})
    assert capsys.readouterr().out.count("TerminateOnNaN") == 1
    cb = C.TerminateOnNaN(raise_error=True)
    cb.set_model(model)
    with pytest.raises(RuntimeError, match="batch 1"):
        cb.check_loss(0, 0, float("nan"))


# ---------------------------------------------------------------------------
# CSVLogger

def read_csv(path, sep=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=sep))


def test_csv_logger_content(tmp_path):
    path = tmp_path / "log.csv"
    logs = [{"loss": 1.0, "accuracy": 0.5, "val_loss": 1.5, "val_accuracy": 0.25},
            {"loss": 0.75, "accuracy": 0.625, "val_loss": 1.25, "val_accuracy": 0.5}]
    fit([C.CSVLogger(path)], logs)
    rows = read_csv(path)
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [[float(v) for v in r] for r in rows[1:]] == [[0, 0.5, 1.0, 0.25, 1.5], [1, 0.625, 0.75, 0.5, 1.25]]


def test_csv_logger_adds_val_columns_and_separator(tmp_path):
    path = tmp_path / "log.tsv"
    fit([C.CSVLogger(str(path), separator="\t")], [{"loss": 1.0}, {"loss": 0.5, "val_loss": 0.7}])
    rows = read_csv(path, "\t")
    assert rows == [["epoch", "loss", "val_loss"], ["0", "1.0", "NA"], ["1", "0.5", "0.7"]]


def test_csv_logger_append(tmp_path):
    path = tmp_path / "log.csv"
    fit([C.CSVLogger(path, append=True)], val_losses(0.9))
    fit([C.CSVLogger(path, append=True)], val_losses(0.8, 0.7))
    rows = read_csv(path)
    assert rows[0] == ["epoch", "loss", "val_loss"]
    assert [r[2] for r in rows[1:]] == ["0.9", "0.8", "0.7"]          # one header, rows appended
    fit([C.CSVLogger(path)], val_losses(0.1))
    assert read_csv(path) == [["epoch", "loss", "val_loss"], ["0", "1.0", "0.1"]]   # overwritten


def test_csv_logger_values_and_validation(tmp_path):
    path = tmp_path / "v.csv"
    fit([C.CSVLogger(path)], [{"loss": np.float32(0.5), "per_class": np.array([1.0, 2.0])}])
    rows = read_csv(path)
    assert rows[1][1] == "0.5" and rows[1][2] == "[1.0, 2.0]"
    with pytest.raises(ValueError, match="separator"):
        C.CSVLogger(path, separator=", ")
    with pytest.raises(TypeError, match="append"):
        C.CSVLogger(path, append="yes")


# ---------------------------------------------------------------------------
# side by side with Keras 3 (keras is installed locally, not in CI)

@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("keras")


def run_keras(cb, epoch_logs, model):
    """Drive a Keras callback with the same loop as `fit` (epoch hooks only)."""
    cb.set_model(model)
    model.stop_training = False
    cb.on_train_begin({})
    run = 0
    for epoch, logs in enumerate(epoch_logs):
        cb.on_epoch_begin(epoch, {})
        model.weights = [np.full_like(w, epoch) for w in model.weights]
        cb.on_epoch_end(epoch, dict(logs))
        run += 1
        if model.stop_training:
            break
    cb.on_train_end({})
    return run


def random_sequences(n, seed):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        length = int(rng.integers(2, 12))
        # Coarse values so that ties and near-ties (min_delta) happen.
        yield [float(v) for v in np.round(1.0 + rng.standard_normal(length).cumsum() * 0.1, 2)]


@pytest.mark.parametrize("kwargs", [
    {"patience": 0}, {"patience": 2}, {"patience": 1, "min_delta": 0.05},
    {"patience": 2, "baseline": 0.9}, {"patience": 3, "restore_best_weights": True},
    {"patience": 1, "start_from_epoch": 3, "restore_best_weights": True},
    {"patience": 2, "mode": "max", "restore_best_weights": True},
])
def test_early_stopping_matches_keras(keras, kwargs):
    for values in random_sequences(40, seed=len(str(kwargs))):
        logs = val_losses(*values)
        ours = C.EarlyStopping(**kwargs)
        ours_model, _, ours_run = fit([ours], logs)
        theirs = keras.callbacks.EarlyStopping(**{"mode": "min", **kwargs})
        their_model = FakeModel()
        their_run = run_keras(theirs, logs, their_model)
        assert ours_run == their_run, values
        assert ours.stopped_epoch == theirs.stopped_epoch, values
        assert ours_model.epoch_of_weights() == their_model.epoch_of_weights(), values


@pytest.mark.parametrize("kwargs", [
    {"patience": 0, "factor": 0.5}, {"patience": 2, "factor": 0.5, "cooldown": 1},
    {"patience": 1, "factor": 0.3, "cooldown": 2, "min_lr": 0.05, "min_delta": 0.02},
    {"patience": 1, "factor": 0.5, "mode": "max"},
])
def test_reduce_lr_on_plateau_matches_keras(keras, kwargs):
    for values in random_sequences(40, seed=len(str(kwargs))):
        logs = val_losses(*values)
        ours_model, cbs, _ = fit([C.ReduceLROnPlateau(**kwargs)], logs)
        theirs = keras.callbacks.ReduceLROnPlateau(**{"mode": "min", **kwargs})
        their_model = FakeModel()
        their_lrs = []
        theirs.set_model(their_model)
        theirs.on_train_begin({})
        for epoch, epoch_logs in enumerate(logs):
            epoch_logs = dict(epoch_logs)
            theirs.on_epoch_end(epoch, epoch_logs)
            their_lrs.append(epoch_logs["learning_rate"])
        assert cbs.history.history["learning_rate"] == pytest.approx(their_lrs), values
        assert ours_model.optimizer.learning_rate == pytest.approx(their_model.optimizer.learning_rate)


def test_checkpoint_save_best_matches_keras(keras, tmp_path):
    for i, values in enumerate(random_sequences(30, seed=5)):
        logs = val_losses(*values)
        ours_model, their_model = FakeModel(), FakeModel()
        fit([C.ModelCheckpoint(str(tmp_path / f"o{i}-{{epoch}}.keras"), save_best_only=True,
                               initial_value_threshold=1.0)], logs, model=ours_model)
        theirs = keras.callbacks.ModelCheckpoint(str(tmp_path / f"t{i}-{{epoch}}.keras"), save_best_only=True,
                                                 mode="min", initial_value_threshold=1.0)
        run_keras(theirs, logs, their_model)
        assert [os.path.basename(p)[len(f"o{i}"):] for _, p in ours_model.saves] == \
               [os.path.basename(p)[len(f"t{i}"):] for _, p in their_model.saves], values


def test_csv_logger_matches_keras(keras, tmp_path):
    logs = [{"loss": 1.0, "mae": 0.5}, {"loss": 0.5, "mae": 0.25, "val_loss": 0.75, "val_mae": 0.3}]
    fit([C.CSVLogger(tmp_path / "ours.csv")], logs)
    theirs = keras.callbacks.CSVLogger(str(tmp_path / "theirs.csv"))
    run_keras(theirs, logs, FakeModel())
    assert read_csv(tmp_path / "ours.csv") == read_csv(tmp_path / "theirs.csv")
