#!/usr/bin/env python
"""Side-by-side timing of fastrnn against other engines (PyTorch today).

    python benchmarks/compare.py [--threads N ...] [--quick] [--json out.json]

Every engine runs in its own subprocess (this script re-invokes itself with
`--worker ENGINE`), so thread pools never share a process. Within one thread
count the engines run one after another; `--rounds R` repeats that R times,
alternating the order, and pools the samples.

Each engine gets its best case at the same thread count: fastrnn
`num_threads=n`; PyTorch `torch.set_num_threads(n)` and, for inference,
`torch.inference_mode()`. OMP/MKL/OpenBLAS pools of every worker are capped to n
through the environment.

Modes: inference = one forward (fastrnn `training=False`); training = forward +
backward of `sum(y)` (dx, all weight and bias grads). Inputs are float32,
time-major, random, zero initial state; every engine sees the same arrays.
FLOPs = 2*B*T*(I+H)*G*H for a forward, 3x that for training.

Before timing, every engine's results on each row are checked against an
oracle (the first engine in ENGINE_ORDER that is installed: torch, else
fastrnn.reference on small rows). A mismatch is printed loudly and that row is
not timed for that engine.

Adding an engine (onnxruntime, TensorFlow, ...): write a worker function
`prepare(row, data, threads) -> (step, outputs)` and a `versions()` function,
register them in ENGINES, and add the name to ENGINE_ORDER. See `_torch_prepare`.
"""
import argparse
import gc
import importlib
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if importlib.util.find_spec("fastrnn") is None:  # running from a checkout that is not installed
    sys.path.insert(0, ROOT)

GATES = {"rnn_tanh": 1, "gru": 3, "lstm": 4}
CELL_NAMES = {"rnn_tanh": "RNN tanh", "gru": "GRU", "lstm": "LSTM"}
MODES = ("inference", "training")
SHAPES = [(1, 100, 64, 128), (1, 100, 256, 512), (16, 100, 128, 256),
          (64, 50, 256, 512), (128, 50, 512, 1024)]                      # (B, T, I, H)
QUICK_SHAPES = [(1, 100, 64, 128), (16, 100, 128, 256), (64, 50, 256, 512)]
VERIFY_TOL = 1e-3          # max |a - b| / max |oracle|, float32
REFERENCE_MAX_GFLOP = 5.0  # without torch, fastrnn.reference checks only rows this small
SAMPLE = 1 << 16           # elements kept per array for the cross-process check


@dataclass(frozen=True)
class Row:
    cell: str
    mode: str
    B: int
    T: int
    I: int
    H: int

    @property
    def key(self):
        return f"{self.cell}-{self.mode}-{self.B}x{self.T}x{self.I}x{self.H}"

    @property
    def flops(self):
        f = 2.0 * self.B * self.T * (self.I + self.H) * GATES[self.cell] * self.H
        return 3 * f if self.mode == "training" else f


def make_data(row, seed=1234):
    """The inputs of one row, identical in every process: PyTorch layout, float32."""
    G, H, I = GATES[row.cell], row.H, row.I
    rng = np.random.default_rng([seed, G, row.B, row.T, I, H])
    k = 1.0 / np.sqrt(H)
    f32 = np.float32
    return {
        "x": rng.standard_normal((row.T, row.B, I), dtype=f32),
        "w_ih": rng.uniform(-k, k, (G * H, I)).astype(f32),
        "w_hh": rng.uniform(-k, k, (G * H, H)).astype(f32),
        "b_ih": rng.uniform(-k, k, (G * H,)).astype(f32),
        "b_hh": rng.uniform(-k, k, (G * H,)).astype(f32),
    }


def _sample(arr):
    """A deterministic subsample of `arr` (all of it when small) for the cross-process check."""
    flat = np.ascontiguousarray(arr, dtype=np.float32).ravel()
    if flat.size <= SAMPLE:
        return flat
    idx = np.random.default_rng(flat.size).choice(flat.size, SAMPLE, replace=False)
    return flat[np.sort(idx)]


# ----------------------------------------------------------------------------------------------
# Engines. A worker function `prepare(row, data, threads)` returns (step, outputs):
#   step()    -- the call to time (inference: one forward; training: forward + backward);
#   outputs() -- runs the row once and returns a dict of NumPy arrays with keys
#                y, h_n, (c_n), and for training dx, dw_ih, dw_hh, db_ih, db_hh.
# `versions()` returns a dict of version strings, raising ImportError when unavailable.
# Both run only inside that engine's worker process.


def _fastrnn_versions(module="fastrnn.functional"):
    import fastrnn
    importlib.import_module(module)
    return {"fastrnn": fastrnn.__version__, "fastrnn module": module}


def _fastrnn_prepare(row, data, threads, module="fastrnn.functional"):
    import fastrnn
    F = importlib.import_module(module)
    fastrnn.set_num_threads(threads)  # backward takes no num_threads argument
    forward = getattr(F, ("rnn" if row.cell.startswith("rnn") else row.cell) + "_forward")
    backward = getattr(F, ("rnn" if row.cell.startswith("rnn") else row.cell) + "_backward")
    args = (data["x"], None, data["w_ih"], data["w_hh"], data["b_ih"], data["b_hh"])
    kw = {"num_threads": threads}
    if row.cell == "rnn_tanh":
        kw["nonlinearity"] = "tanh"
    dy = np.ones((row.T, row.B, row.H), np.float32)
    dstate = (None, None) if row.cell == "lstm" else None

    if row.mode == "inference":
        def step():
            return forward(*args, training=False, **kw)
    else:
        def step():
            y, _, cache = forward(*args, training=True, **kw)
            return backward(dy, dstate, cache)

    def outputs():
        y, hn, cache = forward(*args, training=row.mode == "training", **kw)
        out = {"y": y}
        if row.cell == "lstm":
            out["h_n"], out["c_n"] = hn
        else:
            out["h_n"] = hn
        if row.mode == "training":
            g = backward(dy, dstate, cache)
            out.update({"d" + k: g[k] for k in ("x", "w_ih", "w_hh", "b_ih", "b_hh")})
        return out

    return step, outputs


def _torch_versions():
    import torch
    v = {"torch": torch.__version__}
    for line in torch.__config__.show().splitlines():
        line = line.strip(" -")
        if "Math Kernel Library" in line:
            v["MKL"] = line.split("Version")[-1].split("-Product")[0].strip()
        elif "MKL-DNN" in line or "oneDNN" in line:
            m = re.search(r"v(\d+(?:\.\d+)+)", line)
            v["oneDNN"] = m.group(1) if m else line
    return v


def _torch_prepare(row, data, threads):
    import torch
    torch.set_num_threads(threads)
    cls = {"rnn_tanh": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[row.cell]
    mod = cls(row.I, row.H)
    with torch.no_grad():
        for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
            tname = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0",
                     "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}[name]
            getattr(mod, tname).copy_(torch.from_numpy(data[name]))
    params = list(mod.parameters())
    x = torch.from_numpy(data["x"])

    if row.mode == "inference":
        mod.eval()

        def step():
            with torch.inference_mode():
                return mod(x)
    else:
        x = x.clone().requires_grad_(True)  # fastrnn always returns dx: same work

        def step():
            x.grad = None
            for p in params:
                p.grad = None
            y, _ = mod(x)
            y.sum().backward()

    def outputs():
        step()
        with torch.inference_mode():
            y, hn = mod(x.detach())
        out = {"y": y.numpy()}
        if row.cell == "lstm":
            out["h_n"], out["c_n"] = hn[0][0].numpy(), hn[1][0].numpy()
        else:
            out["h_n"] = hn[0].numpy()
        if row.mode == "training":
            out["dx"] = x.grad.numpy()
            for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
                tname = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0",
                         "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}[name]
                out["d" + name] = getattr(mod, tname).grad.numpy()
        return out

    return step, outputs


@dataclass
class Engine:
    prepare: object      # (row, data, threads) -> (step, outputs)
    versions: object     # () -> dict, ImportError when not installed
    oracle_max_gflop: float = float("inf")  # rows it may check as an oracle


ENGINES = {
    "fastrnn": Engine(_fastrnn_prepare, _fastrnn_versions),
    "torch": Engine(_torch_prepare, _torch_versions),
    # used only as the oracle when no other engine is installed (it is slow)
    "reference": Engine(lambda r, d, t: _fastrnn_prepare(r, d, t, "fastrnn.reference"),
                        lambda: _fastrnn_versions("fastrnn.reference"), REFERENCE_MAX_GFLOP),
}
ENGINE_ORDER = ["torch"]  # peers, timed beside fastrnn and tried as the oracle in this order
# e.g. ENGINE_ORDER = ["torch", "onnxruntime", "tensorflow"]


# ----------------------------------------------------------------------------------------------
# Worker side


def _time(step, budget, min_runs, max_runs):
    """Warm up, then time `step` until `budget` seconds and `min_runs` runs (or `max_runs`)."""
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    warm_end = time.perf_counter() + min(0.2 * budget, max(first, 0.05))
    while time.perf_counter() < warm_end:  # at least two warm-up calls in all
        step()
    step()
    samples = []
    gc.collect()
    gc_was = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        while len(samples) < max_runs and (len(samples) < min_runs or time.perf_counter() - start < budget):
            t = time.perf_counter()
            step()
            samples.append(time.perf_counter() - t)
    finally:
        if gc_was:
            gc.enable()
    return samples


def _compare(out, ref):
    """Largest error over the arrays, each relative to the oracle's largest magnitude; or a reason."""
    worst = 0.0
    for k, want in ref.items():
        if k not in out:
            return float("inf"), f"{k} missing"
        got = out[k]
        if got.shape != want.shape:
            return float("inf"), f"{k}: shape {got.shape} vs {want.shape}"
        if not np.all(np.isfinite(got)):
            return float("inf"), f"{k}: non-finite values"
        scale = max(float(np.abs(want).max(initial=0.0)), 1e-30)
        err = float(np.abs(got.astype(np.float64) - want).max(initial=0.0)) / scale
        if err > worst:
            worst, what = err, k
    return worst, (None if worst <= VERIFY_TOL else f"{what}: relative error {worst:.2e}")


def worker(spec):
    """Run one engine over the rows of `spec`; return a JSON-able dict."""
    name = spec["engine"]
    eng = ENGINES[name]
    if spec.get("module") and name == "fastrnn":
        prepare = lambda r, d, t: _fastrnn_prepare(r, d, t, spec["module"])  # noqa: E731
        versions = lambda: _fastrnn_versions(spec["module"])  # noqa: E731
    else:
        prepare, versions = eng.prepare, eng.versions
    try:
        info = versions()
    except ImportError as exc:
        return {"engine": name, "available": False, "error": str(exc)}
    if spec.get("probe"):
        return {"engine": name, "available": True, "versions": info}
    threads = spec["threads"]
    results = {}
    for rd in spec["rows"]:
        row = Row(**rd)
        res = results[row.key] = {}
        data = make_data(row)
        try:
            step, outputs = prepare(row, data, threads)
            if spec.get("save_dir"):     # this engine is the oracle: save its outputs
                if row.flops / 1e9 <= eng.oracle_max_gflop:
                    np.savez(os.path.join(spec["save_dir"], row.key + ".npz"),
                             **{k: _sample(v) for k, v in outputs().items()})
            if spec.get("check_dir"):    # compare with the oracle before timing
                path = os.path.join(spec["check_dir"], row.key + ".npz")
                if os.path.exists(path):
                    with np.load(path) as ref:
                        err, problem = _compare({k: _sample(v) for k, v in outputs().items()},
                                                dict(ref))
                    res["max_err"] = err
                    if problem:
                        res["mismatch"] = problem
                        continue
                else:
                    res["unchecked"] = True
            if spec.get("time", True):
                res["samples"] = _time(step, spec["budget"], spec["min_runs"], spec["max_runs"])
        except Exception as exc:  # report, keep going with the other rows
            res["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            del data
            gc.collect()
    return {"engine": name, "available": True, "versions": info, "results": results}


def _worker_main(path_in, path_out):
    with open(path_in) as f:
        spec = json.load(f)
    out = worker(spec)
    with open(path_out, "w") as f:
        json.dump(out, f)


# ----------------------------------------------------------------------------------------------
# Parent side


def run_worker(spec, threads, verbose=False):
    """Run `worker(spec)` in a fresh interpreter whose thread pools are capped to `threads`."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS"):
        env[var] = str(threads)
    with tempfile.TemporaryDirectory(prefix="fastrnn-bench-") as tmp:
        pin, pout = os.path.join(tmp, "spec.json"), os.path.join(tmp, "out.json")
        with open(pin, "w") as f:
            json.dump(spec, f)
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", pin, pout],
                              env=env, capture_output=not verbose, text=True)
        if proc.returncode != 0 or not os.path.exists(pout):
            msg = (proc.stderr or "").strip().splitlines()[-5:] if not verbose else []
            return {"engine": spec["engine"], "available": False,
                    "error": f"worker exited with {proc.returncode}: " + " | ".join(msg)}
        with open(pout) as f:
            return json.load(f)


def machine_info():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count()
    try:
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = "n/a"
    return {"cpu": cpu, "cores": cores, "load average": load, "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform()}


def build_rows(args):
    cells = args.cells or (["gru", "lstm"] if args.quick else list(GATES))
    modes = args.modes or list(MODES)
    shapes = args.shapes or (QUICK_SHAPES if args.quick else SHAPES)
    return [Row(c, m, *s) for c in cells for s in shapes for m in modes]


def _stats(samples):
    if not samples:
        return None
    q = statistics.quantiles(samples, n=4) if len(samples) >= 2 else [samples[0]] * 3
    return {"median_ms": 1e3 * statistics.median(samples), "iqr_ms": 1e3 * (q[2] - q[0]),
            "min_ms": 1e3 * min(samples), "runs": len(samples)}


def _cell_text(res):
    if res is None:
        return "-"
    if "mismatch" in res:
        return "MISMATCH"
    if "error" in res:
        return "error"
    st = res.get("stats")
    return f"{st['median_ms']:.3f}" if st else "-"


def print_table(rows, table, peers, threads):
    print(f"\n### threads = {threads}\n")
    head = ["cell", "mode", "B", "T", "I", "H", "fastrnn ms"]
    head += [f"{p} ms" for p in peers] + [f"{p}/fastrnn" for p in peers] + ["fastrnn GFLOP/s", "check"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" if i < 2 else "---:" for i in range(len(head))) + "|")
    for row in rows:
        res = table[row.key]
        fr = res.get("fastrnn")
        cells = [CELL_NAMES[row.cell], row.mode, row.B, row.T, row.I, row.H, _cell_text(fr)]
        cells += [_cell_text(res.get(p)) for p in peers]
        fst = fr and fr.get("stats")
        for p in peers:
            pst = res.get(p) and res[p].get("stats")
            cells.append(f"{pst['median_ms'] / fst['median_ms']:.2f}" if fst and pst else "-")
        cells.append(f"{row.flops / (fst['median_ms'] * 1e-3) / 1e9:.1f}" if fst else "-")
        if fr and "mismatch" in fr:
            check = "MISMATCH"
        elif fr and "max_err" in fr:
            check = f"ok {fr['max_err']:.0e}"
        else:
            check = "unchecked"
        cells.append(check)
        print("| " + " | ".join(str(c) for c in cells) + " |")
    sys.stdout.flush()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="thread counts to run (default: 1 and all cores)")
    ap.add_argument("--quick", action="store_true", help="a subset that runs in about a minute")
    ap.add_argument("--json", metavar="PATH", help="also write every sample and setting here")
    ap.add_argument("--cells", nargs="+", choices=list(GATES))
    ap.add_argument("--modes", nargs="+", choices=list(MODES))
    ap.add_argument("--shapes", nargs="+", metavar="BxTxIxH",
                    type=lambda s: tuple(int(v) for v in s.lower().split("x")))
    ap.add_argument("--engines", nargs="*", default=None,
                    help=f"peers beside fastrnn (default: those installed of {ENGINE_ORDER})")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of timed runs per row and engine (default 2, 0.3 with --quick)")
    ap.add_argument("--min-runs", type=int, default=None, help="default 5 (3 with --quick)")
    ap.add_argument("--max-runs", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat each thread count's engine runs, alternating their order")
    ap.add_argument("--fastrnn-module", default="fastrnn.functional",
                    help="module with the functional API to time as 'fastrnn'")
    ap.add_argument("--verbose", action="store_true", help="show the workers' output")
    args = ap.parse_args(argv)
    if args.shapes and any(len(s) != 4 for s in args.shapes):
        ap.error("--shapes: expected BxTxIxH, e.g. 16x100x128x256")
    budget = args.budget if args.budget is not None else (0.3 if args.quick else 2.0)
    min_runs = args.min_runs if args.min_runs is not None else (3 if args.quick else 5)
    info = machine_info()
    threads_list = args.threads or sorted({1, info["cores"]})
    rows = build_rows(args)

    # which engines are installed (probed in their own processes; the parent imports none)
    wanted = ["fastrnn"] + (args.engines if args.engines is not None else ENGINE_ORDER)
    probes = {}
    for name in dict.fromkeys(wanted + ["reference"]):
        if name not in ENGINES:
            ap.error(f"--engines: unknown engine {name!r}; known: {sorted(ENGINES)}")
        probes[name] = run_worker({"engine": name, "probe": True, "module": args.fastrnn_module}, 1)
    if not probes["fastrnn"]["available"]:
        sys.exit(f"fastrnn is not importable ({args.fastrnn_module}): {probes['fastrnn'].get('error')}")
    peers = [p for p in wanted[1:] if probes[p]["available"]]
    oracle = peers[0] if peers else ("reference" if probes["reference"]["available"] else None)

    print("# fastrnn vs peers\n")
    print(f"- CPU: {info['cpu']} ({info['cores']} cores available), load average {info['load average']}")
    print(f"- threads: {', '.join(map(str, threads_list))}; python {info['python']}, numpy {info['numpy']}")
    for name, pr in probes.items():
        if name == "reference" and oracle != "reference":
            continue
        if pr["available"]:
            print(f"- {name}: " + ", ".join(f"{k} {v}" for k, v in pr["versions"].items()))
        else:
            print(f"- {name}: not available ({pr.get('error', '')})")
    print(f"- float32, time-major, zero initial state; median of >= {min_runs} runs "
          f"({budget:g} s budget per row) after warm-up; {args.rounds} round(s)")
    print(f"- training = forward + backward of sum(y) with dx and all weight grads; "
          f"FLOPs = 2*B*T*(I+H)*G*H (x3 for training)")
    print(f"- checked against: {oracle or 'nothing (no oracle available)'} "
          f"(max relative error <= {VERIFY_TOL:g})")
    sys.stdout.flush()

    row_dicts = [asdict(r) for r in rows]
    report = {"machine": info, "versions": {n: p.get("versions") for n, p in probes.items()},
              "settings": {"budget_s": budget, "min_runs": min_runs, "max_runs": args.max_runs,
                           "rounds": args.rounds, "fastrnn_module": args.fastrnn_module},
              "runs": []}
    engines = ["fastrnn"] + peers
    with tempfile.TemporaryDirectory(prefix="fastrnn-oracle-") as oracle_dir:
        bad = {e: set() for e in engines}   # rows that failed their check, never timed
        checks = {r.key: {} for r in rows}   # engine -> check results, from the first pass
        for ti, threads in enumerate(threads_list):
            table = {r.key: {e: dict(c) for e, c in checks[r.key].items()} for r in rows}
            samples = {(e, r.key): [] for e in engines for r in rows}
            for rnd in range(args.rounds):
                first = ti == 0 and rnd == 0
                order = list(engines)
                if first and oracle:   # the oracle runs first and saves its outputs
                    if oracle == "reference":
                        run_worker({"engine": "reference", "threads": threads, "rows": row_dicts,
                                    "save_dir": oracle_dir, "time": False}, threads, args.verbose)
                    else:
                        order.remove(oracle)
                        order.insert(0, oracle)
                elif rnd % 2:
                    order.reverse()
                for eng in order:
                    spec = {"engine": eng, "threads": threads, "module": args.fastrnn_module,
                            "rows": [d for r, d in zip(rows, row_dicts) if r.key not in bad[eng]],
                            "budget": budget, "min_runs": min_runs, "max_runs": args.max_runs}
                    if first and oracle:
                        spec["save_dir" if eng == oracle else "check_dir"] = oracle_dir
                    print(f"  [threads={threads} round {rnd + 1}/{args.rounds}] {eng} ...",
                          file=sys.stderr, flush=True)
                    out = run_worker(spec, threads, args.verbose)
                    if not out.get("available"):
                        print(f"!! {eng} worker failed: {out.get('error')}", file=sys.stderr)
                        continue
                    for key, res in out["results"].items():
                        cell = table[key].setdefault(eng, {})
                        for k in ("max_err", "mismatch", "error", "unchecked"):
                            if k in res:
                                cell[k] = res[k]
                                if k != "error":
                                    checks[key].setdefault(eng, {})[k] = res[k]
                        if "mismatch" in res:
                            bad[eng].add(key)
                            print(f"\n!!!!!! MISMATCH: {eng} on {key} differs from {oracle}: "
                                  f"{res['mismatch']} -- not timed\n", flush=True)
                        if "error" in res:
                            print(f"!! {eng} on {key}: {res['error']}", flush=True)
                        samples[(eng, key)] += res.get("samples", [])
            for (eng, key), s in samples.items():
                if s:
                    table[key].setdefault(eng, {})["stats"] = _stats(s)
            print_table(rows, table, peers, threads)
            report["runs"].append({"threads": threads, "rows": [
                {**asdict(r), "flops": r.flops,
                 "engines": {e: {**table[r.key].get(e, {}), "samples_s": samples[(e, r.key)]}
                             for e in engines}}
                for r in rows]})
    load_after = machine_info()["load average"]
    report["machine"]["load average after"] = load_after
    print(f"\nload average after: {load_after}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"\nwrote {args.json}")
    return 1 if any(bad.values()) else 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        _worker_main(sys.argv[2], sys.argv[3])
    else:
        sys.exit(main())
