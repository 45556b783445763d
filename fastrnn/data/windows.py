"""Time series cut into supervised windows, and a chronological split that
cannot leak future values into training.

    X, Y = sliding_windows(series, window=24, horizon=1)
    (X_tr, Y_tr), (X_va, Y_va), (X_te, Y_te) = windows_split(series, 24, 1, val=0.1, test=0.1)

Shapes. A series is `(T,)` (one variable) or `(T, F)` (F variables). A 1-d
series is read as `(T, 1)`, so windows are always 3-d and feed a recurrent
layer directly: `X` is `(N, window, F)` and `Y` is `(N, horizon, K)` where K
is the number of target columns (all F by default; `target=` picks some).

Window i starts at `s = i * stride`: `X[i] = series[s : s + window]` and
`Y[i] = series[s + window : s + window + horizon, target]`. Windows never run
past the end: `N = (T - window - horizon) // stride + 1`.

The no-leakage rule of `windows_split`. The series is first split in time
order, `[0, a)` train, `[a, b)` validation, `[b, T)` test, and each part is
windowed on its own:

- every training window (inputs and targets) lies inside `[0, a)`: no training
  window sees a validation or test value;
- every validation target lies in `[a, b)` and every test target in `[b, T)`,
  so a split's targets never appear in the windows of an earlier split;
- with `context=True` (the default) a validation window may *start* before
  `a`: its inputs may be the last `window` training values (the past, known
  when forecasting time `a`), which lets the first validation target be
  `series[a]`. Test windows likewise may read validation values as inputs.
  With `context=False` each part is fully self-contained (no window touches a
  value of another part), at the cost of `window` unusable targets at the
  start of each later part.

Statistics used to scale the series (mean, std) should come from the training
part only: `chronological_split` gives it.
"""
import numbers

import numpy as np

from ._checks import check_bool, check_int

__all__ = ["sliding_windows", "chronological_split", "windows_split", "shifted_windows"]


def _as_series(series, name="series"):
    arr = np.asarray(series)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers (bool, int or float), got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim != 2:
        raise ValueError(f"{name} must be 1-d (T,) or 2-d (T, F), got shape {arr.shape}")
    return arr


def _target_columns(target, F):
    """Column indices (a list) that `target` selects from F columns."""
    if target is None:
        return list(range(F))
    single = isinstance(target, numbers.Integral) and not isinstance(target, (bool, np.bool_))
    cols = [target] if single else target
    try:
        cols = list(cols)
    except TypeError:
        raise TypeError(f"target must be None, an int or a list of ints, got {type(target).__name__}") from None
    if not cols:
        raise ValueError("target must select at least one column, got an empty list")
    out = []
    for c in cols:
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, numbers.Integral):
            raise TypeError(f"target must be None, an int or a list of ints, got an element {c!r}")
        if not -F <= c < F:
            raise ValueError(f"target column {c} is out of range for a series with F={F} columns")
        out.append(int(c) % F)
    if len(set(out)) != len(out):
        raise ValueError(f"target lists a column twice: {list(cols)}")
    return out


def _windows(arr, window, horizon, stride, cols, offset=0):
    """Windows of a validated (T, F) array; index of each window's first target (+ offset)."""
    T, F = arr.shape
    L = window + horizon
    N = (T - L) // stride + 1 if T >= L else 0
    if N == 0:
        X = np.empty((0, window, F), dtype=arr.dtype)
        Y = np.empty((0, horizon, len(cols)), dtype=arr.dtype)
    else:
        # (T-L+1, F, L) view: every window of L steps; keep every stride-th one
        view = np.lib.stride_tricks.sliding_window_view(arr, L, axis=0)[::stride]
        view = view.transpose(0, 2, 1)                 # (N, L, F)
        X = np.ascontiguousarray(view[:, :window, :])
        Y = np.ascontiguousarray(view[:, window:, :][:, :, cols])
    index = offset + window + stride * np.arange(N, dtype=np.int64)
    return X, Y, index


def sliding_windows(series, window, horizon=1, stride=1, *, target=None, return_index=False):
    """Cut a series into (input window, following targets) pairs.

    Args:
        series: `(T,)` or `(T, F)` numbers; a 1-d series is read as `(T, 1)`.
        window: steps of input per sample (>= 1).
        horizon: steps to predict after each window (>= 1).
        stride: steps between the starts of consecutive windows (>= 1).
        target: columns to predict: None (all F), an int, or a list of ints
            (negative ones count from the end).
        return_index: also return, for each window, the index in `series` of
            its first target step.

    Returns:
        `(X, Y)` (or `(X, Y, index)`): `X (N, window, F)`, `Y (N, horizon, K)`
        in the series' dtype, fresh C-contiguous arrays (not views), with
        `X[i] = series[s:s+window]`, `Y[i] = series[s+window:s+window+horizon, target]`,
        `s = i * stride`, `index[i] = s + window`.

    Raises ValueError when the series is shorter than `window + horizon`.
    """
    window = check_int("window", window, 1)
    horizon = check_int("horizon", horizon, 1)
    stride = check_int("stride", stride, 1)
    return_index = check_bool("return_index", return_index)
    arr = _as_series(series)
    T, F = arr.shape
    if T < window + horizon:
        raise ValueError(f"series has T={T} steps; window={window} + horizon={horizon} "
                         f"needs at least {window + horizon}")
    cols = _target_columns(target, F)
    X, Y, index = _windows(arr, window, horizon, stride, cols)
    return (X, Y, index) if return_index else (X, Y)


def _split_size(name, value, T):
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a fraction in [0, 1) or a number of steps, got {value!r}")
    if isinstance(value, numbers.Integral):
        n = int(value)
        if not 0 <= n < T:
            raise ValueError(f"{name}={n} steps is out of range for a series of T={T} steps (0 <= {name} < T)")
        return n
    if isinstance(value, numbers.Real):
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"{name} as a fraction must be in [0, 1), got {value}")
        return int(round(float(value) * T))
    raise TypeError(f"{name} must be a fraction (float) or a number of steps (int), "
                    f"got {type(value).__name__} {value!r}")


def _split_points(T, val, test):
    n_val = _split_size("val", val, T)
    n_test = _split_size("test", test, T)
    n_train = T - n_val - n_test
    if n_train < 1:
        raise ValueError(f"val={val} and test={test} leave no training steps of T={T} "
                         f"(val takes {n_val}, test {n_test})")
    return n_train, n_train + n_val


def chronological_split(series, val=0.1, test=0.1):
    """Split a series along its first (time) axis into train, val, test, in that order.

    `val` and `test` are fractions of the length in [0, 1) (rounded to whole
    steps) or ints (numbers of steps). Returns `(train, val, test)` as views of
    `np.asarray(series)`: `train = s[:a]`, `val = s[a:b]`, `test = s[b:]`.
    Any shape `(T, ...)` is accepted. Either part may be empty (0 steps);
    train must keep at least one step.
    """
    arr = np.asarray(series)
    if arr.ndim < 1:
        raise ValueError("series must have a time axis (ndim >= 1), got a scalar")
    a, b = _split_points(arr.shape[0], val, test)
    return arr[:a], arr[a:b], arr[b:]


def windows_split(series, window, horizon=1, val=0.1, test=0.1, stride=1, *, target=None,
                  context=True, return_index=False):
    """Split a series in time order, then window each part: no leakage.

    The series is split like `chronological_split` into `[0, a)` train,
    `[a, b)` validation, `[b, T)` test. Training windows use only `[0, a)`.
    Validation targets all lie in `[a, b)`, test targets in `[b, T)`. With
    `context=True` a later part's first windows take their inputs from the
    `window` steps before its split point (the past: known at forecast time),
    so its first target is the first step of the part; with `context=False`
    a part is windowed strictly on its own values.

    Returns `((X_train, Y_train), (X_val, Y_val), (X_test, Y_test))`, each pair
    shaped like `sliding_windows`'s; with `return_index=True` each is a triple
    whose third element gives each window's first target index in the whole
    series. A part asked to be empty (`val=0`) gives `N = 0` arrays; a
    non-empty part too short to hold one window is an error.
    """
    window = check_int("window", window, 1)
    horizon = check_int("horizon", horizon, 1)
    stride = check_int("stride", stride, 1)
    context = check_bool("context", context)
    return_index = check_bool("return_index", return_index)
    arr = _as_series(series)
    T, F = arr.shape
    cols = _target_columns(target, F)
    a, b = _split_points(T, val, test)
    L = window + horizon
    if a < L:
        raise ValueError(f"the training part has {a} steps (of T={T}); window={window} + "
                         f"horizon={horizon} needs at least {L}: lower val/test or the window")
    parts = [_windows(arr[:a], window, horizon, stride, cols, offset=0)]
    for name, lo, hi in (("validation", a, b), ("test", b, T)):
        if hi == lo:
            parts.append(_windows(arr[lo:lo], window, horizon, stride, cols, offset=lo))
            continue
        start = lo - window if context else lo
        need = horizon if context else L
        if hi - lo < need:
            rule = "horizon" if context else "window + horizon (context=False)"
            raise ValueError(f"the {name} part has {hi - lo} steps; {rule} needs at least {need}: "
                             f"give it more steps or set it to 0")
        parts.append(_windows(arr[start:hi], window, horizon, stride, cols, offset=start))
    if return_index:
        return tuple(parts)
    return tuple((X, Y) for X, Y, _ in parts)


def shifted_windows(tokens, length, stride=None):
    """Next-step training pairs for a language model: `Y` is `X` shifted by one step.

    `tokens` is a 1-d sequence (ids) or `(T, F)`. Window i starts at
    `s = i * stride` (stride defaults to `length`: non-overlapping windows):
    `X[i] = tokens[s:s+length]`, `Y[i] = tokens[s+1:s+length+1]`. Returns
    `X, Y` of shape `(N, length)` (or `(N, length, F)`), windows never run past
    the end.
    """
    length = check_int("length", length, 1)
    stride = length if stride is None else check_int("stride", stride, 1)
    arr = np.asarray(tokens)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"tokens must hold numbers (ids), got dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise ValueError(f"tokens must be 1-d (T,) or 2-d (T, F), got shape {arr.shape}")
    T = arr.shape[0]
    if T < length + 1:
        raise ValueError(f"tokens has T={T} steps; length={length} needs at least {length + 1}")
    view = np.lib.stride_tricks.sliding_window_view(arr, length + 1, axis=0)[::stride]
    if arr.ndim == 2:
        view = view.transpose(0, 2, 1)
    return np.ascontiguousarray(view[:, :length]), np.ascontiguousarray(view[:, 1:])
