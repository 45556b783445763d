"""Smoke test of examples/text_classifier.py: a shortened run that must learn.

The synthetic review file of `--make-demo` (4,000 lines; negation and "X but Y"
clauses, which a bag of words cannot solve), word level, GRU(32), 3 epochs
(measured: test accuracy 1.0). The GRU must reach 95% test accuracy where the
bag-of-words naive Bayes stays near 60%, and the training loss must fall below
0.2 (from about ln 2 = 0.69). Needs matplotlib (`pip install ".[examples]"`);
skipped without it.
"""
import os

import pytest

import fastrnn as fr

from conftest import load_example


@pytest.fixture(autouse=True)
def one_thread():
    with fr.num_threads(1):
        yield


def test_text_classifier_learns(tmp_path):
    pytest.importorskip("matplotlib")
    ex = load_example("text_classifier")
    path = str(tmp_path / "reviews.tsv")
    ex.main(["--make-demo", path])
    r = ex.main([path, "--epochs", "3", "--units", "32", "--embed", "16", "--lr", "1e-2", "--out", str(tmp_path),
                 "--save", str(tmp_path / "model"), "--verbose", "0"])
    loss = r["history"]["loss"]
    print(f"\ntext classifier (synthetic reviews): GRU {r['accuracy']:.3f}, bag of words {r['bag_of_tokens']:.3f}, "
          f"majority {r['majority']:.3f}, loss {loss[0]:.3f} -> {loss[-1]:.3f}")
    assert loss[-1] < 0.2                        # from about ln 2 = 0.69
    assert r["accuracy"] >= 0.95 > r["bag_of_tokens"] + 0.2
    assert os.path.getsize(tmp_path / "model.fastrnn") > 0
