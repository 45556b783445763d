"""How much of `fit`'s time is spent outside the compiled kernels.

    python benchmarks/fit_overhead.py [--threads N] [--epochs E]

The model is an LSTM regressor with B=32, T=50, H=128 (I=32 features, Dense(1)
head), trained with Adam. Two measurements:

- replay: the compiled calls one batch makes (pack the LSTM weights, the LSTM's
  training forward, the Dense products, the LSTM's backward, the Adam updates)
  timed on their own, against the time per batch of `fit` itself (the median of
  several epochs); the difference is the overhead.
- profile: the epochs under cProfile, which adds a little to every Python call,
  so the share it gives the Python side is an upper bound.
"""
import argparse
import cProfile
import pstats
import time

import numpy as np


def build(seed=0):
    import fastrnn as fr
    from fastrnn import layers, optimizers
    model = fr.Sequential([layers.Input((50, 32)), layers.LSTM(128), layers.Dense(1)], seed=seed)
    model.compile(optimizer=optimizers.Adam(1e-3), loss="mse")
    return model


def replay(model, xb, batches, reps=5):
    """Seconds per batch of the compiled calls one training batch of `model` makes."""
    import fastrnn.functional as F
    from fastrnn._linalg import matmul
    lstm, dense = model.layers[-2], model.layers[-1]
    fw = lstm.engine_weights()
    w_ih, w_hh, b_ih, b_hh = fw["w_ih"], fw["w_hh"], fw["b_ih"], fw["b_hh"]
    kernel = dense.params["kernel"]
    params = [p.copy(order="K") for p in model.trainable_weights]
    grads = [np.full_like(p, 1e-3) for p in params]
    opt = type(model.optimizer)(1e-3)

    def batch():
        packed = F.pack_weights("lstm", w_ih, w_hh)
        _, (h, _), cache = F.lstm_forward(xb, None, w_ih, w_hh, b_ih, b_hh, batch_first=True, packed=packed)
        out = matmul(h, kernel)
        matmul(h.T, out)
        dh = matmul(out, kernel.T)
        F.lstm_backward(None, (dh, None), cache)
        opt.apply(params, grads)

    for _ in range(10):
        batch()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(batches):
            batch()
        times.append((time.perf_counter() - t0) / batches)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--samples", type=int, default=4096)
    args = ap.parse_args()
    import fastrnn
    if args.threads:
        fastrnn.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.samples, 50, 32)).astype(np.float32)
    y = rng.standard_normal((args.samples, 1)).astype(np.float32)
    model = build()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)          # warm-up: build, first packing
    batches = args.samples // 32
    epochs = []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
        epochs.append(time.perf_counter() - t0)
    plain = float(np.median(epochs))
    kernels = replay(model, x[:32], batches)

    prof = cProfile.Profile()
    prof.enable()
    model.fit(x, y, batch_size=32, epochs=args.epochs, verbose=0)
    prof.disable()
    stats = pstats.Stats(prof)
    total = stats.total_tt
    # Cython functions are invisible to cProfile, so the engine's time is the own time
    # ("tottime") of the Python functions that call it: functional._forward/_backward,
    # pack_weights and _linalg.matmul hold nothing but the call and a few µs of array setup.
    engine_callers = {("functional.py", "_forward"), ("functional.py", "_backward"),
                      ("functional.py", "pack_weights"), ("_linalg.py", "matmul")}
    kernel, optimizer = {}, 0.0
    for (path, _, name), (_, _, tt, ct, _) in stats.stats.items():
        key = (path.rsplit("/", 1)[-1], name)
        if key in engine_callers:
            kernel[name] = kernel.get(name, 0.0) + tt
        elif key == ("optimizers.py", "apply"):
            optimizer += ct          # the whole update, NumPy's ufuncs included
    k = sum(kernel.values())
    print(f"fastrnn {fastrnn.__version__}, {fastrnn.get_num_threads()} threads, LSTM B=32 T=50 I=32 H=128, "
          f"{args.samples // 32} batches per epoch")
    print(f"replay: fit {plain / batches * 1e3:.3f} ms per batch, its compiled calls alone {kernels * 1e3:.3f} ms: "
          f"overhead {1 - kernels * batches / plain:.1%}")
    print(f"profile: epoch {plain * 1e3:.1f} ms unprofiled, {total / args.epochs * 1e3:.1f} ms profiled")
    print(f"in the kernels: {k / total:.1%} ({', '.join(f'{n} {t / total:.1%}' for n, t in sorted(kernel.items()))})")
    print(f"outside the kernels: {1 - k / total:.1%} of the profiled epoch: the optimizer update "
          f"{optimizer / total:.1%}, everything else (layers' Python and NumPy, losses, the fit loop) "
          f"{(total - k - optimizer) / total:.1%}")

if __name__ == "__main__":
    main()
