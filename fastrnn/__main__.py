"""fastrnn's command line.

  demo        train a character-level LSTM language model on Python's own standard
              library source (no download, about a minute), report validation
              perplexity before and after, and generate text
  train-lm    train the same model on any text FILE and save it (--out)
  generate    sample text from a saved MODEL (--prime, --length, --temperature)
  bench       a quick speed table: fastrnn against the installed peers (PyTorch,
              ONNX Runtime, TensorFlow), same shapes, same thread count
  check       run every cell forward and backward against the NumPy reference
  info        the build: SIMD level, OpenMP, threads
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


def check(T=50, B=16, I=64, H=128):
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


def _bench(args):
    import os
    import subprocess
    here = os.path.dirname(os.path.abspath(__file__))
    runner = os.path.join(os.path.dirname(here), "benchmarks", "compare.py")
    if not os.path.exists(runner):
        print("bench: the benchmark runner (benchmarks/compare.py) is part of the source "
              "checkout; run this from a clone of the repository", file=sys.stderr)
        return 2
    cmd = [sys.executable, runner, "--quick"] + (["--threads", str(args.threads)] if args.threads else [])
    return subprocess.call(cmd)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastrnn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="command")
    p = sub.add_parser("demo", help="train a character LSTM on the standard library source, then generate")
    p.add_argument("--seconds", type=float, default=60.0, help="training time budget (default 60)")
    p = sub.add_parser("train-lm", help="train a character LSTM on a text file and save it")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--out", default="model.fastrnn", help="where to save the model (default model.fastrnn)")
    p.add_argument("--seconds", type=float, default=None, help="time budget (default: --epochs)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p = sub.add_parser("generate", help="sample text from a saved model")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--prime", default="")
    p.add_argument("--length", type=int, default=300)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=None)
    p = sub.add_parser("bench", help="a quick speed table against the installed peers")
    p.add_argument("--threads", type=int, default=None)
    sub.add_parser("check", help="every cell forward and backward against the NumPy reference")
    sub.add_parser("info", help="SIMD level, OpenMP, threads")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "info":
        info()
        return 0
    if args.command == "check":
        return check()
    if args.command == "bench":
        return _bench(args)
    from . import char_lm
    try:
        if args.command == "demo":
            return char_lm.demo(seconds=args.seconds)
        if args.command == "train-lm":
            text = char_lm.read_text(args.file)
            lm = char_lm.CharLanguageModel.new(text, units=args.units)
            (x, y), (xv, yv) = lm.split(text, args.seq_len)
            print(f"{args.file}: {len(text):,} characters, {lm.tokenizer.vocab_size} symbols; "
                  f"validation perplexity {lm.perplexity(xv, yv):.2f} before training")
            stats = lm.train(x, y, seconds=args.seconds, epochs=None if args.seconds else args.epochs,
                             batch_size=args.batch_size, checkpoint=args.out)
            print(f"validation perplexity {lm.perplexity(xv, yv):.2f} after {stats['steps']} steps"
                  f"{' (interrupted)' if stats['interrupted'] else ''}; saved {args.out}")
            return 0
        lm = char_lm.CharLanguageModel.load(args.model)
        print(lm.generate(args.prime, args.length, args.temperature, args.seed))
        return 0
    except (FileNotFoundError, IsADirectoryError, ValueError) as exc:
        print(f"python -m fastrnn {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
