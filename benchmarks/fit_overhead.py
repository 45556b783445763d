"""How much of `fit`'s time is spent outside the compiled kernels.

    python benchmarks/fit_overhead.py [--threads N] [--epochs E]

The model is an LSTM regressor with B=32, T=50, H=128 (I=32 features, Dense(1)
head), trained with Adam. The epochs run under cProfile; the time inside the
compiled engine is the kernel time, everything else is overhead.
cProfile adds a little to every Python call, so the overhead it reports is an
upper bound; the unprofiled epoch time is printed too.
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=3)
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
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=32, epochs=args.epochs, verbose=0)
    plain = (time.perf_counter() - t0) / args.epochs

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
    print(f"epoch time: {plain * 1e3:.1f} ms (unprofiled), {total / args.epochs * 1e3:.1f} ms (profiled)")
    print(f"in the kernels: {k / total:.1%} ({', '.join(f'{n} {t / total:.1%}' for n, t in sorted(kernel.items()))})")
    print(f"outside the kernels: {1 - k / total:.1%} of the profiled epoch: the optimizer update "
          f"{optimizer / total:.1%}, everything else (layers' Python and NumPy, losses, the fit loop) "
          f"{(total - k - optimizer) / total:.1%}")

if __name__ == "__main__":
    main()
