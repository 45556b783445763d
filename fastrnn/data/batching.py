"""Batches of variable-length sequences, bucketed by length so padding stays small.

    it = BucketIterator(sequences, labels, batch_size=32, seed=0)
    for epoch in range(10):
        for x, y, lengths in it:        # x (B, T_batch[, F]) right-padded; lengths (B,) int64
            ...

Each batch is padded only to its own longest sequence. How batches are formed
in one epoch (a new epoch starts with each `iter(it)`):

1. With `shuffle=True` the samples are put in a random order (and with
   `drop_last=True` the `n % batch_size` samples left out this epoch are the
   last of that random order, so no sample is left out every epoch).
2. They are sorted by length (a stable sort, so equal lengths stay in random
   order) and cut into `buckets` groups of consecutive lengths, each a whole
   number of batches (only the longest bucket may end with a smaller batch).
3. Each bucket is shuffled and cut into batches; the batches of all buckets
   are shuffled together.

`buckets=None` makes every batch its own bucket: batches hold sequences of
consecutive lengths (the least padding; only equal-length samples change
batches between epochs). `buckets=k` lets samples mix within k length groups:
more randomness, more padding (see below). `buckets=1` is plain random batching.
With `shuffle=False` every epoch is the same: batches in ascending length.

Padding saved (measured by `tests/test_data.py::test_bucket_padding_savings`:
10,000 sequences with log-normal lengths, median 20, mean 30, a long tail up
to 400 steps; batch_size=32; padded cells as a share of all cells, mean of 5
seeds):

    random batching (buckets=1)   78% of the cells are padding
    buckets=8                     42%
    buckets=32                    16%
    buckets=None                   1.9%

so on that distribution `buckets=None` computes 4.5x fewer time steps per
epoch than random batching (`buckets=8`: 2.7x). Equal-count buckets are wide
in the long tail, hence the gap between `buckets=k` and `None`.
`padding_fraction()` measures it for your data.

What it yields: `(x, y, lengths)`, or `(x, y)` with `return_lengths=False`.
`y` is None without targets. Targets are either one per sample (an array
whose first axis has one entry per sequence: `y = targets[batch]`), or one
per step (a list of sequences, each as long as its input: padded like `x`).
"""
import copy

import numpy as np

from ._checks import check_bool, check_choice, check_int, check_sequence_list, rng_from_seed

__all__ = ["BucketIterator"]


def _as_arrays(name, items, dtype):
    """Items as arrays with one item shape (beyond the time axis); the common dtype."""
    arrays = []
    item_shape = None
    for i, s in enumerate(items):
        a = np.asarray(s) if dtype is None else np.asarray(s, dtype=dtype)
        if a.ndim < 1:
            raise ValueError(f"{name}[{i}] must be a sequence, got a scalar")
        if a.shape[0]:
            if item_shape is None:
                item_shape = a.shape[1:]
            elif a.shape[1:] != item_shape:
                raise ValueError(f"{name}[{i}] has items of shape {a.shape[1:]}, expected {item_shape} "
                                 f"(the item shape of the first non-empty sequence)")
            if a.dtype.kind not in "biuf":
                raise TypeError(f"{name}[{i}] must hold numbers, got dtype {a.dtype}")
        arrays.append(a)
    nonempty = [a.dtype for a in arrays if a.shape[0]]
    if dtype is not None:
        out_dtype = np.dtype(dtype)
    else:
        out_dtype = np.result_type(*nonempty) if nonempty else np.dtype(np.int64)
    return arrays, (item_shape or ()), out_dtype


def _pad(arrays, index, item_shape, dtype, value, padding, lengths):
    """Pad arrays[index] to their longest; `lengths` are theirs."""
    T = int(lengths.max()) if len(index) else 0
    out = np.full((len(index), T) + item_shape, value, dtype=dtype)
    for row, (i, n) in enumerate(zip(index, lengths)):
        if n:
            if padding == "post":
                out[row, :n] = arrays[i]
            else:
                out[row, T - n:] = arrays[i]
    return out


class BucketIterator:
    """Batches of similar-length sequences, each padded to its own longest.

    Args:
        sequences: a list of sequences (1-d, or `(L_i, F)` sequences of vectors).
        targets: None, one target per sample (array-like, first axis n), or
            one per step (a list of sequences as long as their inputs).
        batch_size: samples per batch (>= 1).
        buckets: None (every batch its own length bucket) or a number of
            length buckets (>= 1; capped at the number of batches).
        shuffle: shuffle samples within buckets and batches across them.
        seed: None, an int or a `np.random.Generator`; with an int the whole
            series of epochs repeats exactly.
        padding: "post" (right padding, as the engine's `lengths=` wants) or "pre".
        drop_last: leave out the partial batch of each epoch.
        dtype: dtype of `x` (None: the sequences' common dtype); targets keep theirs.
        value: the padding value (of `x` and of per-step targets).
        return_lengths: yield `(x, y, lengths)` (True) or `(x, y)`.

    `len(it)` is the number of batches per epoch.
    """

    def __init__(self, sequences, targets=None, batch_size=32, buckets=None, shuffle=True, seed=None,
                 padding="post", drop_last=False, *, dtype=None, value=0, return_lengths=True):
        items = check_sequence_list("sequences", sequences)
        if not items:
            raise ValueError("sequences must hold at least one sequence, got none")
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.buckets = check_int("buckets", buckets, 1, allow_none=True)
        self.shuffle = check_bool("shuffle", shuffle)
        self.padding = check_choice("padding", padding, ("pre", "post"))
        self.drop_last = check_bool("drop_last", drop_last)
        self.return_lengths = check_bool("return_lengths", return_lengths)
        self.value = value
        self._seqs, self._item_shape, self._dtype = _as_arrays("sequences", items, dtype)
        self.lengths = np.array([a.shape[0] for a in self._seqs], dtype=np.int64)
        n = len(self._seqs)
        if self.drop_last and n < self.batch_size:
            raise ValueError(f"drop_last=True with {n} sequences and batch_size={self.batch_size} "
                             f"leaves no batch")
        self._targets, self._step_targets = self._prepare_targets(targets, n)
        self._rng = rng_from_seed("seed", seed)

    def _prepare_targets(self, targets, n):
        if targets is None:
            return None, None
        if isinstance(targets, np.ndarray):
            arr = targets
        else:
            try:
                arr = np.asarray(targets)
            except ValueError:             # ragged: per-step targets
                arr = None
            if arr is not None and arr.dtype == object:
                arr = None
        if arr is not None and arr.ndim >= 1 and arr.dtype != object:
            if arr.shape[0] != n:
                raise ValueError(f"targets must have one entry per sequence ({n}), got {arr.shape[0]}")
            return arr, None
        items = check_sequence_list("targets", targets)
        if len(items) != n:
            raise ValueError(f"targets must have one entry per sequence ({n}), got {len(items)}")
        arrays, shape, dtype = _as_arrays("targets", items, None)
        for i, (a, L) in enumerate(zip(arrays, self.lengths)):
            if a.shape[0] != L:
                raise ValueError(f"targets[{i}] has {a.shape[0]} steps but sequences[{i}] has {L}: per-step "
                                 f"targets must match their inputs (or give one target per sample as an array)")
        return None, (arrays, shape, dtype)

    @property
    def num_samples(self):
        return len(self._seqs)

    def __len__(self):
        n, bs = len(self._seqs), self.batch_size
        return n // bs if self.drop_last else -(-n // bs)

    def _plan(self, rng):
        """The index arrays of one epoch's batches, in the order they are yielded."""
        n, bs = len(self._seqs), self.batch_size
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.drop_last:
            order = order[: n - n % bs]
        order = order[np.argsort(self.lengths[order], kind="stable")]
        n_batches = -(-len(order) // bs)
        k = n_batches if self.buckets is None else min(self.buckets, n_batches)
        batches = []
        for slots in np.array_split(np.arange(n_batches), k):
            members = order[slots[0] * bs: (slots[-1] + 1) * bs]
            if self.shuffle:
                members = rng.permutation(members)
            batches.extend(members[j: j + bs] for j in range(0, len(members), bs))
        if self.shuffle:
            batches = [batches[j] for j in rng.permutation(len(batches))]
        return batches

    def __iter__(self):
        for index in self._plan(self._rng):
            yield self._batch(index)

    def _batch(self, index):
        lengths = self.lengths[index]
        x = _pad(self._seqs, index, self._item_shape, self._dtype, self.value, self.padding, lengths)
        if self._targets is not None:
            y = self._targets[index]
        elif self._step_targets is not None:
            arrays, shape, dtype = self._step_targets
            y = _pad(arrays, index, shape, dtype, self.value, self.padding, lengths)
        else:
            y = None
        return (x, y, lengths) if self.return_lengths else (x, y)

    def padding_fraction(self):
        """Share of padded cells (time steps) in one epoch's batches, in [0, 1).

        Simulated on a copy of the random state, so the epochs that follow are
        unchanged."""
        batches = self._plan(copy.deepcopy(self._rng))
        real = padded = 0
        for index in batches:
            lengths = self.lengths[index]
            real += int(lengths.sum())
            padded += len(index) * int(lengths.max() if len(index) else 0)
        return 0.0 if padded == 0 else 1.0 - real / padded

    def __repr__(self):
        return (f"BucketIterator(num_samples={len(self._seqs)}, batch_size={self.batch_size}, "
                f"buckets={self.buckets}, batches={len(self)})")
