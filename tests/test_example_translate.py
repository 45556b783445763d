"""Smoke test of examples/translate_numbers.py (English -> French numbers, encoder-decoder):
a shortened run on the numbers 0..999 (small LSTMs, 200 batches, a few seconds) must learn,
and beam search of width 1 must give exactly the greedy translations."""
import importlib.util
import os

import numpy as np
import pytest

pytest.importorskip("num2words")

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, os.pardir, "examples", "translate_numbers.py")

# 0..999: 700 training, 100 validation, 200 test numbers (disjoint), 8 epochs of 25 batches of 32.
SMOKE = ["--max-number", "999", "--train-size", "700", "--val-size", "100", "--test-size", "200",
         "--units", "64", "--embed", "32", "--batch-size", "32", "--epochs", "8", "--steps", "25",
         "--lr", "0.02", "--beam", "3", "--examples", "0", "--verbose", "0", "--no-plot"]


def _load():
    spec = importlib.util.spec_from_file_location("translate_numbers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example():
    return _load()


@pytest.fixture(scope="module")
def run(example):
    return example.main(SMOKE)


def test_french_tokens_round_trip(example):
    from num2words import num2words
    for n in (0, 21, 71, 80, 81, 99, 180, 200, 1001, 80_000, 371_971, 999_999):
        text = num2words(n, lang="fr")
        tokens = example.french_tokens(text)
        assert example.french_text(tokens) == text
        assert all(" " not in t and t.count("-") <= 1 for t in tokens)
    assert example.french_tokens("quatre-vingt-dix-neuf mille") == ["quatre-", "vingt-", "dix-", "neuf", "mille"]


def test_test_numbers_are_held_out(example):
    rng = np.random.default_rng(0)
    test = example.draw_numbers(rng, 200, 999, 0.1)
    train = example.draw_numbers(rng, 700, 999, 0.1, exclude=test)
    assert len(set(test.tolist())) == 200 and len(set(train.tolist())) == 700
    assert not set(test.tolist()) & set(train.tolist())


def test_learning_happened(run):
    """At the start the loss is ln(vocabulary) ~ 3.6 per token and nothing is translated."""
    h = run["history"]
    assert h["loss"][0] > 2.0
    assert h["loss"][-1] < 0.6, h["loss"]
    assert h["val_loss"][-1] < 0.7, h["val_loss"]
    assert run["greedy"] >= 0.25, run["greedy"]       # exact match on 200 held-out numbers
    assert run["beam"] >= 0.25, run["beam"]


def test_beam_width_one_is_greedy(run):
    translator, test, vocab = run["translator"], run["test"], run["tgt_vocab"]
    (src, _), _ = test.arrays()
    greedy = translator.greedy(src)
    beam1 = translator.beam(src, width=1)
    np.testing.assert_array_equal(beam1, greedy)        # same tokens, same number of steps
    assert translator.translate(src, beam=1).tolist() == greedy.tolist()
    # a wider beam decodes something for every number, ending in <eos>
    wide = translator.beam(src, width=3)
    assert wide.shape[0] == len(src) and (wide == vocab.EOS).any(axis=1).all()
    assert sum(vocab.decode(r) == t for r, t in zip(wide, test.french)) >= 0.25 * len(src)
