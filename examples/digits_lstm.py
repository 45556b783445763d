"""Image recognition with an LSTM: scikit-learn's handwritten digits, row by row.

Each 8x8 image of `sklearn.datasets.load_digits` (1,797 images, shipped inside
scikit-learn, no download) is read as a sequence of 8 time steps (its rows),
8 features each (the pixels of the row, scaled to [0, 1]). An LSTM reads the
rows top to bottom and a Dense softmax layer names the digit from its last
state:

    (8 rows, 8 pixels) -> LSTM(64) -> Dropout(0.2) -> Dense(10, softmax)

The data is split once, stratified and seeded, into training (75%) and test
(25%) images; the last 10% of the training images validate during training
(ReduceLROnPlateau lowers Adam's learning rate when the validation loss
stalls; EarlyStopping keeps the best weights by validation loss). The test
images are used once, at the end. The problem is small (batches of 32, 64
units), so it runs on one thread by default: on a busy 2-core machine two
threads were ten times slower.

    python examples/digits_lstm.py [--epochs 60] [--units 64] [--seed 0] [--threads 1] [--out examples/out]

prints the test accuracy and saves `digits_confusion.png` (the confusion matrix
on the test images) and `digits_curves.png` (loss and accuracy per epoch).
"""
import argparse
import os
import sys
import time

import numpy as np

import fastrnn as fr
from fastrnn import callbacks, layers, optimizers

HERE = os.path.dirname(os.path.abspath(__file__))


def load_data(seed=0, test_size=0.25):
    """(x_train, y_train), (x_test, y_test): images as (n, 8 rows, 8 pixels) in [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)          # (1797, 8, 8): pixels 0..16
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, stratify=y, random_state=seed)
    return (x_train, y_train), (x_test, y_test)


def build_model(units=64, seed=0, lr=1e-2):
    model = fr.Sequential([
        layers.Input((8, 8)),                  # 8 time steps (rows) of 8 features (pixels)
        layers.LSTM(units),
        layers.Dropout(0.2),
        layers.Dense(10, activation="softmax"),
    ], name="digits_lstm", seed=seed)
    model.compile(optimizer=optimizers.Adam(lr, clipnorm=1.0),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def confusion_matrix(y_true, y_pred, n=10):
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def save_plots(history, cm, accuracy, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(out, exist_ok=True)

    fig = history.plot(["loss", "accuracy"])
    fig.suptitle("LSTM on 8x8 digits, row by row")
    fig.tight_layout()
    curves = os.path.join(out, "digits_curves.png")
    fig.savefig(curves, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    im = ax.imshow(cm, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(f"test confusion matrix (accuracy {accuracy:.1%})")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    confusion = os.path.join(out, "digits_confusion.png")
    fig.savefig(confusion, dpi=110)
    plt.close(fig)
    return curves, confusion


def main(epochs=60, units=64, batch_size=32, lr=1e-2, seed=0, out=os.path.join(HERE, "out"),
         patience=10, threads=1, plots=True, verbose=2):
    """Train and test; returns a dict with the test accuracy, the history, the wall time."""
    with fr.num_threads(threads):
        return _run(epochs, units, batch_size, lr, seed, out, patience, plots, verbose)


def _run(epochs, units, batch_size, lr, seed, out, patience, plots, verbose):
    t0 = time.perf_counter()
    (x, y), (x_test, y_test) = load_data(seed)
    print(f"digits: {len(x)} training and {len(x_test)} test images, each 8 rows of 8 pixels")
    model = build_model(units, seed, lr)
    schedule = [callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=4, min_lr=1e-4),
                callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)]
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, validation_split=0.1,
                        seed=seed, verbose=verbose, callbacks=schedule)
    probs = model.predict(x_test, batch_size=256)
    pred = probs.argmax(axis=1)
    accuracy = float(np.mean(pred == y_test))
    cm = confusion_matrix(y_test, pred)
    wall = time.perf_counter() - t0
    print(f"test accuracy: {accuracy:.4f} ({int((pred == y_test).sum())}/{len(y_test)} images) "
          f"after {len(history.epoch)} epochs, {wall:.1f} s")
    files = save_plots(history, cm, accuracy, out) if plots else ()
    for f in files:
        print(f"saved {f}")
    return {"accuracy": accuracy, "confusion": cm, "history": history.history,
            "epochs": len(history.epoch), "seconds": wall, "files": files, "model": model}


def cli(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=60, help="at most this many epochs (early stopping)")
    p.add_argument("--units", type=int, default=64, help="LSTM units")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0, help="split, weights and shuffling")
    p.add_argument("--threads", type=int, default=1, help="engine threads")
    p.add_argument("--out", default=os.path.join(HERE, "out"), help="folder for the plots")
    a = p.parse_args(argv)
    result = main(a.epochs, a.units, a.batch_size, a.lr, a.seed, a.out, threads=a.threads)
    return 0 if result["accuracy"] >= 0.97 else 1


if __name__ == "__main__":
    sys.exit(cli())
