"""Smoke test of examples/forecast_co2.py: a shortened run (15 epochs instead of 150) that must learn.

Monthly Mauna Loa CO2 (statsmodels), 24 months in, the next 12 months out,
LSTM(64). The naive forecasts on the same test windows (mid-1995 on) score
about 1.86 ppm (seasonal naive) and 3.25 ppm (last value); the shortened run
reaches about 0.72-0.74 ppm, the full run 0.63-0.67 ppm. The bound, 1.2 ppm, fails
when training breaks but not on noise. Needs statsmodels and matplotlib
(`pip install ".[examples]"`); skipped without them.
"""
import os

import pytest

import fastrnn as fr

from conftest import load_example


@pytest.fixture(autouse=True)
def one_thread():
    with fr.num_threads(1):
        yield


def test_forecast_co2_beats_naive(tmp_path):
    pytest.importorskip("statsmodels")
    pytest.importorskip("matplotlib")
    ex = load_example("forecast_co2")
    s = ex.main(["--epochs", "15", "--out", str(tmp_path)])
    print(f"\nCO2 12-month forecast (shortened): test RMSE LSTM {s['lstm']:.3f}, "
          f"seasonal naive {s['seasonal']:.3f}, last value {s['last']:.3f} ppm")
    assert s["seasonal"] == pytest.approx(1.863, abs=0.01)   # the data and the split are what the README says
    assert s["last"] == pytest.approx(3.249, abs=0.01)
    assert s["lstm"] < 1.2 < s["seasonal"] < s["last"]
    assert os.path.getsize(tmp_path / "forecast_co2.png") > 0
