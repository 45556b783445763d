"""Smoke test of examples/digits_lstm.py: a shortened run (8 epochs, seed 0) of the
row-by-row LSTM on scikit-learn's 8x8 digits must learn (test accuracy far above
the 10% of guessing) and save its two plots. The full run reaches >= 97%."""
import importlib.util
import os

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "digits_lstm.py")


def load_example():
    spec = importlib.util.spec_from_file_location("digits_lstm_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_lstm_learns(tmp_path):
    example = load_example()
    result = example.main(epochs=8, seed=0, out=str(tmp_path), verbose=0)
    print(f"\ndigits smoke test: test accuracy {result['accuracy']:.4f} after {result['epochs']} epochs, "
          f"{result['seconds']:.1f} s")
    losses = result["history"]["loss"]
    assert losses[-1] < 0.5 * losses[0]
    assert result["accuracy"] > 0.85
    cm = result["confusion"]
    assert cm.shape == (10, 10) and cm.sum() == 450 and np.trace(cm) == round(result["accuracy"] * 450)
    for name in ("digits_curves.png", "digits_confusion.png"):
        assert os.path.getsize(tmp_path / name) > 1000
