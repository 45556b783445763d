"""Data tools: time-series windows, padding and masks, tokenizers, bucketed batches.

    from fastrnn.data import sliding_windows, windows_split, pad_sequences, CharTokenizer, BucketIterator

- `windows`: `sliding_windows`, `chronological_split`, `windows_split` (a
  split in time order that cannot leak future values into training),
  `shifted_windows` (next-step pairs for language models).
- `sequences`: `pad_sequences` (Keras semantics), `mask_from_lengths`,
  `lengths_from_mask`, `one_hot`.
- `tokenizers`: `CharTokenizer`, `WordTokenizer` (ids 0 `<pad>`, 1 `<unk>`),
  saved and loaded as JSON; `load_tokenizer`.
- `batching`: `BucketIterator`, batches of similar-length sequences.

NumPy only; nothing here touches the engine.
"""
from .batching import BucketIterator
from .sequences import lengths_from_mask, mask_from_lengths, one_hot, pad_sequences
from .tokenizers import PAD, PAD_ID, UNK, UNK_ID, CharTokenizer, WordTokenizer, load_tokenizer
from .windows import chronological_split, shifted_windows, sliding_windows, windows_split

__all__ = ["sliding_windows", "chronological_split", "windows_split", "shifted_windows",
           "pad_sequences", "mask_from_lengths", "lengths_from_mask", "one_hot",
           "CharTokenizer", "WordTokenizer", "load_tokenizer", "PAD", "UNK", "PAD_ID", "UNK_ID",
           "BucketIterator"]
