"""Tests of fastrnn.data: windows against hand-written loops, a split that
cannot leak, pad_sequences against hand-checked cases and Keras, tokenizer
round trips and files, the bucket iterator's coverage, padding and seeds."""
import json
import os

import numpy as np
import pytest

from fastrnn.data import (BucketIterator, CharTokenizer, WordTokenizer, chronological_split, lengths_from_mask,
                          load_tokenizer, mask_from_lengths, one_hot, pad_sequences, shifted_windows,
                          sliding_windows, windows_split)
from fastrnn.data import tokenizers as tokenizers_module


# ---------------------------------------------------------------- windows

def loop_windows(series, window, horizon, stride, target=None):
    s = np.asarray(series)
    if s.ndim == 1:
        s = s[:, None]
    cols = list(range(s.shape[1])) if target is None else ([target] if isinstance(target, int) else list(target))
    X, Y, idx = [], [], []
    start = 0
    while start + window + horizon <= len(s):
        X.append(s[start:start + window])
        Y.append(s[start + window:start + window + horizon][:, cols])
        idx.append(start + window)
        start += stride
    return np.array(X), np.array(Y), np.array(idx)


@pytest.mark.parametrize("T,F,window,horizon,stride,target", [
    (20, None, 3, 1, 1, None),
    (20, None, 5, 3, 2, None),
    (21, 3, 4, 2, 3, None),
    (30, 4, 6, 1, 1, 2),
    (30, 4, 6, 5, 4, [3, 0]),
    (9, 2, 8, 1, 1, None),        # exactly one window
    (17, 2, 3, 2, 100, -1),       # stride longer than the series
])
def test_sliding_windows_match_loop(T, F, window, horizon, stride, target):
    rng = np.random.default_rng(T * 7 + window)
    series = rng.standard_normal(T if F is None else (T, F)).astype(np.float32)
    X, Y, idx = sliding_windows(series, window, horizon, stride, target=target, return_index=True)
    t = target % F if isinstance(target, int) and F else target
    Xr, Yr, idxr = loop_windows(series, window, horizon, stride, t)
    assert X.shape == Xr.shape and Y.shape == Yr.shape
    np.testing.assert_array_equal(X, Xr)
    np.testing.assert_array_equal(Y, Yr)
    np.testing.assert_array_equal(idx, idxr)
    assert X.dtype == np.float32 and X.flags.c_contiguous and Y.flags.c_contiguous
    assert idx[-1] + horizon <= T                       # never past the end


def test_sliding_windows_1d_is_one_feature_and_copies():
    series = np.arange(10.0)
    X, Y = sliding_windows(series, 4, horizon=2)
    assert X.shape == (5, 4, 1) and Y.shape == (5, 2, 1)
    np.testing.assert_array_equal(X[1, :, 0], [1, 2, 3, 4])
    np.testing.assert_array_equal(Y[1, :, 0], [5, 6])
    X[0, 0, 0] = -1                                       # fresh arrays, not views
    assert series[0] == 0


def test_sliding_windows_errors():
    with pytest.raises(ValueError, match="needs at least 6"):
        sliding_windows(np.arange(5), 4, horizon=2)
    with pytest.raises(ValueError, match="window must be >= 1"):
        sliding_windows(np.arange(5), 0)
    with pytest.raises(TypeError, match="stride must be an int"):
        sliding_windows(np.arange(5), 2, stride=1.5)
    with pytest.raises(ValueError, match=r"shape \(2, 3, 4\)"):
        sliding_windows(np.zeros((2, 3, 4)), 1)
    with pytest.raises(ValueError, match="target column 3 is out of range"):
        sliding_windows(np.zeros((10, 3)), 2, target=3)
    with pytest.raises(ValueError, match="twice"):
        sliding_windows(np.zeros((10, 3)), 2, target=[0, -3])
    with pytest.raises(TypeError, match="numbers"):
        sliding_windows(np.array(["a", "b", "c"]), 1)


def test_chronological_split():
    s = np.arange(100).reshape(50, 2)
    tr, va, te = chronological_split(s, val=0.2, test=0.1)
    assert (len(tr), len(va), len(te)) == (35, 10, 5)
    np.testing.assert_array_equal(np.concatenate([tr, va, te]), s)
    tr, va, te = chronological_split(np.arange(10), val=3, test=0)
    assert tr.tolist() == list(range(7)) and va.tolist() == [7, 8, 9] and te.size == 0
    with pytest.raises(ValueError, match="no training steps"):
        chronological_split(np.arange(10), val=5, test=5)
    with pytest.raises(ValueError, match=r"val as a fraction must be in \[0, 1\)"):
        chronological_split(np.arange(10), val=1.5)
    with pytest.raises(TypeError, match="test must be a fraction"):
        chronological_split(np.arange(10), test="10%")


@pytest.mark.parametrize("context", [True, False])
@pytest.mark.parametrize("window,horizon,stride", [(5, 1, 1), (7, 3, 1), (4, 2, 3)])
def test_windows_split_cannot_leak(context, window, horizon, stride):
    T = 200
    series = np.arange(T)              # each value is its own time index
    (Xtr, Ytr, itr), (Xva, Yva, iva), (Xte, Yte, ite) = windows_split(
        series, window, horizon, val=0.2, test=0.15, stride=stride, context=context, return_index=True)
    a, b = 130, 170                    # 200 - 40 - 30, then + 40
    # training windows never see a value at or after the split point
    assert Xtr.max() < a and Ytr.max() < a
    # every validation target lies in [a, b), every test target in [b, T)
    assert Yva.min() >= a and Yva.max() < b
    assert Yte.min() >= b and Yte.max() < T
    # a split's targets never appear anywhere in an earlier split's windows
    train_values = set(Xtr.ravel()) | set(Ytr.ravel())
    val_values = set(Xva.ravel()) | set(Yva.ravel())
    assert not set(Yva.ravel()) & train_values
    assert not set(Yte.ravel()) & (train_values | val_values)
    # inputs only look back: context reaches at most `window` steps before the part
    lo_va = a - window if context else a
    lo_te = b - window if context else b
    assert Xva.min() >= lo_va and Xte.min() >= lo_te
    # the returned index is the first target's position
    np.testing.assert_array_equal(Yva[:, 0, 0], iva)
    np.testing.assert_array_equal(Yte[:, 0, 0], ite)
    np.testing.assert_array_equal(Ytr[:, 0, 0], itr)
    # each part equals sliding_windows over its own segment
    for (X, Y), seg in (((Xtr, Ytr), series[:a]), ((Xva, Yva), series[lo_va:b]), ((Xte, Yte), series[lo_te:])):
        Xr, Yr, _ = loop_windows(seg, window, horizon, stride)
        np.testing.assert_array_equal(X, Xr)
        np.testing.assert_array_equal(Y, Yr)
    if context:
        assert iva[0] == a and ite[0] == b       # the first step of each part is a target
        if stride == 1:                          # and, with stride 1, every step of the part is one
            assert set(Yva[:, 0, 0]) | set(Yva[-1, :, 0]) == set(range(a, b))


def test_windows_split_multivariate_target_and_empty_part():
    T = 60
    series = np.stack([np.arange(T), 1000 + np.arange(T)], axis=1).astype(np.float64)
    (Xtr, Ytr), (Xva, Yva), (Xte, Yte) = windows_split(series, 6, 2, val=0, test=10, target=1)
    assert Xtr.shape[1:] == (6, 2) and Ytr.shape[1:] == (2, 1)
    assert Xva.shape == (0, 6, 2) and Yva.shape == (0, 2, 1)
    assert Yte.min() == 1000 + 50 and Yte.max() == 1000 + 59
    assert Xtr[:, :, 0].max() < 50 and Ytr.max() < 1050


def test_windows_split_errors():
    with pytest.raises(ValueError, match="training part has 8 steps"):
        windows_split(np.arange(10), 8, 1, val=1, test=1)
    with pytest.raises(ValueError, match="validation part has 3 steps"):
        windows_split(np.arange(100), 5, 4, val=3, test=0)
    with pytest.raises(ValueError, match="test part has 5 steps"):
        windows_split(np.arange(100), 5, 1, val=0, test=5, context=False)
    # context=True needs only `horizon` steps in a part
    _, _, (Xte, Yte) = windows_split(np.arange(100), 5, 1, val=0, test=1)
    assert Yte.ravel().tolist() == [99] and Xte.ravel().tolist() == [94, 95, 96, 97, 98]


def test_shifted_windows():
    tokens = np.arange(23)
    X, Y = shifted_windows(tokens, 5)
    assert X.shape == (4, 5)
    for i in range(4):
        np.testing.assert_array_equal(X[i], tokens[5 * i:5 * i + 5])
        np.testing.assert_array_equal(Y[i], tokens[5 * i + 1:5 * i + 6])
    X, Y = shifted_windows(tokens, 5, stride=2)
    assert len(X) == (23 - 6) // 2 + 1 and Y[-1, -1] <= 22
    X, Y = shifted_windows(np.arange(20).reshape(10, 2), 3)
    assert X.shape == (3, 3, 2) and np.array_equal(Y[0], [[2, 3], [4, 5], [6, 7]])
    with pytest.raises(ValueError, match="needs at least 6"):
        shifted_windows(np.arange(5), 5)


# ---------------------------------------------------------------- padding, masks, one-hot

def test_pad_sequences_hand_checked():
    seqs = [[1, 2, 3], [4, 5], [6]]
    assert pad_sequences(seqs).tolist() == [[1, 2, 3], [0, 4, 5], [0, 0, 6]]
    assert pad_sequences(seqs, padding="post").tolist() == [[1, 2, 3], [4, 5, 0], [6, 0, 0]]
    assert pad_sequences(seqs, maxlen=2).tolist() == [[2, 3], [4, 5], [0, 6]]
    assert pad_sequences(seqs, maxlen=2, truncating="post").tolist() == [[1, 2], [4, 5], [0, 6]]
    assert pad_sequences(seqs, maxlen=4, padding="post", value=-1).tolist() == \
        [[1, 2, 3, -1], [4, 5, -1, -1], [6, -1, -1, -1]]
    out = pad_sequences([[0.5, 1.5], []], dtype="float32", value=9.0)
    assert out.dtype == np.float32 and out.tolist() == [[0.5, 1.5], [9.0, 9.0]]
    assert pad_sequences([[1.7, -2.2]], dtype="int32").tolist() == [[1, -2]]   # cast like Keras
    assert pad_sequences([[], []]).shape == (2, 0)
    assert pad_sequences([]).shape == (0, 0)
    assert pad_sequences([[1, 2, 3]], maxlen=0).shape == (1, 0)


def test_pad_sequences_of_vectors():
    seqs = [np.ones((3, 2)), np.full((1, 2), 2.0), np.zeros((0, 2))]
    out = pad_sequences(seqs, dtype="float64", padding="post", value=-1.0)
    assert out.shape == (3, 3, 2)
    np.testing.assert_array_equal(out[1], [[2, 2], [-1, -1], [-1, -1]])
    np.testing.assert_array_equal(out[2], -np.ones((3, 2)))
    out = pad_sequences(seqs, maxlen=2, dtype="float64")
    np.testing.assert_array_equal(out[0], np.ones((2, 2)))
    np.testing.assert_array_equal(out[1], [[0, 0], [2, 2]])


def test_pad_sequences_errors():
    with pytest.raises(ValueError, match=r"sequences\[1\] has items of shape \(3,\), expected \(2,\)"):
        pad_sequences([np.ones((2, 2)), np.ones((2, 3))], dtype="float32")
    with pytest.raises(ValueError, match="padding must be one of 'pre', 'post', got 'middle'"):
        pad_sequences([[1]], padding="middle")
    with pytest.raises(ValueError, match="truncating must be one of"):
        pad_sequences([[1]], truncating=None)
    with pytest.raises(ValueError, match=r"sequences\[1\] must be a sequence"):
        pad_sequences([[1], 5])
    with pytest.raises(TypeError, match="sequences must be a list of sequences"):
        pad_sequences("abc")
    with pytest.raises(ValueError, match="maxlen must be >= 0"):
        pad_sequences([[1]], maxlen=-1)
    with pytest.raises(ValueError, match="value must be a str"):
        pad_sequences([["a"]], dtype="U3", value=0)


def test_pad_sequences_against_keras():
    keras = pytest.importorskip("keras")
    keras_pad = keras.utils.pad_sequences
    rng = np.random.default_rng(3)
    ragged = [rng.integers(1, 50, size=n).tolist() for n in (5, 0, 1, 9, 3, 12, 7)]
    vectors = [rng.standard_normal((n, 3)) for n in (4, 1, 6, 2)]
    for seqs, dtype in ((ragged, "int32"), (ragged, "float32"), (vectors, "float32"), (vectors, "float64")):
        for maxlen in (None, 1, 4, 15):
            for padding in ("pre", "post"):
                for truncating in ("pre", "post"):
                    for value in (0, -1.5):
                        kw = dict(maxlen=maxlen, dtype=dtype, padding=padding, truncating=truncating, value=value)
                        ours, theirs = pad_sequences(seqs, **kw), keras_pad(seqs, **kw)
                        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, kw
                        np.testing.assert_array_equal(ours, theirs, err_msg=str(kw))


def test_mask_from_lengths_and_back():
    mask = mask_from_lengths([3, 0, 1])
    assert mask.dtype == bool and mask.tolist() == [[True, True, True], [False] * 3, [True, False, False]]
    assert mask_from_lengths([1, 2], maxlen=4, padding="pre").tolist() == \
        [[False, False, False, True], [False, False, True, True]]
    lengths = np.random.default_rng(0).integers(0, 9, size=50)
    np.testing.assert_array_equal(lengths_from_mask(mask_from_lengths(lengths, maxlen=10)), lengths)
    assert lengths_from_mask(mask_from_lengths(lengths, maxlen=10)).dtype == np.int64
    assert lengths_from_mask(np.array([[1, 1, 0], [0, 0, 0]], dtype=np.uint8)).tolist() == [2, 0]
    with pytest.raises(ValueError, match="lengths has 5 .* more than maxlen=4"):
        mask_from_lengths([2, 5], maxlen=4)
    with pytest.raises(ValueError, match="lengths must be >= 0"):
        mask_from_lengths([2, -1])
    with pytest.raises(TypeError, match="lengths must hold integers"):
        mask_from_lengths([1.5])


def test_lengths_from_mask_needs_right_padding():
    pre = mask_from_lengths([2, 3], maxlen=4, padding="pre")
    with pytest.raises(ValueError, match="row 0 is 0011 .*strict=False"):
        lengths_from_mask(pre)
    gap = np.array([[True, True, False, False], [True, False, True, False]])
    with pytest.raises(ValueError, match="row 1 is 1010"):
        lengths_from_mask(gap)
    assert lengths_from_mask(pre, strict=False).tolist() == [2, 3]
    assert lengths_from_mask(gap, strict=False).tolist() == [2, 2]
    with pytest.raises(ValueError, match=r"mask must be 2-d \(B, T\), got shape \(4,\)"):
        lengths_from_mask(np.ones(4, dtype=bool))
    with pytest.raises(TypeError, match="mask must be bool"):
        lengths_from_mask(np.ones((2, 2)))
    with pytest.raises(ValueError, match="only 0 and 1"):
        lengths_from_mask(np.array([[2, 0]]))


def test_one_hot():
    out = one_hot([2, 0, 1], 4)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0]])
    idx = np.random.default_rng(1).integers(0, 5, size=(3, 4))
    out = one_hot(idx, 5, dtype="int64")
    assert out.shape == (3, 4, 5) and out.dtype == np.int64
    np.testing.assert_array_equal(out.argmax(-1), idx)
    np.testing.assert_array_equal(out.sum(-1), 1)
    np.testing.assert_array_equal(one_hot(np.array([1.0, 3.0]), None), [[0, 1, 0, 0], [0, 0, 0, 1]])
    with pytest.raises(ValueError, match=r"indices must be in \[0, num_classes=3\), got 3"):
        one_hot([0, 3], 3)
    with pytest.raises(ValueError, match="got -1"):
        one_hot([-1, 0], 3)
    with pytest.raises(TypeError, match="fractional"):
        one_hot([0.5], 3)
    with pytest.raises(TypeError, match="indices must be integers"):
        one_hot(["a"], 3)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        one_hot([0], 0)


# ---------------------------------------------------------------- tokenizers

TEXTS = ["the cat sat on the mat.", "The dog ate the cat's food!", "a bird; a plane, a cat?"]


def test_char_tokenizer_round_trip_and_order():
    tok = CharTokenizer().fit(TEXTS)
    assert tok.id_to_token(0) == "<pad>" and tok.id_to_token(1) == "<unk>"
    assert tok.token_to_id("<pad>") == 0 and tok.pad_id == 0 and tok.unk_id == 1
    for text in TEXTS:
        ids = tok.encode(text)
        assert all(i >= 2 for i in ids) and tok.decode(ids) == text
    counts = {}
    for ch in "".join(TEXTS):
        counts[ch] = counts.get(ch, 0) + 1
    expected = sorted(counts, key=lambda c: (-counts[c], c))
    assert tok.vocab == ["<pad>", "<unk>"] + expected
    assert tok.vocab_size == len(expected) + 2 == len(tok)
    assert CharTokenizer().fit(TEXTS[::-1]).vocab == tok.vocab          # order of texts does not matter


def test_char_tokenizer_unknown_cap_and_min_freq():
    tok = CharTokenizer(max_tokens=5).fit(["aaaabbbccd"])
    assert tok.vocab == ["<pad>", "<unk>", "a", "b", "c"]
    assert tok.encode("abcdz") == [2, 3, 4, 1, 1]
    assert tok.decode([2, 1, 3, 0, 0]) == "a<unk>b"
    assert tok.decode([2, 1, 3, 0], skip_special=False) == "a<unk>b<pad>"
    assert CharTokenizer(min_freq=3).fit(["aaaabbbccd"]).vocab == ["<pad>", "<unk>", "a", "b"]
    low = CharTokenizer(lower=True).fit(["AbA"])
    assert low.encode("aBa") == low.encode("ABA")


def test_word_tokenizer_split_rule():
    tok = WordTokenizer()
    assert tok.tokenize("Hello, world! Don't stop.") == ["hello", ",", "world", "!", "don't", "stop", "."]
    assert tok.tokenize("café  3.14\nnaïve_x") == ["café", "3", ".", "14", "naïve_x"]
    assert WordTokenizer(punctuation="drop").tokenize("Hi -- there!!") == ["hi", "there"]
    assert WordTokenizer(lower=False).tokenize("Hi There") == ["Hi", "There"]


def test_word_tokenizer_round_trip_and_unknown():
    tok = WordTokenizer().fit(TEXTS)
    assert tok.vocab[2:5] == ["the", "a", "cat"]      # 4, 3 and 2 times (lowered; "cat's" is one word)
    ids = tok.encode("The cat sat on a plane!")
    words = ["the", "cat", "sat", "on", "a", "plane", "!"]
    assert ids == [tok.token_to_id(w) for w in words] and min(ids) >= 2    # every word known: no <unk>
    assert tok.decode(ids) == "the cat sat on a plane !"
    ids = tok.encode("the zebra sat")
    assert ids[1] == 1 and tok.decode(ids) == "the <unk> sat"
    capped = WordTokenizer(max_tokens=4).fit(TEXTS)
    assert capped.vocab_size == 4 and capped.encode("the a cat") == [2, 3, 1]


def test_encode_batch_and_specials():
    tok = WordTokenizer(specials=("<bos>", "<eos>")).fit(TEXTS)
    assert tok.vocab[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert tok.token_to_id("<eos>") == 3 and tok.token_to_id("never-seen") == 1
    batch = tok.encode_batch(["the cat", "a", "the cat sat on"])
    assert [len(b) for b in batch] == [2, 1, 4]
    arr = tok.encode_batch(["the cat", "a", "the cat sat on"], pad=True)
    assert arr.dtype == np.int32 and arr.shape == (3, 4)
    assert arr[1].tolist() == [tok.token_to_id("a"), 0, 0, 0]
    assert tok.encode_batch(["the cat sat on"], maxlen=2).tolist() == [batch[2][:2]]
    ids = [2] + tok.encode("the cat") + [3, 0, 0]
    assert tok.decode(ids) == "the cat"
    assert tok.decode(ids, skip_special=False) == "<bos> the cat <eos> <pad> <pad>"
    assert tok.decode_batch(arr) == ["the cat", "a", "the cat sat on"]


def test_tokenizer_save_load(tmp_path):
    for tok in (CharTokenizer(min_freq=2).fit(TEXTS), WordTokenizer(specials=("<s>",), punctuation="drop").fit(TEXTS)):
        path = tmp_path / f"{type(tok).__name__}.json"
        tok.save(path)
        assert os.listdir(tmp_path).count(path.name) == 1
        assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
        back = type(tok).load(path)
        assert type(back) is type(tok) and back.vocab == tok.vocab and back.get_config() == tok.get_config()
        for text in TEXTS:
            assert back.encode(text) == tok.encode(text)
        assert type(load_tokenizer(str(path))) is type(tok)
        data = json.loads(path.read_text(encoding="utf-8"))
        assert data["format"] == "fastrnn.tokenizer" and data["version"] == 1
    with pytest.raises(ValueError, match="holds a CharTokenizer, not a WordTokenizer"):
        WordTokenizer.load(tmp_path / "CharTokenizer.json")


def test_tokenizer_get_config_round_trip():
    tok = WordTokenizer(max_tokens=50, min_freq=2, lower=False, punctuation="drop", specials=["<bos>"])
    config = tok.get_config()
    assert config == {"lower": False, "max_tokens": 50, "min_freq": 2, "specials": ["<bos>"], "punctuation": "drop"}
    assert WordTokenizer.from_config(json.loads(json.dumps(config))).get_config() == config
    assert CharTokenizer.from_config(CharTokenizer(lower=True).get_config()).lower is True


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "tok.json"
    CharTokenizer().fit(["abc"]).save(path)
    before = path.read_bytes()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(tokenizers_module.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        CharTokenizer().fit(["xyz", "more text"]).save(path)
    assert path.read_bytes() == before                       # the old file is intact
    assert os.listdir(tmp_path) == ["tok.json"]             # and no temporary file is left


@pytest.mark.parametrize("content,message", [
    ('{"format": "fastrnn.tokenizer", "version": 1, "cla', "corrupt JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"format": "other", "version": 1}', "format is 'other'"),
    ('{"format": "fastrnn.tokenizer", "version": 7, "class": "CharTokenizer"}', "version 7 is newer"),
    ('{"format": "fastrnn.tokenizer", "version": "1"}', "version must be a positive int"),
    ('{"format": "fastrnn.tokenizer", "version": 1, "class": "BPE", "config": {}, "vocab": []}', "class must be"),
    ('{"format": "fastrnn.tokenizer", "version": 1, "class": "CharTokenizer", "config": {"size": 3}, '
     '"vocab": ["<pad>", "<unk>"]}', "bad config"),
    ('{"format": "fastrnn.tokenizer", "version": 1, "class": "CharTokenizer", "config": {}, '
     '"vocab": ["<unk>", "<pad>", "a"]}', "must start with the reserved tokens"),
    ('{"format": "fastrnn.tokenizer", "version": 1, "class": "CharTokenizer", "config": {}, '
     '"vocab": ["<pad>", "<unk>", "a", "a"]}', "lists 'a' twice"),
    ('{"format": "fastrnn.tokenizer", "version": 1, "class": "CharTokenizer", "config": {}, '
     '"vocab": ["<pad>", "<unk>", "ab"]}', "single characters"),
    ('{"format": "fastrnn.tokenizer", "version": 1, "class": "WordTokenizer", "config": {}, '
     '"vocab": ["<pad>", "<unk>", 5]}', "list of strings"),
])
def test_load_rejects_corrupt_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as err:
        load_tokenizer(path)
    assert "bad.json" in str(err.value)


def test_tokenizer_errors(tmp_path):
    with pytest.raises(RuntimeError, match="call fit"):
        CharTokenizer().encode("a")
    with pytest.raises(RuntimeError, match="call fit"):
        CharTokenizer().save(tmp_path / "x.json")
    with pytest.raises(TypeError, match="not a single str"):
        CharTokenizer().fit("some text")
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, got int"):
        CharTokenizer().fit(["a", 3])
    tok = CharTokenizer().fit(["abc"])
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        tok.encode(b"abc")
    with pytest.raises(ValueError, match=r"ids must be in \[0, vocab_size=5\), got 9"):
        tok.decode([2, 9])
    with pytest.raises(ValueError, match="ids must be 1-d"):
        tok.decode([[2, 3]])
    with pytest.raises(ValueError, match=r"index must be in \[0, vocab_size=5\)"):
        tok.id_to_token(5)
    with pytest.raises(ValueError, match="max_tokens must be >= 2"):
        CharTokenizer(max_tokens=1)
    with pytest.raises(ValueError, match="max_tokens must be >= 3"):
        CharTokenizer(max_tokens=2, specials=["<s>"])
    with pytest.raises(ValueError, match="specials must be unique"):
        WordTokenizer(specials=["<pad>"])
    with pytest.raises(ValueError, match="punctuation must be one of"):
        WordTokenizer(punctuation="keep")
    with pytest.raises(TypeError, match="lower must be a bool"):
        WordTokenizer(lower="yes")
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path / "missing.json")


# ---------------------------------------------------------------- bucket iterator

def ragged(n, seed=0, high=30, features=None):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, high, size=n)
    shape = (lambda L: (L,)) if features is None else (lambda L: (L, features))
    return [rng.integers(1, 100, size=shape(L)).astype(np.int64) for L in lengths]


@pytest.mark.parametrize("buckets", [None, 1, 3, 100])
@pytest.mark.parametrize("padding", ["post", "pre"])
def test_bucket_iterator_covers_every_sample_once(buckets, padding):
    seqs = ragged(103)
    it = BucketIterator(seqs, np.arange(103), batch_size=8, buckets=buckets, seed=1, padding=padding)
    assert len(it) == 13
    for _ in range(3):
        seen = []
        batches = list(it)
        assert len(batches) == len(it)
        for x, y, lengths in batches:
            assert x.shape == (len(y), lengths.max()) and x.dtype == np.int64 and lengths.dtype == np.int64
            for row, i, L in zip(x, y, lengths):
                assert L == len(seqs[i])
                kept, pad = (row[:L], row[L:]) if padding == "post" else (row[len(row) - L:], row[:len(row) - L])
                np.testing.assert_array_equal(kept, seqs[i])
                assert not pad.any()
            seen.extend(y.tolist())
        assert sorted(seen) == list(range(103))
        assert sum(len(b[1]) == 8 for b in batches) == 12      # one partial batch only


def test_bucket_iterator_drop_last():
    it = BucketIterator(ragged(50), np.arange(50), batch_size=8, buckets=2, drop_last=True, seed=4)
    assert len(it) == 6
    left_out = []
    for _ in range(6):
        ys = [y for _, y, _ in it]
        assert len(ys) == 6 and all(len(y) == 8 for y in ys)
        used = np.concatenate(ys)
        assert len(set(used.tolist())) == 48
        left_out.append(frozenset(set(range(50)) - set(used.tolist())))
    assert len(set(left_out)) > 1              # not the same samples left out every epoch
    with pytest.raises(ValueError, match="leaves no batch"):
        BucketIterator(ragged(5), batch_size=8, drop_last=True)


def test_bucket_iterator_batches_are_length_sorted_runs():
    seqs = ragged(200, seed=2, high=60)
    lengths = np.array([len(s) for s in seqs])
    it = BucketIterator(seqs, np.arange(200), batch_size=10, seed=0)
    sorted_lengths = np.sort(lengths)
    runs = {tuple(sorted_lengths[j:j + 10]) for j in range(0, 200, 10)}
    orders = []
    for _ in range(2):
        maxima = []
        for _, y, batch_lengths in it:
            assert tuple(np.sort(batch_lengths)) in runs
            maxima.append(int(batch_lengths.max()))
        assert maxima != sorted(maxima)            # batches are shuffled across buckets
        orders.append(maxima)
    assert orders[0] != orders[1]                  # differently each epoch
    # without shuffling: ascending lengths, the same every epoch
    fixed = BucketIterator(seqs, np.arange(200), batch_size=10, shuffle=False)
    first = [y.tolist() for _, y, _ in fixed]
    assert first == [y.tolist() for _, y, _ in fixed]
    maxima = [lengths[y].max() for y in map(np.array, first)]
    assert maxima == sorted(maxima)


def skewed_lengths(n=10000, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.lognormal(np.log(20), 0.9, n)), 1, 400).astype(int)


def test_bucket_padding_savings():
    """The numbers quoted in fastrnn/data/batching.py's docstring."""
    seqs = [np.ones(L, dtype=np.int32) for L in skewed_lengths()]
    frac = {b: np.mean([BucketIterator(seqs, batch_size=32, buckets=b, seed=s).padding_fraction() for s in range(5)])
            for b in (1, 8, 32, None)}
    print({b: round(f, 4) for b, f in frac.items()})
    assert 0.75 < frac[1] < 0.81            # random batching: ~78% padding
    assert 0.39 < frac[8] < 0.45            # ~42%
    assert 0.12 < frac[32] < 0.20           # ~16%
    assert frac[None] < 0.025               # ~1.9%
    assert (1 - frac[None]) / (1 - frac[1]) > 4.0      # > 4x fewer computed steps


def test_padding_fraction_matches_an_epoch_and_keeps_the_random_state():
    seqs = ragged(300, seed=5, high=80)
    a = BucketIterator(seqs, batch_size=16, buckets=4, seed=9)
    b = BucketIterator(seqs, batch_size=16, buckets=4, seed=9)
    predicted = a.padding_fraction()
    real = padded = 0
    batches_a = list(a)
    for x, _, lengths in batches_a:
        real += lengths.sum()
        padded += x.shape[0] * x.shape[1]
    assert predicted == pytest.approx(1 - real / padded)
    for (xa, _, la), (xb, _, lb) in zip(batches_a, b):        # b never called padding_fraction
        np.testing.assert_array_equal(xa, xb)


def test_bucket_iterator_seed_reproducible():
    seqs = ragged(120)

    def epochs(seed, n=3, buckets=3):
        it = BucketIterator(seqs, np.arange(120), batch_size=7, buckets=buckets, seed=seed)
        return [[y.tolist() for _, y, _ in it] for _ in range(n)]

    assert epochs(11) == epochs(11)
    assert epochs(11) != epochs(12)
    e = epochs(11)
    assert e[0] != e[1]                                    # each epoch reshuffles
    gen_a, gen_b = np.random.default_rng(5), np.random.default_rng(5)
    assert [y.tolist() for _, y, _ in BucketIterator(seqs, np.arange(120), 7, seed=gen_a)] == \
        [y.tolist() for _, y, _ in BucketIterator(seqs, np.arange(120), 7, seed=gen_b)]


def test_bucket_iterator_vectors_and_targets():
    seqs = ragged(30, features=3)
    step_targets = [s[:, 0] * 2 for s in seqs]               # one label per step
    it = BucketIterator(seqs, step_targets, batch_size=4, seed=0, value=-1)
    for x, y, lengths in it:
        assert x.shape[2] == 3 and y.shape == x.shape[:2]
        np.testing.assert_array_equal(y[x[:, :, 0] != -1], 2 * x[:, :, 0][x[:, :, 0] != -1])
        assert (y[mask_from_lengths(lengths) == 0] == -1).all()
    onehots = one_hot(np.arange(30) % 4, 4)
    it = BucketIterator(seqs, onehots, batch_size=4, seed=0, dtype="float32", return_lengths=False)
    batch = next(iter(it))
    assert len(batch) == 2 and batch[0].dtype == np.float32 and batch[1].shape[1:] == (4,)
    x, y, lengths = next(iter(BucketIterator(seqs, batch_size=4)))
    assert y is None


def test_bucket_iterator_errors():
    seqs = ragged(10)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        BucketIterator(seqs, batch_size=0)
    with pytest.raises(ValueError, match="buckets must be >= 1"):
        BucketIterator(seqs, buckets=0)
    with pytest.raises(TypeError, match="buckets must be an int or None"):
        BucketIterator(seqs, buckets=2.5)
    with pytest.raises(ValueError, match=r"targets must have one entry per sequence \(10\), got 9"):
        BucketIterator(seqs, np.arange(9))
    with pytest.raises(ValueError, match=r"targets\[0\] has .* steps but sequences\[0\] has"):
        BucketIterator(seqs, [np.zeros(len(s) + 1) for s in seqs[:5]] + [np.zeros(2)] * 5)
    with pytest.raises(ValueError, match="padding must be one of"):
        BucketIterator(seqs, padding="both")
    with pytest.raises(ValueError, match="at least one sequence"):
        BucketIterator([])
    with pytest.raises(ValueError, match=r"sequences\[1\] has items of shape"):
        BucketIterator([np.ones((2, 3)), np.ones((2, 4))])
    with pytest.raises(TypeError, match="shuffle must be a bool"):
        BucketIterator(seqs, shuffle=1)
    with pytest.raises(TypeError, match="seed must be an int"):
        BucketIterator(seqs, seed="x")
