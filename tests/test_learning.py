"""Learning tests on synthetic data: the models must actually learn.

- adding problem (T=50): an LSTM reaches test MSE < 0.01 (predicting the mean gives ~0.17);
- sine-wave forecasting: beats the naive last-value forecast by 5x in test MSE;
- copy task: 5 symbols out of 8, a delimiter, then the model writes them back; per-symbol
  test accuracy >= 0.98 (chance 1/8) and >= 90% of the sequences copied without error.

Everything is seeded (data, weights, shuffling). The problems are small, so the
engine runs them on one thread (its results do not depend on the thread count;
one thread keeps the time predictable on a loaded machine). Each test prints its
numbers (`pytest -s`).
"""
import numpy as np
import pytest

import fastrnn as fr
from fastrnn import layers, losses, optimizers


@pytest.fixture(autouse=True)
def one_thread():
    with fr.num_threads(1):
        yield


def adding_problem(n, T, rng):
    """x (n, T, 2): values in [0, 1) and a marker channel with two ones; y: the sum of the marked values."""
    x = np.zeros((n, T, 2), np.float32)
    x[:, :, 0] = rng.random((n, T))
    first = rng.integers(0, T // 2, n)
    second = rng.integers(T // 2, T, n)
    x[np.arange(n), first, 1] = 1
    x[np.arange(n), second, 1] = 1
    y = (x[:, :, 0] * x[:, :, 1]).sum(axis=1, keepdims=True)
    return x, y


def test_adding_problem_lstm():
    rng = np.random.default_rng(0)
    T = 50
    x, y = adding_problem(4000, T, rng)
    x_test, y_test = adding_problem(1000, T, rng)
    baseline = float(np.mean((y_test - y.mean()) ** 2))
    model = fr.Sequential([layers.LSTM(32), layers.Dense(1)], seed=0)
    model.compile(optimizers.Adam(0.01), "mse")
    model.fit(x, y, batch_size=50, epochs=15, verbose=0, seed=0)
    mse = model.evaluate(x_test, y_test, verbose=0)
    print(f"\nadding problem T={T}: test MSE {mse:.5f} (predicting the mean: {baseline:.4f})")
    assert mse < 0.01


def sine_windows(n, window, rng):
    """Windows of sines with random amplitude, frequency and phase; the target is the next value."""
    t = np.arange(window + 1)
    amp = rng.uniform(0.5, 1.5, (n, 1))
    freq = rng.uniform(0.05, 0.3, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    s = (amp * np.sin(freq * t + phase)).astype(np.float32)
    return s[:, :window, None], s[:, window:]


def test_sine_forecaster_beats_last_value():
    rng = np.random.default_rng(1)
    x, y = sine_windows(2000, 20, rng)
    x_test, y_test = sine_windows(500, 20, rng)
    naive = float(np.mean((x_test[:, -1] - y_test) ** 2))
    model = fr.Sequential([layers.LSTM(32), layers.Dense(1)], seed=1)
    model.compile(optimizers.Adam(0.01), "mse")
    model.fit(x, y, batch_size=32, epochs=8, verbose=0, seed=1, validation_split=0.1)
    mse = model.evaluate(x_test, y_test, verbose=0)
    print(f"\nsine forecast: test MSE {mse:.2e}, last-value baseline {naive:.2e} ({naive / mse:.0f}x better)")
    assert mse * 5 < naive


def copy_task(n, K, L, rng):
    """Input: L symbols in 1..K, a delimiter K+1, L blanks (0). Target: 0 for the first L+1 steps,
    then the L symbols again."""
    symbols = rng.integers(1, K + 1, (n, L))
    x = np.concatenate([symbols, np.full((n, 1), K + 1), np.zeros((n, L), np.int64)], axis=1)
    y = np.concatenate([np.zeros((n, L + 1), np.int64), symbols], axis=1)
    return x, y


def test_copy_task():
    rng = np.random.default_rng(2)
    K, L, epochs = 8, 5, 32
    x, y = copy_task(4000, K, L, rng)
    x_test, y_test = copy_task(500, K, L, rng)
    model = fr.Sequential([layers.Embedding(K + 2, 16), layers.LSTM(64, return_sequences=True),
                           layers.Dense(K + 1)], seed=2)
    steps = epochs * int(np.ceil(len(x) / 32))
    model.compile(optimizers.Adam(optimizers.schedules.CosineDecay(0.01, steps, alpha=0.05), clipnorm=1.0),
                  losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, seed=2)
    pred = model.predict(x_test).argmax(axis=-1)[:, L + 1:]
    symbol_acc = float(np.mean(pred == y_test[:, L + 1:]))
    seq_acc = float(np.mean(np.all(pred == y_test[:, L + 1:], axis=1)))
    print(f"\ncopy task (K={K}, L={L}): symbol accuracy {symbol_acc:.4f}, sequences copied exactly {seq_acc:.3f}")
    assert symbol_acc >= 0.98 and seq_acc >= 0.9
