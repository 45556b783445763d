"""Character and word tokenizers with a fitted vocabulary, saved as JSON.

    tok = CharTokenizer().fit(texts)
    ids = tok.encode("hello")              # list of ints
    tok.decode(ids)                        # "hello"
    x = tok.encode_batch(texts, pad=True)  # int32 (B, T), right-padded with 0
    tok.save("chars.json"); tok = CharTokenizer.load("chars.json")

Reserved ids: 0 is padding (`<pad>`), 1 is unknown (`<unk>`); optional
`specials` (say `("<bos>", "<eos>")`) take ids 2, 3, ... in the given order.
The fitted tokens follow, most frequent first, ties in sorted order of the
token text, so a vocabulary depends only on the token counts (not on the order
of the texts). `max_tokens` caps the whole vocabulary *including* the reserved
ids; `min_freq` drops tokens seen fewer times. A token missing from the
vocabulary encodes to 1 and decodes to `<unk>`.

Splitting rules.

- `CharTokenizer`: every character (Unicode code point) is a token; nothing is
  dropped, spaces and newlines included. `lower=False` by default.
- `WordTokenizer` (`lower=True` by default): a word is a run of letters,
  digits and underscores (Unicode-aware), which may contain apostrophes
  between such runs ("don't", "o'clock"); every other non-space character is
  a token of its own (`punctuation="split"`) or dropped
  (`punctuation="drop"`); whitespace only separates. "Hello, world!" gives
  ["hello", ",", "world", "!"]. `decode` joins tokens with single spaces
  ("hello , world !"): the original spacing is not kept.

Specials are never produced from text; put their ids around an encoded text
yourself (`tok.token_to_id("<bos>")`). `decode` drops padding and specials
unless `skip_special=False`.

Files: `save(path)` writes `{"format": "fastrnn.tokenizer", "version": 1,
"class": ..., "config": ..., "vocab": [...]}` atomically (a temporary file in
the same folder, then `os.replace`); `load(path)` checks all of it and raises
a ValueError naming the file and the problem for anything else.
"""
import collections
import json
import os
import re

import numpy as np

from .._files import atomic_write
from ._checks import check_bool, check_choice, check_int
from .sequences import pad_sequences

__all__ = ["CharTokenizer", "WordTokenizer", "load_tokenizer", "PAD", "UNK", "PAD_ID", "UNK_ID"]

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
FORMAT = "fastrnn.tokenizer"
VERSION = 1

_WORD_RE = re.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]")
_WORD_ONLY_RE = re.compile(r"\w+(?:['\u2019]\w+)*")


class _Tokenizer:
    """Shared vocabulary logic; subclasses define `_split` and `_join`."""

    _lower_default = False

    def __init__(self, *, max_tokens=None, min_freq=1, lower=None, specials=()):
        self.lower = self._lower_default if lower is None else check_bool("lower", lower)
        if isinstance(specials, str) or not isinstance(specials, (list, tuple)):
            raise TypeError(f"specials must be a list or tuple of str, got {type(specials).__name__} {specials!r}")
        specials = tuple(specials)
        for s in specials:
            if not isinstance(s, str) or not s:
                raise TypeError(f"specials must hold non-empty strings, got {s!r}")
        if len(set(specials)) != len(specials) or set(specials) & {PAD, UNK}:
            raise ValueError(f"specials must be unique and differ from {PAD!r} and {UNK!r}, got {list(specials)}")
        self.specials = specials
        self.max_tokens = check_int("max_tokens", max_tokens, len(self._reserved()), allow_none=True)
        self.min_freq = check_int("min_freq", min_freq, 1)
        self._id_to_token = None
        self._token_to_id = None

    # --- splitting, defined by subclasses
    def _split(self, text):
        raise NotImplementedError

    def _join(self, tokens):
        raise NotImplementedError

    def _reserved(self):
        return (PAD, UNK) + self.specials

    def _check_text(self, text, name="text"):
        if not isinstance(text, str):
            raise TypeError(f"{name} must be a str, got {type(text).__name__}")
        return text.lower() if self.lower else text

    def tokenize(self, text):
        """The tokens of `text` under this tokenizer's rule (needs no fit)."""
        return self._split(self._check_text(text))

    # --- fitting
    def fit(self, texts):
        """Build the vocabulary from an iterable of strings (replacing any earlier one). Returns self."""
        if isinstance(texts, str):
            raise TypeError("texts must be an iterable of str, not a single str: wrap it in a list")
        try:
            iterator = iter(texts)
        except TypeError:
            raise TypeError(f"texts must be an iterable of str, got {type(texts).__name__}") from None
        counts = collections.Counter()
        for i, text in enumerate(iterator):
            counts.update(self._split(self._check_text(text, f"texts[{i}]")))
        reserved = self._reserved()
        for tok in reserved:
            counts.pop(tok, None)
        kept = sorted((t for t, c in counts.items() if c >= self.min_freq), key=lambda t: (-counts[t], t))
        if self.max_tokens is not None:
            kept = kept[: self.max_tokens - len(reserved)]
        self._set_vocab(list(reserved) + kept)
        return self

    def _set_vocab(self, tokens):
        self._id_to_token = list(tokens)
        self._token_to_id = {t: i for i, t in enumerate(self._id_to_token)}

    @property
    def fitted(self):
        return self._id_to_token is not None

    def _need_fit(self):
        if self._id_to_token is None:
            raise RuntimeError(f"{type(self).__name__} has no vocabulary yet: call fit(texts) or load(path) first")

    # --- vocabulary
    @property
    def vocab_size(self):
        """Number of ids, reserved ones included."""
        self._need_fit()
        return len(self._id_to_token)

    def __len__(self):
        return self.vocab_size

    @property
    def vocab(self):
        """All tokens in id order (a copy)."""
        self._need_fit()
        return list(self._id_to_token)

    @property
    def pad_id(self):
        return PAD_ID

    @property
    def unk_id(self):
        return UNK_ID

    def token_to_id(self, token):
        """The id of `token`; `UNK_ID` (1) when it is not in the vocabulary."""
        self._need_fit()
        if not isinstance(token, str):
            raise TypeError(f"token must be a str, got {type(token).__name__}")
        return self._token_to_id.get(token, UNK_ID)

    def id_to_token(self, index):
        """The token of id `index` (0 <= index < vocab_size)."""
        self._need_fit()
        index = check_int("index", index)
        if not 0 <= index < len(self._id_to_token):
            raise ValueError(f"index must be in [0, vocab_size={len(self._id_to_token)}), got {index}")
        return self._id_to_token[index]

    # --- encoding
    def encode(self, text):
        """Ids of the tokens of `text` (unknown tokens give 1)."""
        self._need_fit()
        lookup = self._token_to_id
        return [lookup.get(t, UNK_ID) for t in self._split(self._check_text(text))]

    def encode_batch(self, texts, *, pad=False, maxlen=None, padding="post", truncating="post", dtype="int32"):
        """Encode several texts: a list of id lists, or with `pad=True` (or a
        `maxlen`) an array `(B, maxlen)` padded with 0 by `pad_sequences`
        (right padding and truncation by default, as the engine's `lengths=` wants)."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of str, not a single str: use encode(text)")
        encoded = [self.encode(self._check_batch_item(t, i)) for i, t in enumerate(texts)]
        if not check_bool("pad", pad) and maxlen is None:
            return encoded
        return pad_sequences(encoded, maxlen=maxlen, dtype=dtype, padding=padding, truncating=truncating,
                             value=PAD_ID)

    @staticmethod
    def _check_batch_item(text, i):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}")
        return text

    def decode(self, ids, skip_special=True):
        """Text of a sequence of ids. Padding and specials are dropped unless
        `skip_special=False`; unknown ids render as `<unk>`."""
        self._need_fit()
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ValueError(f"ids must be 1-d (one sequence), got shape {arr.shape}; use decode_batch for several")
        if arr.size and arr.dtype.kind not in "iu":
            raise TypeError(f"ids must be integers, got dtype {arr.dtype}")
        n = len(self._id_to_token)
        if arr.size and (arr.min() < 0 or arr.max() >= n):
            bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
            raise ValueError(f"ids must be in [0, vocab_size={n}), got {bad}")
        skip = {PAD_ID, *range(2, 2 + len(self.specials))} if check_bool("skip_special", skip_special) else ()
        return self._join([self._id_to_token[i] for i in arr.tolist() if i not in skip])

    def decode_batch(self, batch, skip_special=True):
        """`decode` for each row of a 2-d array or list of id lists."""
        return [self.decode(ids, skip_special=skip_special) for ids in batch]

    # --- configuration and files
    def get_config(self):
        """Constructor arguments (JSON-friendly); the vocabulary is not included."""
        return {"lower": self.lower, "max_tokens": self.max_tokens, "min_freq": self.min_freq,
                "specials": list(self.specials)}

    @classmethod
    def from_config(cls, config):
        """An unfitted tokenizer from `get_config()`'s dict."""
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        return cls(**config)

    def save(self, path):
        """Write the config and vocabulary as JSON, atomically (temp file + os.replace)."""
        self._need_fit()
        payload = {"format": FORMAT, "version": VERSION, "class": type(self).__name__,
                   "config": self.get_config(), "vocab": self._id_to_token}
        with atomic_write(path, "w", encoding="utf-8", permissions=0o644) as f:
            f.write(json.dumps(payload, ensure_ascii=False, indent=1) + "\n")

    @classmethod
    def load(cls, path):
        """A fitted tokenizer from a file written by `save`. Raises ValueError
        (naming the file) for a corrupt file, another format or version, or a
        tokenizer of another class."""
        return _load(path, expected=None if cls is _Tokenizer else cls)

    def __repr__(self):
        size = len(self._id_to_token) if self.fitted else "unfitted"
        return f"{type(self).__name__}(vocab_size={size}, lower={self.lower})"


class CharTokenizer(_Tokenizer):
    """One token per character. Options: `max_tokens`, `min_freq`, `lower=False`, `specials=()`."""

    _lower_default = False

    def __init__(self, *, max_tokens=None, min_freq=1, lower=False, specials=()):
        super().__init__(max_tokens=max_tokens, min_freq=min_freq, lower=lower, specials=specials)

    def _split(self, text):
        return list(text)

    def _join(self, tokens):
        return "".join(tokens)


class WordTokenizer(_Tokenizer):
    """Words and punctuation marks as tokens (see the module notes for the rule).

    Options: `max_tokens`, `min_freq`, `lower=True`, `punctuation="split"|"drop"`, `specials=()`.
    """

    _lower_default = True

    def __init__(self, *, max_tokens=None, min_freq=1, lower=True, punctuation="split", specials=()):
        super().__init__(max_tokens=max_tokens, min_freq=min_freq, lower=lower, specials=specials)
        self.punctuation = check_choice("punctuation", punctuation, ("split", "drop"))

    def _split(self, text):
        return (_WORD_RE if self.punctuation == "split" else _WORD_ONLY_RE).findall(text)

    def _join(self, tokens):
        return " ".join(tokens)

    def get_config(self):
        config = super().get_config()
        config["punctuation"] = self.punctuation
        return config


_CLASSES = {"CharTokenizer": CharTokenizer, "WordTokenizer": WordTokenizer}


def load_tokenizer(path):
    """A tokenizer of whichever class the file at `path` holds."""
    return _load(path, expected=None)


def _load(path, expected):
    where = os.fspath(path)

    def bad(msg):
        return ValueError(f"{where}: not a valid fastrnn tokenizer file: {msg}")

    with open(where, "rb") as f:
        raw = f.read()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise bad(f"not UTF-8 text ({e})") from None
    except json.JSONDecodeError as e:
        raise bad(f"corrupt JSON ({e})") from None
    if not isinstance(data, dict):
        raise bad(f"expected a JSON object at the top, got {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise bad(f"format is {data.get('format')!r}, expected {FORMAT!r}")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise bad(f"version must be a positive int, got {version!r}")
    if version > VERSION:
        raise bad(f"version {version} is newer than this fastrnn reads (up to {VERSION})")
    name = data.get("class")
    if name not in _CLASSES:
        raise bad(f"class must be one of {sorted(_CLASSES)}, got {name!r}")
    cls = _CLASSES[name]
    if expected is not None and cls is not expected:
        raise ValueError(f"{where}: holds a {name}, not a {expected.__name__}; use {name}.load or load_tokenizer")
    config = data.get("config")
    if not isinstance(config, dict):
        raise bad(f"config must be an object, got {type(config).__name__}")
    try:
        tok = cls(**config)
    except (TypeError, ValueError) as e:
        raise bad(f"bad config {config!r} ({e})") from None
    vocab = data.get("vocab")
    if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
        raise bad("vocab must be a list of strings")
    reserved = list(tok._reserved())
    if vocab[: len(reserved)] != reserved:
        raise bad(f"vocab must start with the reserved tokens {reserved}, got {vocab[:len(reserved)]}")
    if len(set(vocab)) != len(vocab):
        dup = next(t for t, c in collections.Counter(vocab).items() if c > 1)
        raise bad(f"vocab lists {dup!r} twice")
    if tok.max_tokens is not None and len(vocab) > tok.max_tokens:
        raise bad(f"vocab has {len(vocab)} tokens, more than max_tokens={tok.max_tokens}")
    if isinstance(tok, CharTokenizer):
        long = [t for t in vocab[len(reserved):] if len(t) != 1]
        if long:
            raise bad(f"a CharTokenizer's tokens are single characters, got {long[0]!r}")
    tok._set_vocab(vocab)
    return tok
