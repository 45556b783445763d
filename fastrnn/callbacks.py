"""Keras-style callbacks for a model's `fit`, `evaluate` and `predict`.

A callback is told about the model with `set_model(model)` and about the run
with `set_params({"epochs": ..., "steps": ..., "verbose": ...})`; the loop then
calls its hooks (`on_train_begin`, `on_epoch_end(epoch, logs)`, ...). Epoch and
batch indices are 0-based; messages and file names show epochs 1-based, as
Keras does. `logs` is a dict of floats ("loss", metrics, and "val_*" after
validation); callbacks of one `CallbackList` receive the same dict, so a key
one adds (ReduceLROnPlateau and LearningRateScheduler add "learning_rate")
is seen by the ones after it.

What a callback may use of the model:

- `model.stop_training`: a bool the loop checks after each batch and epoch;
- `model.get_weights()` / `model.set_weights(list_of_arrays)`;
- `model.optimizer.learning_rate`: a float, readable and settable;
- `model.save(path)` and `model.save_weights(path)`.

One addition to Keras's protocol: before it applies the optimizer update of a
batch, `fit` calls `check_loss(epoch, batch, loss)` on its callbacks; a callback
returning True asks it to skip that update. `TerminateOnNaN` uses it so that a
non-finite loss never reaches the weights.
"""
import csv
import inspect
import math
import numbers
import os
import warnings

import numpy as np

__all__ = ["Callback", "CallbackList", "History", "EarlyStopping", "ModelCheckpoint",
           "ReduceLROnPlateau", "LearningRateScheduler", "TerminateOnNaN", "CSVLogger",
           "LambdaCallback"]


# ---------------------------------------------------------------------------
# argument checks and small helpers

def _int(value, name, minimum=0):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


def _verbose(value):
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    return _int(value, "verbose")


def _real(value, name, *, optional=False):
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number{' or None' if optional else ''}, "
                        f"got {type(value).__name__} {value!r}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name}: expected a number, got nan")
    return value


def _bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def _path(value, name):
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name}: expected a non-empty str or path, got {type(value).__name__} {value!r}")
    return value


def _say(message):
    print(message, flush=True)


def _scalar(value, what):
    """A float from a logged value (Python or NumPy scalar, 0-d array)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{what}: expected a scalar, got {type(value).__name__} {value!r}") from None


# Words of a metric name (without "val_") that make larger values better, for mode="auto".
_MAXIMIZED = frozenset({"acc", "accuracy", "auc", "precision", "recall", "f1", "fmeasure", "iou", "r2"})


def _direction(monitor, mode):
    """"min" or "max" for `monitor` in `mode`; "auto" maximises a name with an
    accuracy-like word ("val_sparse_categorical_accuracy", "auc", "f1_score")
    and minimises any other (losses, errors, perplexity)."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode: expected 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    name = monitor[4:] if monitor.startswith("val_") else monitor
    words = set(name.lower().split("_"))
    return "max" if words & _MAXIMIZED else "min"


class _Monitor:
    """A monitored quantity: its direction and what counts as an improvement."""

    def __init__(self, monitor, mode, min_delta=0.0):
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"monitor: expected a metric name (str), got {monitor!r}")
        self.name = monitor
        self.direction = _direction(monitor, mode)
        self.min_delta = abs(_real(min_delta, "min_delta"))

    def improves(self, current, reference):
        """True when `current` beats `reference` by more than min_delta (None is beaten by anything)."""
        if reference is None:
            return True
        if self.direction == "min":
            return current + self.min_delta < reference
        return current - self.min_delta > reference

    def value(self, logs, who):
        """The monitored value in `logs` as a float, or None (with a warning) when absent."""
        logs = logs or {}
        value = logs.get(self.name)
        if value is None:
            warnings.warn(f"{who} monitors {self.name!r}, which is not in the logs; "
                          f"available: {', '.join(logs) or 'none'}", RuntimeWarning, stacklevel=3)
            return None
        return _scalar(value, f"{who}: logs[{self.name!r}]")


def _optimizer(model, who):
    opt = getattr(model, "optimizer", None) if model is not None else None
    if opt is None or not hasattr(opt, "learning_rate"):
        raise RuntimeError(f"{who}: the model has no optimizer with a learning_rate (compile it first)")
    return opt


def _learning_rate(opt, who):
    lr = opt.learning_rate
    try:
        return float(lr)
    except (TypeError, ValueError):
        raise TypeError(f"{who}: optimizer.learning_rate must be a number for this callback to change it, "
                        f"got {type(lr).__name__} (a learning-rate schedule cannot be combined with {who})"
                        ) from None


# ---------------------------------------------------------------------------
# base class and list

class Callback:
    """Base class: every hook does nothing; subclasses override the ones they need.

    `self.model` and `self.params` are set by the training loop (through
    `CallbackList`) before `on_train_begin`.
    """

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = dict(params or {})

    # fit
    def on_train_begin(self, logs=None):
        """Before the first epoch."""

    def on_train_end(self, logs=None):
        """After the last epoch (also after an early stop)."""

    def on_epoch_begin(self, epoch, logs=None):
        """At the start of epoch `epoch` (0-based)."""

    def on_epoch_end(self, epoch, logs=None):
        """At the end of an epoch; `logs` holds the epoch's training and validation results."""

    def on_train_batch_begin(self, batch, logs=None):
        """Before training batch `batch` (0-based within the epoch)."""
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        """After a training batch; `logs` holds the running loss and metrics."""
        self.on_batch_end(batch, logs)

    def on_batch_begin(self, batch, logs=None):
        """Keras's older name for on_train_batch_begin (called by its default)."""

    def on_batch_end(self, batch, logs=None):
        """Keras's older name for on_train_batch_end (called by its default)."""

    def check_loss(self, epoch, batch, loss):
        """Called with a batch's loss before its optimizer update; True skips the update."""
        return False

    # evaluate (and validation inside fit)
    def on_test_begin(self, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass

    def on_test_batch_begin(self, batch, logs=None):
        pass

    def on_test_batch_end(self, batch, logs=None):
        pass

    # predict
    def on_predict_begin(self, logs=None):
        pass

    def on_predict_end(self, logs=None):
        pass

    def on_predict_batch_begin(self, batch, logs=None):
        pass

    def on_predict_batch_end(self, batch, logs=None):
        pass


class CallbackList:
    """Calls each hook on every callback, in order, with one shared `logs` dict.

    `add_history=True` appends a `History` (kept last, so it records what the
    others add to the logs) unless one is given; `.history` is the History in
    the list, or None.
    """

    def __init__(self, callbacks=None, model=None, params=None, add_history=False):
        if isinstance(callbacks, Callback):
            callbacks = [callbacks]
        callbacks = list(callbacks or [])
        for i, cb in enumerate(callbacks):
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks[{i}]: expected a fastrnn.callbacks.Callback, "
                                f"got {type(cb).__name__}")
        self.callbacks = callbacks
        if add_history and not any(isinstance(cb, History) for cb in callbacks):
            self.callbacks.append(History())
        self.model = None
        self.params = {}
        if model is not None:
            self.set_model(model)
        if params is not None:
            self.set_params(params)

    @property
    def history(self):
        return next((cb for cb in self.callbacks if isinstance(cb, History)), None)

    def append(self, callback):
        if not isinstance(callback, Callback):
            raise TypeError(f"callback: expected a fastrnn.callbacks.Callback, got {type(callback).__name__}")
        self.callbacks.append(callback)
        if self.model is not None:
            callback.set_model(self.model)
        callback.set_params(self.params)

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self):
        return len(self.callbacks)

    def set_model(self, model):
        self.model = model
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params):
        self.params = dict(params or {})
        for cb in self.callbacks:
            cb.set_params(self.params)

    def _call(self, hook, *args, logs=None):
        logs = {} if logs is None else logs
        for cb in self.callbacks:
            getattr(cb, hook)(*args, logs)
        return logs

    def check_loss(self, epoch, batch, loss):
        """True when any callback asks to skip this batch's update (every callback is asked)."""
        skip = False
        for cb in self.callbacks:
            skip = bool(cb.check_loss(epoch, batch, loss)) or skip
        return skip

    def on_train_begin(self, logs=None):
        return self._call("on_train_begin", logs=logs)

    def on_train_end(self, logs=None):
        return self._call("on_train_end", logs=logs)

    def on_epoch_begin(self, epoch, logs=None):
        return self._call("on_epoch_begin", epoch, logs=logs)

    def on_epoch_end(self, epoch, logs=None):
        return self._call("on_epoch_end", epoch, logs=logs)

    def on_train_batch_begin(self, batch, logs=None):
        return self._call("on_train_batch_begin", batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        return self._call("on_train_batch_end", batch, logs=logs)

    def on_test_begin(self, logs=None):
        return self._call("on_test_begin", logs=logs)

    def on_test_end(self, logs=None):
        return self._call("on_test_end", logs=logs)

    def on_test_batch_begin(self, batch, logs=None):
        return self._call("on_test_batch_begin", batch, logs=logs)

    def on_test_batch_end(self, batch, logs=None):
        return self._call("on_test_batch_end", batch, logs=logs)

    def on_predict_begin(self, logs=None):
        return self._call("on_predict_begin", logs=logs)

    def on_predict_end(self, logs=None):
        return self._call("on_predict_end", logs=logs)

    def on_predict_batch_begin(self, batch, logs=None):
        return self._call("on_predict_batch_begin", batch, logs=logs)

    def on_predict_batch_end(self, batch, logs=None):
        return self._call("on_predict_batch_end", batch, logs=logs)


# ---------------------------------------------------------------------------
# History

class History(Callback):
    """Records the logs of every epoch: `history[key]` is the list of the key's
    values, one per epoch that logged it, `epoch` the list of epoch indices.
    `fit` returns it; like Keras, it also sets `model.history` to itself.

    Used for several `fit` calls, it keeps appending (with `initial_epoch`,
    `epoch` shows where each run started).
    """

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []
        self._epochs_of = {}     # key -> the epochs its values come from (validation may skip some)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            if isinstance(value, np.ndarray) and value.ndim == 0 or isinstance(value, np.generic):
                value = value.item()
            self.history.setdefault(key, []).append(value)
            self._epochs_of.setdefault(key, []).append(epoch)
        if self.model is not None:
            try:
                self.model.history = self
            except AttributeError:
                pass

    def _metric_names(self, metrics):
        """The base names (without "val_") to plot, "loss" first."""
        if metrics is None:
            names = []
            for key in self.history:
                base = key[4:] if key.startswith("val_") else key
                if base not in names and base != "learning_rate":
                    names.append(base)
            names.sort(key=lambda n: n != "loss")
        else:
            if isinstance(metrics, str):
                metrics = [metrics]
            names = []
            for m in metrics:
                if not isinstance(m, str):
                    raise TypeError(f"metrics: expected names (str), got {type(m).__name__} {m!r}")
                base = m[4:] if m.startswith("val_") and m[4:] in self.history else m
                if base not in self.history and "val_" + base not in self.history:
                    raise ValueError(f"metrics: {m!r} was not recorded; recorded: {', '.join(self.history)}")
                if base not in names:
                    names.append(base)
        if not names:
            raise ValueError("History.plot: nothing was recorded (train the model first)")
        return names

    def plot(self, metrics=None, ax=None):
        """Draw the training and validation curves with matplotlib; return the Figure.

        `metrics`: a name or a list of names ("loss", "accuracy", ...; "val_"
        curves are drawn with their training curves); None draws "loss" and
        every recorded metric (not "learning_rate", which can be asked for). `ax`: None makes a figure with one subplot per
        metric; one Axes draws every curve on it; a sequence of Axes gives one
        per metric.
        """
        try:
            from matplotlib.axes import Axes
            from matplotlib.ticker import MaxNLocator
        except ImportError:
            raise ImportError("History.plot needs matplotlib, which is not installed "
                              "(pip install matplotlib)") from None
        names = self._metric_names(metrics)
        if ax is None:
            import matplotlib.pyplot as plt
            fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
            axes = list(axes[0])
        elif isinstance(ax, Axes):
            axes = [ax] * len(names)
            fig = ax.figure
        else:
            axes = list(ax)
            if len(axes) != len(names):
                raise ValueError(f"ax: expected {len(names)} Axes (one per metric: {', '.join(names)}), "
                                 f"got {len(axes)}")
            fig = axes[0].figure
        shared = len(set(map(id, axes))) == 1 and len(names) > 1
        for name, axis in zip(names, axes):
            for key, label in ((name, "train"), ("val_" + name, "validation")):
                values = self.history.get(key)
                if values is None:
                    continue
                epochs = [e + 1 for e in self._epochs_of.get(key, [])]
                if len(epochs) != len(values):        # history filled in by hand
                    epochs = list(range(1, len(values) + 1))
                axis.plot(epochs, values, marker="o" if len(values) < 30 else None,
                          label=f"{name} ({label})" if shared else label)
            axis.set_xlabel("epoch")
            if not shared:
                axis.set_title(name)
                axis.set_ylabel(name)
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.legend()
            axis.grid(True, alpha=0.3)
        if ax is None:
            fig.tight_layout()
        return fig


# ---------------------------------------------------------------------------
# EarlyStopping

class EarlyStopping(Callback):
    """Stop training when the monitored quantity stops improving (Keras semantics).

    Every monitored epoch counts one towards `wait`; an improvement (by more
    than `min_delta` over the best value so far) records the new best and,
    when it also beats `baseline` (or there is none), resets `wait`. When an
    epoch brings no improvement and `wait >= patience`, training stops (never
    at the first epoch). Epochs before `start_from_epoch` are not monitored.

    With `restore_best_weights`, the weights of the best epoch are kept and set
    back at the end of training, whether or not training stopped early (as
    Keras 3 does). A monitored key missing from the logs gives a warning naming
    the available keys, and the epoch is skipped. `mode="auto"` maximises
    accuracy-like names (acc, accuracy, auc, precision, recall, f1) and
    minimises everything else.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self._monitor = _Monitor(monitor, mode, min_delta)
        self.monitor = monitor
        self.mode = mode
        self.min_delta = self._monitor.min_delta
        self.patience = _int(patience, "patience")
        self.verbose = _verbose(verbose)
        self.baseline = _real(baseline, "baseline", optional=True)
        self.restore_best_weights = _bool(restore_best_weights, "restore_best_weights")
        self.start_from_epoch = _int(start_from_epoch, "start_from_epoch")
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_epoch = 0
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        current = self._monitor.value(logs, "EarlyStopping")
        if current is None or epoch < self.start_from_epoch:
            return
        self.wait += 1
        if self._monitor.improves(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = [np.array(w, copy=True) for w in self.model.get_weights()]
            if self.baseline is None or self._monitor.improves(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            _say(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                _say(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


# ---------------------------------------------------------------------------
# ModelCheckpoint

class ModelCheckpoint(Callback):
    """Save the model (`model.save`) or its weights (`model.save_weights`) during training.

    `filepath` may hold format fields filled with `epoch` (1-based), the
    epoch's logs, and `batch` (1-based) when saving every `save_freq`
    batches: "ckpt-{epoch:02d}-{val_loss:.3f}.fastrnn". Missing directories
    are created. `save_freq`: "epoch", or an int number of batches.

    With `save_best_only`, a file is written only when the monitored value
    improves on the best so far (which starts at `initial_value_threshold`
    when given); when the monitored key is missing it warns and saves anyway,
    as Keras 3 does. The best value persists across `fit` calls.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch", initial_value_threshold=None):
        super().__init__()
        self.filepath = _path(filepath, "filepath")
        self._monitor = _Monitor(monitor, mode)
        self.monitor = monitor
        self.mode = mode
        self.verbose = _verbose(verbose)
        self.save_best_only = _bool(save_best_only, "save_best_only")
        self.save_weights_only = _bool(save_weights_only, "save_weights_only")
        if save_freq != "epoch":
            if isinstance(save_freq, str):
                raise ValueError(f"save_freq: expected 'epoch' or a positive int, got {save_freq!r}")
            save_freq = _int(save_freq, "save_freq", minimum=1)
        self.save_freq = save_freq
        self.best = _real(initial_value_threshold, "initial_value_threshold", optional=True)
        self._epoch = 0
        self._batches_since_save = 0
        self._last_batch = None
        self.saved = []          # paths written, in order

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        # Count batches across epochs (the batch index restarts at 0 each epoch).
        if self._last_batch is None or batch <= self._last_batch:
            self._batches_since_save += batch + 1
        else:
            self._batches_since_save += batch - self._last_batch
        self._last_batch = batch
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save(self._epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def _format(self, epoch, batch, logs):
        fields = dict(logs or {})
        fields["epoch"] = epoch + 1
        if batch is not None and "batch" not in fields:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except (KeyError, IndexError) as e:
            raise KeyError(f"ModelCheckpoint: cannot format filepath {self.filepath!r}: no value for {e} "
                           f"(available: {', '.join(fields)})") from None

    def _should_save(self, epoch, logs, path):
        if not self.save_best_only:
            if self.verbose:
                _say(f"Epoch {epoch + 1}: saving model to {path}")
            return True
        logs = logs or {}
        if logs.get(self.monitor) is None:
            warnings.warn(f"ModelCheckpoint: can save the best model only with {self.monitor!r} in the logs "
                          f"(available: {', '.join(logs) or 'none'}); saving anyway", RuntimeWarning,
                          stacklevel=3)
            return True
        current = _scalar(logs[self.monitor], f"ModelCheckpoint: logs[{self.monitor!r}]")
        previous = "None" if self.best is None else f"{self.best:.5f}"
        if self._monitor.improves(current, self.best):
            if self.verbose:
                _say(f"Epoch {epoch + 1}: {self.monitor} improved from {previous} to {current:.5f}, "
                     f"saving model to {path}")
            self.best = current
            return True
        if self.verbose:
            _say(f"Epoch {epoch + 1}: {self.monitor} did not improve from {previous}")
        return False

    def _save(self, epoch, batch, logs):
        path = self._format(epoch, batch, logs)
        if not self._should_save(epoch, logs, path):
            return
        if os.path.isdir(path):
            raise IsADirectoryError(f"ModelCheckpoint: filepath {path!r} is an existing directory; "
                                    "give a file name")
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        self.saved.append(path)


# ---------------------------------------------------------------------------
# learning rate

class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` when the monitored quantity stops improving.

    After `patience` epochs without an improvement larger than `min_delta`,
    lr becomes max(lr * factor, min_lr) (only while lr > min_lr), then
    `cooldown` epochs pass before epochs without improvement count again.
    Adds the current "learning_rate" to each epoch's logs (as Keras 3).
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__()
        self._monitor = _Monitor(monitor, mode, min_delta)
        self.monitor = monitor
        self.mode = mode
        self.min_delta = self._monitor.min_delta
        self.factor = _real(factor, "factor")
        if not 0.0 <= self.factor < 1.0:
            raise ValueError(f"factor: expected a number in [0, 1) (new_lr = lr * factor), got {factor}")
        self.patience = _int(patience, "patience")
        self.verbose = _verbose(verbose)
        self.cooldown = _int(cooldown, "cooldown")
        self.min_lr = _real(min_lr, "min_lr")
        if self.min_lr < 0:
            raise ValueError(f"min_lr: expected a non-negative number, got {min_lr}")
        self._reset()

    def _reset(self):
        self.best = None
        self.wait = 0
        self.cooldown_counter = 0

    def in_cooldown(self):
        return self.cooldown_counter > 0

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        opt = _optimizer(self.model, "ReduceLROnPlateau")
        if logs is None:
            logs = {}
        logs["learning_rate"] = _learning_rate(opt, "ReduceLROnPlateau")
        current = self._monitor.value(logs, "ReduceLROnPlateau")
        if current is None:
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._monitor.improves(current, self.best):
            self.best = current
            self.wait = 0
            return
        if self.in_cooldown():
            return
        self.wait += 1
        if self.wait < self.patience:
            return
        old_lr = _learning_rate(opt, "ReduceLROnPlateau")
        # Compared in float32, so that a learning rate stored in float32 at min_lr counts as reached.
        if old_lr > np.float32(self.min_lr):
            new_lr = max(old_lr * self.factor, self.min_lr)
            opt.learning_rate = new_lr
            if self.verbose:
                _say(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
            self.cooldown_counter = self.cooldown
            self.wait = 0


def _positional_arity(fn):
    """How many positional arguments `fn` takes (2 when it cannot be told)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 2
    try:
        sig.bind(0, 0.0)
        return 2
    except TypeError:
        pass
    try:
        sig.bind(0)
        return 1
    except TypeError:
        raise TypeError(f"schedule: expected a function schedule(epoch, lr) or schedule(epoch), "
                        f"got {fn!r} with signature {sig}") from None


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of every epoch to `schedule(epoch, lr)`.

    `epoch` is 0-based and `lr` the current learning rate; a one-argument
    `schedule(epoch)` is accepted too. Adds "learning_rate" to each epoch's logs.
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"schedule: expected a callable schedule(epoch, lr), got {type(schedule).__name__}")
        self.schedule = schedule
        self._arity = _positional_arity(schedule)
        self.verbose = _verbose(verbose)

    def on_epoch_begin(self, epoch, logs=None):
        opt = _optimizer(self.model, "LearningRateScheduler")
        lr = _learning_rate(opt, "LearningRateScheduler")
        new_lr = self.schedule(epoch, lr) if self._arity == 2 else self.schedule(epoch)
        if isinstance(new_lr, (bool, np.bool_)) or not isinstance(new_lr, (numbers.Real, np.ndarray)) \
                or np.ndim(new_lr) != 0 or not np.isfinite(new_lr):
            raise ValueError(f"LearningRateScheduler: schedule({epoch}, {lr}) must return a finite float, "
                             f"got {new_lr!r}")
        opt.learning_rate = float(new_lr)
        if self.verbose:
            _say(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(new_lr)}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _learning_rate(_optimizer(self.model, "LearningRateScheduler"),
                                                   "LearningRateScheduler")


# ---------------------------------------------------------------------------
# TerminateOnNaN

class TerminateOnNaN(Callback):
    """Stop training at the first loss that is NaN or infinite.

    `fit` calls `check_loss(epoch, batch, loss)` before the optimizer update
    of each batch: on a non-finite loss it sets `model.stop_training`, records
    `stopped_epoch` and `stopped_batch` (0-based), prints which epoch and
    batch, and returns True so that the update is skipped and the weights stay
    those before the bad batch. `on_train_batch_end` checks `logs["loss"]` as
    Keras does, for loops that do not call `check_loss` (the weights then
    already hold that batch's update). With `raise_error=True` it raises
    RuntimeError instead of stopping gracefully.
    """

    def __init__(self, raise_error=False):
        super().__init__()
        self.raise_error = _bool(raise_error, "raise_error")
        self.stopped_epoch = None
        self.stopped_batch = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self.stopped_epoch = None
        self.stopped_batch = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    @staticmethod
    def _finite(loss):
        try:
            return bool(np.all(np.isfinite(np.asarray(loss, dtype=np.float64))))
        except (TypeError, ValueError):
            raise TypeError(f"TerminateOnNaN: loss: expected a number, got {type(loss).__name__} {loss!r}") \
                from None

    def _terminate(self, epoch, batch, loss, update_skipped):
        if (self.stopped_epoch, self.stopped_batch) == (epoch, batch):
            return          # already reported through check_loss
        message = (f"TerminateOnNaN: invalid loss {loss} at epoch {epoch + 1}, batch {batch + 1} "
                   f"(epoch index {epoch}, batch index {batch})")
        if self.raise_error:
            raise RuntimeError(message)
        self.stopped_epoch, self.stopped_batch = epoch, batch
        if self.model is not None:
            self.model.stop_training = True
        _say(message + ("; its update was skipped" if update_skipped else "") + ", terminating training")

    def check_loss(self, epoch, batch, loss):
        if self._finite(loss):
            return False
        self._terminate(epoch, batch, loss, update_skipped=True)
        return True

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not self._finite(loss):
            self._terminate(self._epoch, batch, loss, update_skipped=False)


# ---------------------------------------------------------------------------
# CSVLogger

class CSVLogger(Callback):
    """Write each epoch's logs as a row of a CSV file.

    The columns are "epoch" (0-based, as Keras) and the sorted log keys of
    the first epoch; when that epoch has no "val_" key, "val_" columns are
    added for every key (filled with "NA" while absent), as Keras does, so
    a later validation fits the header. With `append=True` rows are added to
    an existing file, and the header is written only when the file is empty.
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = _path(filename, "filename")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"separator: expected a one-character str, got {separator!r}")
        self.sep = separator
        self.append = _bool(append, "append")
        self.keys = None
        self._file = None
        self._writer = None
        self._write_header = True

    def on_train_begin(self, logs=None):
        mode = "w"
        self._write_header = True
        if self.append:
            mode = "a"
            if os.path.exists(self.filename):
                with open(self.filename, newline="") as f:
                    self._write_header = not f.readline()
        self._close()
        self._file = open(self.filename, mode, newline="")
        self._writer = None
        self.keys = None

    @staticmethod
    def _cell(value):
        if isinstance(value, str):
            return value
        if isinstance(value, np.ndarray) and value.ndim == 0 or isinstance(value, np.generic):
            return value.item()
        if isinstance(value, (list, tuple, np.ndarray)):
            return "[" + ", ".join(map(str, np.asarray(value).ravel().tolist())) + "]"
        return value

    def on_epoch_end(self, epoch, logs=None):
        if self._file is None:
            self.on_train_begin()
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys += ["val_" + k for k in self.keys]
        if self._writer is None:
            self._writer = csv.writer(self._file, delimiter=self.sep, lineterminator="\n")
            if self._write_header:
                self._writer.writerow(["epoch"] + self.keys)
        self._writer.writerow([epoch] + [self._cell(logs.get(k, "NA")) for k in self.keys])
        self._file.flush()

    def _close(self):
        if self._file is not None and not self._file.closed:
            self._file.close()
        self._file = None

    def on_train_end(self, logs=None):
        self._close()
        self._writer = None


# ---------------------------------------------------------------------------
# LambdaCallback

class LambdaCallback(Callback):
    """A callback from plain functions: `LambdaCallback(on_epoch_end=lambda epoch, logs: ...)`.

    Any hook name of `Callback` may be given; each function takes the hook's arguments.
    """

    _HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
              "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
              "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
              "on_predict_batch_begin", "on_predict_batch_end")

    def __init__(self, **hooks):
        super().__init__()
        for name, fn in hooks.items():
            if name not in self._HOOKS:
                raise TypeError(f"LambdaCallback: unknown hook {name!r}; hooks: {', '.join(self._HOOKS)}")
            if not callable(fn):
                raise TypeError(f"{name}: expected a callable, got {type(fn).__name__}")
            setattr(self, name, fn)
