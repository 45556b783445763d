"""Variable-length sequences: padding, masks and lengths, one-hot codes.

    x = pad_sequences([[1, 2, 3], [4]], padding="post")    # [[1 2 3], [4 0 0]]
    mask = mask_from_lengths([3, 1])                       # bool (2, 3)
    lengths_from_mask(mask)                                # array([3, 1])

The engine's `lengths=` argument expects right-padded ("post") batches: steps
at or past a sample's length are padding. `padding="pre"` (Keras's default)
puts the padding first instead; use it with masks, not with `lengths=`.
"""

import numpy as np

from ._checks import check_bool, check_choice, check_int, check_sequence_list

__all__ = ["pad_sequences", "mask_from_lengths", "lengths_from_mask", "one_hot"]


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre", value=0.0):
    """Pad (and truncate) sequences to one length; Keras's `pad_sequences` semantics.

    Args:
        sequences: a list of sequences (lists or arrays). Items may be scalars
            or vectors/arrays of one shape ("sequences of vectors"); the item
            shape comes from the first non-empty sequence.
        maxlen: output length; None pads to the longest sequence. Longer
            sequences are truncated.
        dtype: output dtype (values are cast to it, as Keras does: floats put
            into an integer dtype lose their fraction).
        padding: "pre" puts the padding before each sequence, "post" after.
        truncating: "pre" drops values from the start of a long sequence
            (keeps the last `maxlen`), "post" from its end.
        value: the padding value (a string for a string dtype).

    Returns an array `(len(sequences), maxlen) + item_shape` of `dtype`.
    Empty sequences give rows of `value`.
    """
    items = check_sequence_list("sequences", sequences)
    padding = check_choice("padding", padding, ("pre", "post"))
    truncating = check_choice("truncating", truncating, ("pre", "post"))
    maxlen = check_int("maxlen", maxlen, 0, allow_none=True)
    try:
        dtype = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype must be a NumPy dtype, got {dtype!r} ({e})") from None
    if dtype.kind in "SU" and not isinstance(value, str):
        raise ValueError(f"value must be a str for the string dtype {dtype}, got {type(value).__name__} "
                         f"{value!r}; use dtype=object for mixed contents")
    lengths = [len(s) for s in items]
    if maxlen is None:
        maxlen = max(lengths, default=0)
    item_shape = ()
    for s in items:
        if len(s):
            item_shape = np.asarray(s).shape[1:]
            break
    try:
        out = np.full((len(items), maxlen) + item_shape, value, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise TypeError(f"value {value!r} cannot be stored in dtype {dtype} ({e})") from None
    if maxlen == 0:
        return out
    for i, s in enumerate(items):
        if not len(s):
            continue
        kept = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        try:
            kept = np.asarray(kept, dtype=dtype)
        except (TypeError, ValueError) as e:
            raise ValueError(f"sequences[{i}] cannot be converted to dtype {dtype}: {e}") from None
        if kept.shape[1:] != item_shape:
            raise ValueError(f"sequences[{i}] has items of shape {kept.shape[1:]}, expected {item_shape} "
                             f"(the item shape of the first non-empty sequence)")
        n = kept.shape[0]
        if padding == "post":
            out[i, :n] = kept
        else:
            out[i, maxlen - n:] = kept
    return out


def _as_lengths(lengths):
    arr = np.asarray(lengths)
    if arr.ndim != 1:
        raise ValueError(f"lengths must be 1-d (B,), got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            pass
        else:
            raise TypeError(f"lengths must hold integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"lengths must be >= 0, got {int(arr.min())} at index {int(np.argmin(arr))}")
    return arr


def mask_from_lengths(lengths, maxlen=None, padding="post"):
    """Bool mask `(B, maxlen)`, True at the valid steps of each sample.

    With `padding="post"` (right padding) `mask[b, t] = t < lengths[b]`; with
    "pre" the valid steps are the last `lengths[b]`. `maxlen` defaults to the
    largest length; a length above `maxlen` is an error.
    """
    lengths = _as_lengths(lengths)
    padding = check_choice("padding", padding, ("pre", "post"))
    top = int(lengths.max()) if lengths.size else 0
    maxlen = top if maxlen is None else check_int("maxlen", maxlen, 0)
    if top > maxlen:
        raise ValueError(f"lengths has {top} (at index {int(np.argmax(lengths))}), more than maxlen={maxlen}")
    steps = np.arange(maxlen)
    if padding == "post":
        return steps[None, :] < lengths[:, None]
    return steps[None, :] >= (maxlen - lengths)[:, None]


def lengths_from_mask(mask, strict=True):
    """Valid-step counts `(B,)` int64 of a mask `(B, T)` (True/nonzero = valid).

    With `strict=True` the mask must be right-padded: each row is some True
    steps followed only by False ones, which is what the engine's `lengths=`
    expects. Any other row (a gap, or left padding) raises a ValueError that
    names the first such row. With `strict=False` the count of valid steps is
    returned for any mask.
    """
    m = np.asarray(mask)
    if m.dtype.kind not in "biu":
        raise TypeError(f"mask must be bool (or 0/1 integers), got dtype {m.dtype}")
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-d (B, T), got shape {m.shape}")
    strict = check_bool("strict", strict)
    if m.dtype.kind != "b":
        if m.size and not np.isin(m, (0, 1)).all():
            raise ValueError("mask of integers must hold only 0 and 1")
        m = m.astype(bool)
    lengths = m.sum(axis=1, dtype=np.int64)
    if strict:
        expected = np.arange(m.shape[1])[None, :] < lengths[:, None]
        bad = np.nonzero((m != expected).any(axis=1))[0]
        if bad.size:
            b = int(bad[0])
            row = "".join("1" if v else "0" for v in m[b][:64]) + ("..." if m.shape[1] > 64 else "")
            raise ValueError(f"mask is not right-padded: row {b} is {row} ({bad.size} such rows); "
                             f"valid steps must come first, or pass strict=False to count them anyway")
    return lengths


def one_hot(indices, num_classes=None, dtype="float32"):
    """One-hot codes: `out[..., k] = 1` where `indices[...] == k`.

    `indices` is an int array of any shape (floats holding whole numbers are
    accepted); the result has shape `indices.shape + (num_classes,)`.
    `num_classes` defaults to `max(indices) + 1`; every index must be in
    `[0, num_classes)`.
    """
    idx = np.asarray(indices)
    if idx.dtype.kind == "f":
        if idx.size and not (np.all(np.isfinite(idx)) and np.all(idx == np.round(idx))):
            raise TypeError("indices must be integers; got floats with a fractional part or NaN/Inf")
        idx = idx.astype(np.int64)
    elif idx.dtype.kind not in "iu":
        raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
    if num_classes is None:
        if not idx.size:
            raise ValueError("num_classes must be given when indices is empty")
        num_classes = int(idx.max()) + 1
    num_classes = check_int("num_classes", num_classes, 1)
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(f"indices must be in [0, num_classes={num_classes}), got {bad}")
    try:
        dtype = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype must be a NumPy dtype, got {dtype!r} ({e})") from None
    out = np.zeros(idx.shape + (num_classes,), dtype=dtype)
    np.put_along_axis(out, idx[..., None].astype(np.intp), 1, axis=-1)
    return out
