"""`python -m fastrnn demo`: a short forward/backward run that shows the engine works.

`python -m fastrnn info` prints the build (SIMD, OpenMP, threads).
"""
import argparse
import sys
import time

import numpy as np

import fastrnn
from fastrnn import functional as F
from fastrnn import reference as R


def info():
    print(f"fastrnn {fastrnn.__version__}: SIMD {fastrnn.simd_isa()}, "
          f"OpenMP {'on' if fastrnn.openmp_enabled() else 'off'}, threads {fastrnn.get_num_threads()}")


def demo(T=50, B=16, I=64, H=128):
    """Runs one LSTM, GRU and RNN layer forward and backward, checks them against the
    NumPy reference, and times them."""
    info()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    print(f"x: (T={T}, B={B}, I={I}), H={H}, float32")
    ok = True
    for name, G in (("lstm", 4), ("gru", 3), ("rnn", 1)):
        k = 1 / np.sqrt(H)
        w_ih = rng.uniform(-k, k, (G * H, I)).astype(np.float32)
        w_hh = rng.uniform(-k, k, (G * H, H)).astype(np.float32)
        b_ih = rng.uniform(-k, k, G * H).astype(np.float32)
        b_hh = rng.uniform(-k, k, G * H).astype(np.float32)
        dy = rng.standard_normal((T, B, H)).astype(np.float32)

        def run(mod):
            fwd, bwd = getattr(mod, f"{name}_forward"), getattr(mod, f"{name}_backward")
            y, state, cache = fwd(x, None, w_ih, w_hh, b_ih, b_hh)
            return y, bwd(dy, None, cache)

        run(F)                              # the first call also starts the thread pool
        t0 = time.perf_counter()
        y, grads = run(F)
        ms = (time.perf_counter() - t0) * 1e3
        y_ref, grads_ref = run(R)
        err = max([float(np.abs(y - y_ref).max())] +
                  [float(np.abs(grads[k] - grads_ref[k]).max() / (1 + np.abs(grads_ref[k]).max()))
                   for k in grads_ref])
        good = err < 1e-4
        ok &= good
        print(f"{name:5s} forward+backward {ms:7.2f} ms   |y| mean {np.abs(y).mean():.4f}   "
              f"max difference to reference {err:.1e} {'ok' if good else 'MISMATCH'}")
    print("all kernels agree with the reference" if ok else "MISMATCH against the reference")
    return 0 if ok else 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastrnn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["demo", "info"])
    args = parser.parse_args(argv)
    if args.command == "info":
        info()
        return 0
    return demo()


if __name__ == "__main__":
    sys.exit(main())
