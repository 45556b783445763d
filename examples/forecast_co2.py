"""Forecast the next 12 months of Mauna Loa CO2 with an LSTM, against the naive forecasts.

    python examples/forecast_co2.py

Data: statsmodels' `co2` dataset (weekly CO2 at Mauna Loa, ppm, March 1958 to
December 2001; it ships inside statsmodels, no download). The weekly values
are averaged into calendar months (526 months). Months with no measurement at
all (5 of them: 1958-06, 1958-10, 1964-02..04) are filled by linear
interpolation between their neighbours; the missing weeks inside other months
are simply left out of those months' means.

Task: from the last 24 months, predict each of the next 12 months (a direct
multi-output forecast). Windows come from `fastrnn.data.windows_split`, which
splits the series in time order first (70% train, 15% validation, 15% test:
from mid-1995 on) and windows each part on its own, so no training window
reads a validation or test value. Test targets are all in the test part.

Inputs per month: the CO2 level relative to the last observed month of the
window (the window's own level is removed, so the network never has to
extrapolate the rising trend) and the month of the year as (sin, cos). The
targets are the next 12 months relative to that same last month. The scale of
both is the standard deviation of the training targets only (training
statistics only; validation and test never feed a statistic).

Model: LSTM(64) -> Dense(12), Adam with a cosine schedule, the best epoch on
validation RMSE kept. Baselines on the same test windows: last value (every
future month = the last observed month) and seasonal naive (each future
month = the same month a year earlier, which lies inside the window).

Prints the three test RMSEs (ppm, over all 12 horizons), and saves the
forecast against the truth under examples/out/.
"""
import argparse
import os
import time

import numpy as np

import fastrnn as fr
from fastrnn import callbacks, layers, optimizers
from fastrnn.data import windows_split

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")


def load_monthly_co2():
    """(dates, values): monthly means of statsmodels' weekly co2, gaps filled by linear interpolation."""
    from statsmodels.datasets import co2
    weekly = co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean()
    gaps = monthly.index[monthly.isna()]
    monthly = monthly.interpolate(method="linear")
    return monthly.index, monthly.to_numpy(np.float64), gaps


def make_windows(values, months, window, horizon, val, test):
    """Windows split in time order; returns a dict split -> (X, Y, index, anchor) in ppm (unscaled)."""
    angle = 2 * np.pi * months / 12
    series = np.column_stack([values, np.sin(angle), np.cos(angle)])
    parts = windows_split(series, window, horizon, val=val, test=test, target=0, return_index=True)
    out = {}
    for name, (X, Y, index) in zip(("train", "val", "test"), parts):
        anchor = X[:, -1, 0].copy()                          # the last observed month of each window
        out[name] = (X, Y[:, :, 0], index, anchor)
    return out


def to_model(X, Y, anchor, scale):
    """Remove each window's level (its last value) and scale: the network's inputs and targets."""
    x = X.copy()
    x[:, :, 0] = (X[:, :, 0] - anchor[:, None]) / scale
    y = None if Y is None else (Y - anchor[:, None]) / scale
    return x.astype(np.float32), (None if y is None else y.astype(np.float32))


def rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def plot(path, dates, values, test, forecast, seasonal, window, horizon, scores):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    _, Y, index, anchor = test
    fig, axes = plt.subplots(2, 1, figsize=(10, 7.5), gridspec_kw={"height_ratios": [3, 2]})
    ax = axes[0]
    lo = index[0] - window
    ax.plot(dates[lo:], values[lo:], color="black", lw=1.4, label="truth (monthly mean)")
    # Non-overlapping 12-month forecasts from origins a year apart.
    for n, i in enumerate(range(0, len(index), horizon)):
        t = index[i]
        d = dates[t:t + horizon]
        ax.plot(d, forecast[i], color="C0", lw=1.6, label="LSTM, 12 months ahead" if n == 0 else None)
        ax.plot(d, seasonal[i], color="C1", lw=1, ls="--", label="seasonal naive" if n == 0 else None)
        ax.plot(d, np.full(len(d), anchor[i]), color="C2", lw=1, ls=":", label="last value" if n == 0 else None)
        ax.axvline(dates[t], color="gray", lw=0.5, alpha=0.5)
    ax.set_ylabel("CO2 (ppm)")
    ax.set_title(f"Mauna Loa CO2, held-out test years: 12-month forecasts from origins a year apart\n"
                 f"test RMSE (all 12 horizons): LSTM {scores['lstm']:.2f}, seasonal naive "
                 f"{scores['seasonal']:.2f}, last value {scores['last']:.2f} ppm")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[1]
    h = np.arange(1, horizon + 1)
    ax.plot(h, np.sqrt(np.mean((forecast - Y) ** 2, axis=0)), "o-", label="LSTM")
    ax.plot(h, np.sqrt(np.mean((seasonal - Y) ** 2, axis=0)), "s--", label="seasonal naive")
    ax.plot(h, np.sqrt(np.mean((anchor[:, None] - Y) ** 2, axis=0)), "^:", label="last value")
    ax.set_xlabel("months ahead")
    ax.set_ylabel("test RMSE (ppm)")
    ax.set_xticks(h)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--window", type=int, default=24, help="months of history per forecast")
    p.add_argument("--horizon", type=int, default=12, help="months to forecast")
    p.add_argument("--units", type=int, default=64)
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=OUT, help="folder of the PNG (default examples/out)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--verbose", type=int, default=0)
    args = p.parse_args(argv)
    t0 = time.perf_counter()

    dates, values, gaps = load_monthly_co2()
    months = dates.month.to_numpy() - 1
    data = make_windows(values, months, args.window, args.horizon, val=0.15, test=0.15)
    X_tr, Y_tr, _, a_tr = data["train"]
    X_te, Y_te, idx_te, a_te = data["test"]
    print(f"{len(values)} months {dates[0]:%Y-%m} .. {dates[-1]:%Y-%m} ({len(gaps)} empty months interpolated); "
          f"windows: {len(X_tr)} train, {len(data['val'][0])} val, {len(X_te)} test "
          f"(test targets from {dates[idx_te[0]]:%Y-%m})")

    scale = float(np.std(Y_tr - a_tr[:, None]))              # training statistics only
    x_tr, y_tr = to_model(X_tr, Y_tr, a_tr, scale)
    x_va, y_va = to_model(*[data["val"][i] for i in (0, 1, 3)], scale)
    x_te, _ = to_model(X_te, None, a_te, scale)

    model = fr.Sequential([
        layers.Input((args.window, 3)),
        layers.LSTM(args.units),
        layers.Dense(args.horizon),
    ], seed=args.seed)
    steps = args.epochs * int(np.ceil(len(x_tr) / args.batch_size))
    model.compile(optimizers.Adam(optimizers.schedules.CosineDecay(args.lr, steps, alpha=0.02), clipnorm=1.0),
                  "mse")
    history = model.fit(x_tr, y_tr, batch_size=args.batch_size, epochs=args.epochs, verbose=args.verbose,
                        validation_data=(x_va, y_va), seed=args.seed,
                        callbacks=[callbacks.EarlyStopping(patience=args.epochs, restore_best_weights=True)])
    forecast = model.predict(x_te) * scale + a_te[:, None]
    w = args.window
    seasonal = X_te[:, w - 12: w - 12 + args.horizon, 0] if args.horizon <= 12 else None
    scores = {"lstm": rmse(forecast, Y_te), "last": rmse(a_te[:, None], Y_te),
              "seasonal": rmse(seasonal, Y_te) if seasonal is not None else float("nan")}
    val_loss = history.history["val_loss"]
    print(f"training: loss {history.history['loss'][0]:.3f} -> {history.history['loss'][-1]:.4f}, "
          f"best val_loss {min(val_loss):.4f} (epoch {int(np.argmin(val_loss)) + 1})")
    print(f"test RMSE over {args.horizon} horizons (ppm): LSTM {scores['lstm']:.3f}, "
          f"seasonal naive {scores['seasonal']:.3f}, last value {scores['last']:.3f}")
    if not args.no_plot:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "forecast_co2.png")
        plot(path, dates, values, data["test"], forecast, seasonal, w, args.horizon, scores)
        print(f"saved {path}")
    print(f"wall time {time.perf_counter() - t0:.0f} s")
    return scores


if __name__ == "__main__":
    main()
