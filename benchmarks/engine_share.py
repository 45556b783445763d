"""The share of `fit`'s wall time spent inside the compiled engine, from `perf` samples.

    python benchmarks/engine_share.py [--threads N] [--epochs E]

Runs benchmarks/fit_overhead.py's model (LSTM B=32, T=50, I=32, H=128, Adam) under
`perf record -g` twice, with E epochs and with none, and counts the main thread's
samples: a sample is inside the engine when any frame of its call stack is in
fastrnn's compiled extension or in the OpenMP runtime (the main thread is always
either running Python or inside a kernel call). The epoch-less run is subtracted,
so imports, data generation and building do not count. Needs Linux `perf`.
"""
import argparse
import collections
import os
import subprocess
import sys
import tempfile

SCRIPT = r"""
import sys, numpy as np, fastrnn as fr
from fastrnn import layers, optimizers
fr.set_num_threads(int(sys.argv[1]))
rng = np.random.default_rng(0)
x = rng.standard_normal((4096, 50, 32)).astype(np.float32)
y = rng.standard_normal((4096, 1)).astype(np.float32)
model = fr.Sequential([layers.Input((50, 32)), layers.LSTM(128), layers.Dense(1)], seed=0)
model.compile(optimizer=optimizers.Adam(1e-3), loss="mse")
if int(sys.argv[2]):
    model.fit(x, y, batch_size=32, epochs=int(sys.argv[2]), verbose=0)
"""


def samples(data):
    out = subprocess.run(["perf", "script", "-i", data, "-F", "tid,ip,dso"], capture_output=True, text=True,
                         check=True).stdout
    per_tid = collections.Counter()
    inside = collections.Counter()
    tid, hit = None, False
    for line in out.splitlines() + [""]:
        if not line.strip():
            if tid is not None:
                per_tid[tid] += 1
                inside[tid] += hit
            tid, hit = None, False
            continue
        if tid is None:
            tid = line.split()[0]
        if "_engine" in line or "libgomp" in line:
            hit = True
    main = per_tid.most_common(1)[0][0]
    return per_tid[main], inside[main]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "fit.py")
        with open(script, "w") as f:
            f.write(SCRIPT)
        counts = []
        for epochs in (args.epochs, 0):
            data = os.path.join(tmp, f"perf{epochs}.data")
            subprocess.run(["perf", "record", "-q", "-g", "-e", "cpu-clock", "-F", "4000", "-o", data,
                            sys.executable, script, str(args.threads), str(epochs)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            counts.append(samples(data))
    (n1, k1), (n0, k0) = counts
    n, k = n1 - n0, k1 - k0
    print(f"{args.threads} threads, {args.epochs} epochs: {n} main-thread samples in fit, "
          f"inside the compiled engine {k / n:.1%}, outside {1 - k / n:.1%}")


if __name__ == "__main__":
    main()
