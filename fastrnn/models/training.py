"""compile / fit / evaluate / predict for `Model` and `Sequential` (a mixin), the data
they take, and the progress bar.

One training step (`train_on_batch`, and each batch of `fit`):

1. every layer's `zero_grads()`;
2. forward with `training=True`, keeping each layer call's ctx;
3. each output's loss `forward_backward(y_true, y_pred, sample_weight, mask)`
   (the mask is the output's mask from `compute_mask`), scaled by its loss
   weight; plus the layers' regularization losses;
4. backward through the graph (reverse topological order), then each layer's
   `add_regularization_grads()`;
5. the callbacks' `check_loss(epoch, batch, loss)`: when one returns True
   (TerminateOnNaN on a non-finite loss) the update is skipped and the weights
   stay exactly as they were;
6. `optimizer.apply(params, grads)` on every trainable weight, in the fixed
   order of `model.trainable_weights`, then every layer's `weights_changed()`
   (Ctrl-C is held back during this step, so an interrupted fit stops at a
   batch boundary with consistent weights).

Logged values follow Keras: "loss" is the mean of the batch losses (total loss,
regularization included) weighted by batch size; metrics accumulate over the
epoch; multi-output models also log "<output>_loss" and "<output>_<metric>";
validation values get a "val_" prefix.

Data: arrays (one per input/output, a list, or a dict by input/output name),
or an iterable of batches `(x, y)` / `(x, y, sample_weight)` (a generator,
a list of tuples, any object with `__iter__`). With `steps_per_epoch` each epoch
takes that many batches from one running iterator (restarted when an iterable
that can restart runs out); without it each epoch runs the iterable to its end
(a generator, which cannot restart, only serves the first epoch).
"""
import copy
import math
import numbers
import signal
import sys
import threading
import time
import warnings

import numpy as np

from .. import callbacks as callbacks_module
from .. import losses as losses_module
from .. import metrics as metrics_module
from .. import optimizers as optimizers_module

__all__ = ["TrainingMixin", "ProgressBar"]

# Streams of a seed s (numpy.random.default_rng([s, stream, ...])), see fastrnn.models.model.
INIT_STREAM, SHUFFLE_STREAM, MASK_STREAM = 1, 2, 3


def _int_arg(value, name, minimum=0, optional=False):
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int{' or None' if optional else ''}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


def _verbose_arg(value):
    if value == "auto":
        return 1
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    v = _int_arg(value, "verbose")
    if v > 2:
        raise ValueError(f"verbose: expected 0, 1, 2 or 'auto', got {value!r}")
    return v


# ---------------------------------------------------------------------------
# Progress bar

def _format_value(v):
    v = float(v)
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.4e}"
    return f"{v:.4f}"


def _format_time(seconds):
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{int(round(seconds))}s"


def _format_per_step(seconds):
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


class ProgressBar:
    """A one-line progress bar drawn with '\\r' on a stream (sys.stdout by default).

    `update(step, values)` redraws it (at most every `interval` seconds, except
    the last step): `step/target [====>....] - ETA: 3s - loss: 0.1234 - ...`;
    `finish(values)` draws the final line with the elapsed time and time per
    step and ends the line. With verbose=2 nothing is drawn until `finish`,
    which writes one line. `target=None` (unknown number of steps) shows the
    step count only.
    """

    def __init__(self, target, verbose=1, width=30, interval=0.05, stream=None, prefix=""):
        self.target = target
        self.verbose = verbose
        self.width = width
        self.interval = interval
        self.stream = stream
        self.prefix = prefix
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._last_len = 0
        self.step = 0

    def _write(self, text):
        stream = self.stream or sys.stdout
        stream.write(text)
        stream.flush()

    def _values(self, values):
        return "".join(f" - {k}: {_format_value(v)}" for k, v in (values or {}).items()
                       if isinstance(v, (numbers.Real, np.floating)))

    def _bar(self, step):
        if self.target is None:
            return f"{step}/Unknown"
        n = len(str(self.target))
        done = int(self.width * step / self.target) if self.target else self.width
        if 0 < done < self.width:
            bar = "=" * (done - 1) + ">" + "." * (self.width - done)
        else:
            bar = "=" * done + "." * (self.width - done)
        return f"{step:>{n}}/{self.target} [{bar}]"

    def update(self, step, values=None):
        self.step = step
        if self.verbose != 1:
            return
        now = time.perf_counter()
        if self.target is not None and step >= self.target:
            return                        # finish() draws the last step
        if now - self._last_draw < self.interval:
            return
        self._last_draw = now
        elapsed = now - self.start
        if self.target is not None and step < self.target and step > 0:
            eta = f" - ETA: {_format_time(elapsed / step * (self.target - step))}"
        else:
            eta = f" - {_format_time(elapsed)}"
        line = self.prefix + self._bar(step) + eta + self._values(values)
        pad = " " * max(0, self._last_len - len(line))
        self._last_len = len(line)
        self._write("\r" + line + pad)

    def finish(self, values=None):
        elapsed = time.perf_counter() - self.start
        steps = max(self.step, 1)
        timing = f" - {_format_time(elapsed)} {_format_per_step(elapsed / steps)}"
        if self.verbose == 1:
            target = self.target if self.target is not None else self.step
            self.target = target
            line = self.prefix + self._bar(self.step) + timing + self._values(values)
            pad = " " * max(0, self._last_len - len(line))
            self._write("\r" + line + pad + "\n")
        elif self.verbose == 2:
            self._write(self.prefix + timing[3:] + self._values(values) + "\n")


# ---------------------------------------------------------------------------
# Data

class _ArrayData:
    """Arrays with N samples, cut into batches (shuffled or in order)."""

    def __init__(self, xs, ys, sws, batch_size, who):
        sizes = {a.shape[0] for a in xs}
        sizes |= {a.shape[0] for a in ys if a is not None}
        sizes |= {a.shape[0] for a in sws if a is not None}
        if len(sizes) != 1:
            raise ValueError(f"{who}: x, y and sample_weight must have the same number of samples (first "
                             f"dimension), got {sorted(sizes)}")
        self.n = sizes.pop()
        if self.n == 0:
            raise ValueError(f"{who}: the data has no samples")
        self.xs, self.ys, self.sws = xs, ys, sws
        self.batch_size = batch_size
        self.steps = math.ceil(self.n / batch_size)

    def split(self, fraction, who):
        """(training part, validation part): the last `fraction` of the samples validate (as Keras)."""
        at = int(math.floor(self.n * (1.0 - fraction)))
        if at <= 0 or at >= self.n:
            raise ValueError(f"{who}: validation_split={fraction} leaves {at} of {self.n} samples for training "
                             f"and {self.n - at} for validation; both need at least one")

        def cut(arrays, sl):
            return [None if a is None else a[sl] for a in arrays]

        train = _ArrayData(cut(self.xs, slice(0, at)), cut(self.ys, slice(0, at)), cut(self.sws, slice(0, at)),
                           self.batch_size, who)
        val = _ArrayData(cut(self.xs, slice(at, None)), cut(self.ys, slice(at, None)),
                         cut(self.sws, slice(at, None)), self.batch_size, who)
        return train, val

    def batches(self, rng=None):
        """Yield (xs, ys, sws) for each of the `steps` batches; `rng` shuffles the sample order."""
        order = None if rng is None else rng.permutation(self.n)
        bs = self.batch_size
        for b in range(self.steps):
            start, stop = b * bs, min((b + 1) * bs, self.n)
            idx = slice(start, stop) if order is None else order[start:stop]
            yield ([a[idx] for a in self.xs], [None if a is None else a[idx] for a in self.ys],
                   [None if a is None else a[idx] for a in self.sws])


class _IterableData:
    """Batches from an iterable/generator of (x, y[, sample_weight]) tuples (or x alone for predict)."""

    def __init__(self, source, steps, unpack, who):
        self.source = source
        self.steps = steps
        self.unpack = unpack
        self.who = who
        self._iterator = None
        self._used = False
        try:
            self.restartable = iter(source) is not source
        except TypeError:
            raise TypeError(f"{who}: expected arrays or an iterable of batches, got {type(source).__name__}") \
                from None

    def batches(self, rng=None):
        """Yield the unpacked batches of one epoch (see the module docstring)."""
        if self.steps is None:
            if self._used and not self.restartable:
                return                          # a generator serves one pass only
            self._used = True
            for item in self.source:
                yield self.unpack(item)
            return
        taken, restarted = 0, False
        while taken < self.steps:
            if self._iterator is None:
                self._iterator = iter(self.source)
            try:
                item = next(self._iterator)
            except StopIteration:
                self._iterator = None
                if not self.restartable or restarted:
                    return                      # nothing more to give
                restarted = True
                continue
            restarted = False
            taken += 1
            yield self.unpack(item)


def _is_batch_source(x, has_y, for_predict):
    """Is `x` an iterable of batches rather than array data?

    fit/evaluate: anything but an array or a dict when y is None (the batches carry y);
    predict: an iterable that is not an array, a list, a tuple or a dict."""
    if x is None or isinstance(x, (np.ndarray, dict, numbers.Number, str, bytes)):
        return False
    if for_predict:
        return not isinstance(x, (list, tuple)) and hasattr(x, "__iter__")
    return not has_y


class _sigint_deferred:
    """Hold back Ctrl-C (SIGINT) while the weights are being updated: a KeyboardInterrupt
    arriving then is raised right after the update, so an interrupted `fit` stops at a
    batch boundary with consistent weights. Only in the main thread, and only while
    Python's own SIGINT handler is installed (a program's own handler is left alone)."""

    __slots__ = ("_old", "_pending")

    def __enter__(self):
        self._old = None
        self._pending = False
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._old = signal.signal(signal.SIGINT, self._hold)
        return self

    def _hold(self, signum, frame):
        self._pending = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            if self._pending and exc[0] is None:
                raise KeyboardInterrupt
        return False


def _flat_specs(spec):
    """Every leaf of a compile argument (a value, a list, a list of lists, a dict)."""
    if spec is None:
        return []
    if isinstance(spec, dict) and "class_name" not in spec:      # per output (a config dict is a leaf)
        return [leaf for v in spec.values() for leaf in _flat_specs(v)]
    if isinstance(spec, (list, tuple)):
        return [leaf for v in spec for leaf in _flat_specs(v)]
    return [spec]


# ---------------------------------------------------------------------------
# The mixin

class TrainingMixin:
    """compile, fit, evaluate, predict and the *_on_batch calls (see the module docstring)."""

    def _init_training(self):
        self.optimizer = None
        self.compiled = False
        self.stop_training = False
        self.history = None
        self._compile_args = None
        self._loss_fns = None
        self._trained = False
        self._pending_init_seed = None

    # ---- compile ---------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None, weighted_metrics=None):
        """Choose the optimizer, the loss(es) and the metrics.

        `optimizer`: an Optimizer, its name or config. `loss`: a Loss, a name
        ("mse", "sparse_categorical_crossentropy", ...), or one per output (list
        or dict by output name; None leaves an output untrained). `metrics` and
        `weighted_metrics` (which receive `sample_weight`): a list of names or
        Metric objects for every output, or one list per output (list of lists,
        or dict by output name); "accuracy" picks the accuracy that fits the
        output's loss. `loss_weights`: one float per output (list or dict).
        """
        optimizer = optimizers_module.get(optimizer)
        # fail now on a bad name, even when the outputs (and so the per-output lists) are not known yet
        for spec in _flat_specs(loss):
            losses_module.get(spec)
        for spec in _flat_specs(metrics) + _flat_specs(weighted_metrics):
            metrics_module.get(spec)
        self._compile_args = dict(loss=loss, metrics=metrics, loss_weights=loss_weights,
                                  weighted_metrics=weighted_metrics)
        self.optimizer = optimizer
        self.compiled = True
        self._loss_fns = None
        if self.built:
            self._resolve_compile()

    def _require_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(f"{self.name}: compile() the model before {what}")

    def _per_output(self, value, what, allow_list_value=False):
        """A list with one entry per output from a single value, a list or a dict by output name."""
        n, names = len(self.outputs), self.output_names
        if isinstance(value, dict) and "class_name" not in value:      # by output name (not a config dict)
            unknown = sorted(set(value) - set(names))
            if unknown:
                raise ValueError(f"{self.name}: {what} has keys {unknown} that are not output names {names}")
            return [value.get(k) for k in names]
        if isinstance(value, (list, tuple)) and not allow_list_value:
            if len(value) != n:
                raise ValueError(f"{self.name}: {what} expected {n} entries (one per output: {names}), "
                                 f"got {len(value)}")
            return list(value)
        return [value] * n

    def _resolve_compile(self):
        """Turn the compile arguments into one loss, weight and metric list per output."""
        args = self._compile_args
        n = len(self.outputs)
        loss_specs = self._per_output(args["loss"], "loss")
        self._loss_fns = [losses_module.get(l) for l in loss_specs]
        if all(l is None for l in self._loss_fns):
            raise ValueError(f"{self.name}: compile() needs a loss for at least one output")
        weights = self._per_output(args["loss_weights"], "loss_weights")
        self._loss_weights = []
        for i, w in enumerate(weights):
            w = 1.0 if w is None else w
            if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w):
                raise ValueError(f"{self.name}: loss_weights[{i}] expected a finite number, got {w!r}")
            self._loss_weights.append(float(w))

        def resolve_metrics(spec, what):
            if spec is None:
                per = [[] for _ in range(n)]
            elif isinstance(spec, dict):
                per = self._per_output(spec, what)
                per = [[] if v is None else list(v) if isinstance(v, (list, tuple)) else [v] for v in per]
            elif isinstance(spec, (list, tuple)):
                if len(spec) == n and all(isinstance(v, (list, tuple)) or v is None for v in spec):
                    per = [[] if v is None else list(v) for v in spec]
                else:
                    per = [list(spec) for _ in range(n)]
            else:
                per = [[spec] for _ in range(n)]
            out = []
            for i, specs in enumerate(per):
                ms = []
                for s in specs:
                    m = metrics_module.get(s, loss=self._loss_fns[i], output_shape=self.outputs[i].shape)
                    if any(m is other for other in ms) or any(m is o for other in out for o in other):
                        m = copy.deepcopy(m)
                    m.reset_state()
                    ms.append(m)
                out.append(ms)
            return out

        self._metric_fns = resolve_metrics(args["metrics"], "metrics")
        self._weighted_metric_fns = resolve_metrics(args["weighted_metrics"], "weighted_metrics")
        self._make_trackers()

    def _make_trackers(self):
        n = len(self.outputs)
        self._loss_tracker = metrics_module.Mean(name="loss")
        self._output_loss_trackers = [metrics_module.Mean(name=f"{self.output_names[i]}_loss")
                                      if n > 1 and self._loss_fns[i] is not None else None for i in range(n)]
        names, taken = [], {"loss"} | {t.name for t in self._output_loss_trackers if t is not None}
        for i in range(n):
            for ms in (self._metric_fns[i], self._weighted_metric_fns[i]):
                for m in ms:
                    base = m.name if n == 1 else f"{self.output_names[i]}_{m.name}"
                    name, k = base, 1
                    while name in taken:
                        name, k = f"{base}_{k}", k + 1
                    taken.add(name)
                    names.append((name, m))
        self._metric_names = names

    def _ensure_compiled(self):
        if self._loss_fns is None:
            self._resolve_compile()

    def _reset_metrics(self):
        self._loss_tracker.reset_state()
        for t in self._output_loss_trackers:
            if t is not None:
                t.reset_state()
        for _, m in self._metric_names:
            m.reset_state()

    def _logs(self):
        logs = {"loss": self._loss_tracker.result()}
        for t in self._output_loss_trackers:
            if t is not None:
                logs[t.name] = t.result()
        for name, m in self._metric_names:
            logs[name] = m.result()
        return logs

    @property
    def metrics_names(self):
        """The names `evaluate` returns its values under, in order."""
        if self._loss_fns is None:
            return ["loss"]
        return list(self._logs())

    # ---- data -------------------------------------------------------------------------
    def _standardize_targets(self, y, what="y", allow_missing=False):
        """One array (or None where the output has no loss) per output."""
        n, names = len(self.outputs), self.output_names
        if y is None:
            if allow_missing:
                return [None] * n
            raise ValueError(f"{self.name}: {what} is required")
        if isinstance(y, dict):
            unknown = sorted(set(y) - set(names))
            if unknown:
                raise ValueError(f"{self.name}: {what} has keys {unknown} that are not output names {names}")
            items = [y.get(k) for k in names]
        elif isinstance(y, (list, tuple)) and n > 1:
            if len(y) != n:
                raise ValueError(f"{self.name}: {what} expected {n} arrays (one per output: {names}), got {len(y)}")
            items = list(y)
        else:
            items = [y]
        out = []
        for i, v in enumerate(items):
            if v is None:
                if self._loss_fns is not None and self._loss_fns[i] is not None and not allow_missing:
                    raise ValueError(f"{self.name}: {what} for output {names[i]!r} is missing")
                out.append(None)
                continue
            arr = np.asarray(v)
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"{self.name}: {what} for output {names[i]!r} expected a real-valued array, "
                                f"got dtype {arr.dtype}")
            if arr.ndim == 0:
                raise ValueError(f"{self.name}: {what} for output {names[i]!r} expected an array with a batch "
                                 "axis, got a scalar")
            out.append(arr)
        return out

    def _standardize_weights(self, sample_weight):
        n = len(self.outputs)
        if sample_weight is None:
            return [None] * n
        if isinstance(sample_weight, dict) or (isinstance(sample_weight, (list, tuple)) and n > 1
                                               and len(sample_weight) == n
                                               and not all(isinstance(v, numbers.Number) for v in sample_weight)):
            items = self._per_output(sample_weight, "sample_weight")
        else:
            items = [sample_weight] * n
        out = []
        for v in items:
            if v is None:
                out.append(None)
                continue
            arr = np.asarray(v)
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"{self.name}: sample_weight expected a real-valued array, got dtype {arr.dtype}")
            out.append(arr)
        return out

    def _unpack_train_batch(self, item):
        if not isinstance(item, tuple) or len(item) not in (2, 3):
            raise ValueError(f"{self.name}: each batch of a generator must be a tuple (x, y) or "
                             f"(x, y, sample_weight), got {type(item).__name__}"
                             + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else ""))
        x, y = item[0], item[1]
        sw = item[2] if len(item) == 3 else None
        xs = self._standardize_x(x)
        self._ensure_built(xs)
        self._ensure_compiled()
        return xs, self._standardize_targets(y), self._standardize_weights(sw)

    def _unpack_predict_batch(self, item):
        if isinstance(item, tuple):
            item = item[0]
        xs = self._standardize_x(item)
        self._ensure_built(xs)
        return xs, None, None

    def _make_data(self, x, y, sample_weight, batch_size, steps, who, for_predict=False):
        if batch_size is None:
            batch_size = 32
        batch_size = _int_arg(batch_size, "batch_size", minimum=1)
        if _is_batch_source(x, y is not None, for_predict):
            if y is not None or sample_weight is not None:
                raise ValueError(f"{self.name}.{who}: with a generator or iterable of batches, y and "
                                 "sample_weight come from the batches; pass y=None")
            unpack = self._unpack_predict_batch if for_predict else self._unpack_train_batch
            return _IterableData(x, steps, unpack, f"{self.name}.{who}")
        if x is None:
            raise ValueError(f"{self.name}.{who}: x is required")
        xs = self._standardize_x(x)
        self._ensure_built(xs)
        if for_predict:
            ys, sws = [None] * len(self.outputs), [None] * len(self.outputs)
        else:
            self._ensure_compiled()
            ys = self._standardize_targets(y)
            sws = self._standardize_weights(sample_weight)
        data = _ArrayData(xs, ys, sws, batch_size, f"{self.name}.{who}")
        if steps is not None:
            data.steps = min(data.steps, steps)
        return data

    # ---- one batch ----------------------------------------------------------------------
    def _loss_and_grads(self, xs, ys, sws, training=True, need_grads=True):
        """Steps 1-4 of a training step (see the module docstring) on one batch.

        Returns (total loss, per-output losses, predictions, output masks); with
        `need_grads` every layer's `grads` then hold the gradient of the total loss
        (regularization included) with respect to its weights.
        """
        self._ensure_compiled()
        layers = self._weighted_layers()
        if need_grads:
            for layer in layers:
                layer.zero_grads()
        preds, masks, ctxs = self._forward(xs, training=training, keep_ctx=need_grads)
        total, d_outs, per_output = 0.0, [], []
        for i, loss in enumerate(self._loss_fns):
            if loss is None or ys[i] is None:
                d_outs.append(None)
                per_output.append(None)
                continue
            w = self._loss_weights[i]
            if need_grads:
                value, grad = loss.forward_backward(ys[i], preds[i], sample_weight=sws[i], mask=masks[i])
                if w != 1.0:
                    grad *= grad.dtype.type(w)
                d_outs.append(grad)
            else:
                value = loss(ys[i], preds[i], sample_weight=sws[i], mask=masks[i])
            per_output.append(value)
            total += w * value
        for layer in layers:
            if layer._regularizers:
                total += layer.regularization_loss()
        if need_grads:
            self._backward(ctxs, d_outs)
            for layer in layers:
                if layer._regularizers:
                    layer.add_regularization_grads()
        return total, per_output, preds, masks

    def _run_batch(self, xs, ys, sws, training, callbacks=None, epoch=0, batch=0):
        """One batch: forward (and, training, backward and the update); updates the trackers."""
        self._check_inputs(xs)
        n = xs[0].shape[0]
        total, per_output, preds, masks = self._loss_and_grads(xs, ys, sws, training=training,
                                                               need_grads=training)
        if training:
            skip = callbacks.check_loss(epoch, batch, total) if callbacks is not None else False
            if not skip:
                params, grads = self._trainable_pairs()
                with _sigint_deferred():             # Ctrl-C never leaves half an update
                    if params:
                        self.optimizer.apply(params, grads)
                    for layer in self._weighted_layers():
                        layer.weights_changed()
                if not self._trained:
                    self._trained = True
                    self._forget_unseeded_marks()
        self._loss_tracker.update_state(total, sample_weight=n)
        for i, t in enumerate(self._output_loss_trackers):
            if t is not None and per_output[i] is not None:
                t.update_state(per_output[i], sample_weight=n)
        for i in range(len(self.outputs)):
            if ys[i] is None:
                continue
            for m in self._metric_fns[i]:
                m.update_state(ys[i], preds[i], mask=masks[i])
            for m in self._weighted_metric_fns[i]:
                m.update_state(ys[i], preds[i], sample_weight=sws[i], mask=masks[i])
        return preds

    # ---- fit ------------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, initial_epoch=0, sample_weight=None, seed=None,
            steps_per_epoch=None, validation_steps=None, validation_batch_size=None, validation_freq=1):
        """Train for `epochs` epochs (counting from `initial_epoch`); returns the `History`.

        x, y: arrays (or lists/dicts of arrays for several inputs/outputs), or x an
        iterable of `(x, y)` / `(x, y, sample_weight)` batches with y=None.
        validation_split: the last fraction of the array data validates (not shuffled in).
        validation_data: `(x, y)` or `(x, y, sample_weight)` arrays, or an iterable of batches.
        shuffle: reshuffle the array data every epoch (set False for stateful models).
        seed: see `fastrnn.models.model` (shuffling, dropout masks, untouched random weights).
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.
        """
        from .model import check_seed
        self._require_compiled("fit")
        epochs = _int_arg(epochs, "epochs")
        initial_epoch = _int_arg(initial_epoch, "initial_epoch")
        verbose = _verbose_arg(verbose)
        seed = check_seed(seed)
        steps_per_epoch = _int_arg(steps_per_epoch, "steps_per_epoch", 1, optional=True)
        validation_steps = _int_arg(validation_steps, "validation_steps", 1, optional=True)
        validation_freq = _int_arg(validation_freq, "validation_freq", 1)
        if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real) \
                or not 0 <= validation_split < 1:
            raise ValueError(f"validation_split: expected a float in [0, 1), got {validation_split!r}")
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle: expected a bool, got {shuffle!r}")
        train_seed = seed if seed is not None else self.seed

        self._pending_init_seed = seed          # a model that builds from the data draws its weights from it
        try:
            return self._fit(x, y, sample_weight, batch_size, epochs, verbose, callbacks, validation_split,
                             validation_data, shuffle, initial_epoch, seed, train_seed, steps_per_epoch,
                             validation_steps, validation_batch_size, validation_freq)
        finally:
            self._pending_init_seed = None

    def _fit(self, x, y, sample_weight, batch_size, epochs, verbose, callbacks, validation_split, validation_data,
             shuffle, initial_epoch, seed, train_seed, steps_per_epoch, validation_steps, validation_batch_size,
             validation_freq):
        data = self._make_data(x, y, sample_weight, batch_size, steps_per_epoch, "fit")
        val = None
        if validation_split:
            if not isinstance(data, _ArrayData):
                raise ValueError(f"{self.name}.fit: validation_split needs array data; with a generator pass "
                                 "validation_data")
            data, val = data.split(float(validation_split), f"{self.name}.fit")
        if validation_data is not None:
            if val is not None:
                warnings.warn("fit: validation_data is given, so validation_split is ignored", stacklevel=3)
            val = self._validation_data(validation_data, validation_batch_size or batch_size, validation_steps)
        if seed is not None and self.built:
            self._redraw_unseeded(seed)

        cbs = callbacks_module.CallbackList(callbacks, model=self, add_history=True,
                                            params={"epochs": epochs, "steps": data.steps, "verbose": verbose})
        self.stop_training = False
        unseeded_rng = np.random.default_rng() if train_seed is None else None
        cbs.on_train_begin()
        epoch_logs = {}
        for epoch in range(initial_epoch, epochs):
            if self._loss_fns is not None:
                self._reset_metrics()
            cbs.on_epoch_begin(epoch)
            if train_seed is not None:
                self._seed_masks(train_seed, epoch)
                rng = np.random.default_rng([train_seed, SHUFFLE_STREAM, epoch]) if shuffle else None
            else:
                rng = unseeded_rng if shuffle else None
            if verbose == 1:
                sys.stdout.write(f"Epoch {epoch + 1}/{epochs}\n")
            bar = ProgressBar(data.steps, verbose=verbose,
                              prefix=f"Epoch {epoch + 1}/{epochs} - " if verbose == 2 else "")
            logs = {}
            steps_done = 0
            for step, (xs, ys, sws) in enumerate(data.batches(rng if isinstance(data, _ArrayData) else None)):
                cbs.on_train_batch_begin(step)
                self._run_batch(xs, ys, sws, training=True, callbacks=cbs, epoch=epoch, batch=step)
                logs = self._logs()
                steps_done = step + 1
                cbs.on_train_batch_end(step, logs)
                bar.update(steps_done, logs)
                if self.stop_training:
                    break
            if steps_done == 0:
                if verbose == 1:
                    sys.stdout.write("\n")
                warnings.warn(f"{self.name}.fit: the data ran out at epoch {epoch + 1}: the generator gave no "
                              "batch (pass steps_per_epoch, or an iterable that can restart)", RuntimeWarning,
                              stacklevel=3)
                break
            epoch_logs = dict(self._logs())
            if val is not None and not self.stop_training and (epoch + 1) % validation_freq == 0:
                val_logs = self._test_loop(val)
                epoch_logs.update({"val_" + k: v for k, v in val_logs.items()})
            bar.finish(epoch_logs)
            cbs.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        cbs.on_train_end(epoch_logs)
        self.history = cbs.history
        return cbs.history

    def _validation_data(self, validation_data, batch_size, steps):
        if isinstance(validation_data, tuple) and len(validation_data) in (2, 3):
            xv, yv = validation_data[0], validation_data[1]
            swv = validation_data[2] if len(validation_data) == 3 else None
            return self._make_data(xv, yv, swv, batch_size, steps, "fit (validation_data)")
        if isinstance(validation_data, (tuple, np.ndarray, dict)) or (
                isinstance(validation_data, list) and not all(isinstance(b, tuple) for b in validation_data)):
            raise ValueError(f"{self.name}.fit: validation_data expected (x, y) or (x, y, sample_weight), or an "
                             f"iterable of such batches, got {type(validation_data).__name__}"
                             + (f" of length {len(validation_data)}" if isinstance(validation_data, (tuple, list))
                                else ""))
        return self._make_data(validation_data, None, None, batch_size, steps, "fit (validation_data)")

    def _test_loop(self, data, callbacks=None, bar=None):
        """Run `data` in inference mode; returns the logs. The training trackers are saved and restored,
        so validation inside fit does not disturb the epoch's running values."""
        saved = self._save_trackers()
        self._reset_metrics()
        try:
            step = 0
            for step, (xs, ys, sws) in enumerate(data.batches(None), start=1):
                if callbacks is not None:
                    callbacks.on_test_batch_begin(step - 1)
                self._run_batch(xs, ys, sws, training=False)
                logs = self._logs()
                if callbacks is not None:
                    callbacks.on_test_batch_end(step - 1, logs)
                if bar is not None:
                    bar.update(step, logs)
            if step == 0:
                raise ValueError(f"{self.name}: the evaluation data gave no batch (a generator serves one pass: "
                                 "give steps, or an iterable that can restart)")
            return self._logs()
        finally:
            self._restore_trackers(saved)

    def _save_trackers(self):
        objs = [self._loss_tracker] + [t for t in self._output_loss_trackers if t is not None] + \
               [m for _, m in self._metric_names]
        return [(o, copy.copy(vars(o))) for o in objs]

    @staticmethod
    def _restore_trackers(saved):
        for o, state in saved:
            vars(o).clear()
            vars(o).update(state)

    # ---- evaluate / predict ---------------------------------------------------------------
    def evaluate(self, x=None, y=None, batch_size=None, verbose=1, sample_weight=None, steps=None, callbacks=None,
                 return_dict=False):
        """The loss (and metrics) on the data, in inference mode.

        Returns the loss as a float when there is nothing else to report, else the list
        `[loss, *metrics]` (names in `metrics_names`), or a dict with `return_dict=True`.
        """
        self._require_compiled("evaluate")
        verbose = _verbose_arg(verbose)
        steps = _int_arg(steps, "steps", 1, optional=True)
        data = self._make_data(x, y, sample_weight, batch_size, steps, "evaluate")
        cbs = callbacks_module.CallbackList(callbacks, model=self,
                                            params={"steps": data.steps, "verbose": verbose})
        cbs.on_test_begin()
        bar = ProgressBar(data.steps, verbose=verbose)
        logs = self._test_loop(data, callbacks=cbs, bar=bar)
        bar.finish(logs)
        cbs.on_test_end(logs)
        return self._format_results(logs, return_dict)

    @staticmethod
    def _format_results(logs, return_dict):
        if return_dict:
            return dict(logs)
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose=0, steps=None, callbacks=None):
        """The model's outputs on `x` (arrays, or an iterable of batches), in batches, in
        inference mode: one array, or a list for several outputs."""
        verbose = _verbose_arg(verbose)
        steps = _int_arg(steps, "steps", 1, optional=True)
        data = self._make_data(x, None, None, batch_size, steps, "predict", for_predict=True)
        cbs = callbacks_module.CallbackList(callbacks, model=self,
                                            params={"steps": data.steps, "verbose": verbose})
        cbs.on_predict_begin()
        bar = ProgressBar(data.steps, verbose=verbose)
        chunks = None
        step = 0
        for step, (xs, _, _) in enumerate(data.batches(None), start=1):
            cbs.on_predict_batch_begin(step - 1)
            self._check_inputs(xs)
            outs, _, _ = self._forward(xs, training=False)
            if chunks is None:
                chunks = [[] for _ in outs]
            for c, o in zip(chunks, outs):
                c.append(o)
            cbs.on_predict_batch_end(step - 1, {"outputs": outs})
            bar.update(step)
        if chunks is None:
            raise ValueError(f"{self.name}.predict: the data gave no batch")
        bar.finish()
        cbs.on_predict_end()
        outs = [np.concatenate(c, axis=0) if len(c) > 1 else c[0] for c in chunks]
        return outs[0] if self._single_output else outs

    # ---- one batch, by hand ---------------------------------------------------------------
    def train_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """One training step on one batch; returns its loss (and metrics: a list, or a dict)."""
        self._require_compiled("train_on_batch")
        xs = self._standardize_x(x)
        self._ensure_built(xs)
        self._ensure_compiled()
        ys, sws = self._standardize_targets(y), self._standardize_weights(sample_weight)
        self._reset_metrics()
        self._run_batch(xs, ys, sws, training=True)
        return self._format_results(self._logs(), return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """The loss (and metrics) on one batch, in inference mode."""
        self._require_compiled("test_on_batch")
        xs = self._standardize_x(x)
        self._ensure_built(xs)
        self._ensure_compiled()
        ys, sws = self._standardize_targets(y), self._standardize_weights(sample_weight)
        self._reset_metrics()
        self._run_batch(xs, ys, sws, training=False)
        return self._format_results(self._logs(), return_dict)

    def predict_on_batch(self, x):
        """The outputs on one batch (no batching), in inference mode."""
        return self(x, training=False)
