"""Throughput of Python threads sharing one model: 8 threads vs one, same total work.

    python benchmarks/concurrent_predict.py [--calls 64] [--batch 16] [--steps 50] [--units 64] [--repeat 3]

A Sequential model (LSTM -> GRU -> Dense) is built once and shared. The same list of
`predict` calls runs serially in one thread, then split over 8 threads; each with
fastrnn's thread count set to 1 per call, then left at its default (OMP_NUM_THREADS,
else the cores available). The kernels release the GIL, so threads can overlap
their engine work; the Python parts of a call (checks, layer glue) still hold it.
Prints calls per second and the gain (8 threads / serial) as a ratio, best of
--repeat runs. The results of the threads are checked against the serial ones, bit
for bit.
"""
import argparse
import os
import platform
import threading
import time

import numpy as np

import fastrnn
from fastrnn import layers


def build(units, features, steps):
    model = fastrnn.Sequential([layers.LSTM(units, return_sequences=True, seed=1), layers.GRU(units, seed=2),
                                layers.Dense(8)])
    model.build((None, steps, features))
    return model


def run_serial(model, xs):
    return [model.predict_on_batch(x) for x in xs]


def run_threads(model, xs, n_threads):
    out = [None] * len(xs)
    barrier = threading.Barrier(n_threads)

    def work(k):
        barrier.wait()
        for i in range(k, len(xs), n_threads):
            out[i] = model.predict_on_batch(xs[i])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def best_time(fn, repeat):
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=64, help="predict calls in all (each run)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--features", type=int, default=16)
    ap.add_argument("--units", type=int, default=64)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((args.batch, args.steps, args.features)).astype(np.float32) for _ in range(args.calls)]
    model = build(args.units, args.features, args.steps)
    default = fastrnn.get_num_threads()
    print(f"fastrnn {fastrnn.__version__}, {fastrnn.simd_isa()}, OpenMP {'on' if fastrnn.openmp_enabled() else 'off'}, "
          f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()}")
    print(f"{args.calls} predict calls of batch {args.batch}, {args.steps} steps, {args.features} features, "
          f"LSTM({args.units}) -> GRU({args.units}) -> Dense(8); best of {args.repeat}")
    print(f"{'fastrnn threads/call':>22} {'serial calls/s':>15} {f'{args.threads} threads calls/s':>20} {'gain':>6}")
    for n in (1, default):
        with fastrnn.num_threads(n):
            run_serial(model, xs[:2])                               # warm the weight caches
            t_serial, expected = best_time(lambda: run_serial(model, xs), args.repeat)
            t_threads, got = best_time(lambda: run_threads(model, xs, args.threads), args.repeat)
        assert all(np.array_equal(a, b) for a, b in zip(got, expected)), "threads changed the results"
        label = f"{n}" + (" (default)" if n == default else "")
        print(f"{label:>22} {args.calls / t_serial:15.1f} {args.calls / t_threads:20.1f} "
              f"{t_serial / t_threads:5.2f}x")


if __name__ == "__main__":
    main()
