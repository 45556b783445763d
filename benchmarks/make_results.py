#!/usr/bin/env python
"""Run the full comparison and write benchmarks/RESULTS.md.

    python benchmarks/make_results.py [--threads 1 2] [--out benchmarks/RESULTS.md]
                                      [--notes NOTES.md] [-- extra compare.py arguments]

Runs `benchmarks/compare.py` over the full grid at each thread count (default 1 and
2) plus `--memory`, then writes RESULTS.md: the machine (CPU, caches, FMA peak per
thread count), the versions, the exact commands, the verdict on each target of
issue 3 computed from the numbers (never written by hand), the headline min and
geometric-mean speed-up over the best peer per thread count, thread scaling when
three or more thread counts ran (e.g. `--threads 1 2 4 8 16` on a bigger machine),
and every table. Hand-written explanations (why a target is missed) go in a notes
file given with `--notes`; it is copied in under "Notes".

Arguments after `--` go to compare.py as they are (e.g. `-- --quick` to try the
plumbing; don't commit a RESULTS.md from that). The JSON, the Markdown tables and
the PNG of the run are kept in benchmarks/out/.
"""
import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402  (benchmarks/compare.py)


def _git(*args):
    try:
        return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _pct(v):
    return "?" if v is None else f"{100 * v:.0f}%"


def headline(report):
    """Min and geometric-mean speed-up over the best peer, per thread count."""
    lines = []
    for run in report["runs"]:
        vals = [(r["derived"]["vs_best"], r["label"]) for r in run["rows"] if "vs_best" in r["derived"]]
        if not vals:
            lines.append(f"- {run['threads']} thread(s): no row with fastrnn and a peer timed")
            continue
        worst = min(vals)
        lines.append(f"- {run['threads']} thread(s): speed-up over the best peer min **{worst[0]:.2f}** "
                     f"({worst[1]}), geometric mean **{compare._geomean([v for v, _ in vals]):.2f}** "
                     f"over {len(vals)} rows; {sum(v < 1.0 for v, _ in vals)} rows below 1.0")
    return lines


def scaling(report):
    """fastrnn's median time per row at each thread count, and the speed-up over one thread."""
    runs = report["runs"]
    if len(runs) < 3:
        return []
    threads = [r["threads"] for r in runs]
    lines = ["", "## Thread scaling (fastrnn)", "",
             "Median time (ms; µs for the latency and overhead rows) per thread count, and in "
             "brackets the speed-up over the fewest threads.", "",
             "| row | " + " | ".join(f"{t} thr" for t in threads) + " |",
             "|---|" + "|".join("---:" for _ in threads) + "|"]
    for i, r0 in enumerate(runs[0]["rows"]):
        unit = compare.Row(**r0["row"]).unit
        cells, base = [], None
        for run in runs:
            st = (run["rows"][i]["engines"].get("fastrnn") or {}).get("stats")
            if not st:
                cells.append("-")
                continue
            base = base or st["median_ms"]
            cells.append(f"{compare._fmt_time(st['median_ms'], unit)} ({base / st['median_ms']:.2f}x)")
        lines.append(f"| {r0['label']} | " + " | ".join(cells) + " |")
    return lines


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--notes", help="Markdown file with hand-written notes (why a target is missed)")
    ap.add_argument("--no-memory", action="store_true", help="skip the training-memory measurement")
    args = ap.parse_args(argv)

    outdir = os.path.join(HERE, "out")
    os.makedirs(outdir, exist_ok=True)
    paths = {k: os.path.join(outdir, "results." + k) for k in ("json", "md", "png")}
    cmp_args = ["--threads", *map(str, args.threads)] + ([] if args.no_memory else ["--memory"])
    cmp_args += ["--json", paths["json"], "--markdown", paths["md"], "--png", paths["png"], *extra]
    rel = lambda p: os.path.relpath(p)  # noqa: E731
    this_cmd = "python " + shlex.join([rel(__file__)] + sys.argv[1:])
    rc = compare.main(cmp_args)
    with open(paths["json"]) as f:
        report = json.load(f)

    m = report["machine"]
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = " (with uncommitted changes)" if _git("status", "--porcelain", "--untracked-files=no") else ""
    lines = ["# fastrnn benchmark results", "",
             f"Written by `{this_cmd}` on {datetime.date.today().isoformat()}, fastrnn at commit "
             f"`{commit or '?'}`{dirty}; it ran `{report['command']}` "
             f"({report['elapsed_s'] / 60:.1f} minutes). Every verdict below is computed from the "
             "numbers in the tables.", "",
             "## Machine and versions", "",
             f"- CPU: {m['cpu']}, {m['cores']} cores available"
             + (f" ({', '.join(f'{k} {v}' for k, v in m.get('caches', {}).items())})" if m.get("caches") else ""),
             f"- {m['platform']}; load average {m['load average']} before, {m.get('load average after', '?')} "
             f"after; CPUs {_pct(m.get('busy before'))} busy in the second before the run, "
             f"{_pct(m.get('busy after'))} in the second after it",
             f"- thread counts: {', '.join(str(r['threads']) for r in report['runs'])}"]
    for run in report["runs"]:
        p = run.get("fma_peak") or {}
        lines.append(f"- fp32 FMA peak at {run['threads']} thread(s): "
                     + (f"{p['gflops']:.1f} GFLOP/s ({p['isa']}, benchmarks/fma_peak.c, {p['compiler']})"
                        if p.get("gflops") else f"not measured ({p.get('error')})"))
    lines.append(f"- python {m['python']}, numpy {m['numpy']}")
    for name, v in report["versions"].items():
        if v and (name != "reference" or report.get("oracle_uses_reference")):
            lines.append(f"- {name}: " + ", ".join(f"{k} {val}" for k, val in v.items()))
        elif not v and name != "reference":
            lines.append(f"- {name}: not available")
    lines += ["", "## Headline: fastrnn's speed-up over the best peer", ""] + headline(report)
    lines += compare.md_targets(report, "Targets of issue 3 (computed from the tables below)")
    if args.notes:
        with open(args.notes) as f:
            lines += ["", "## Notes", "", f.read().strip()]
    lines += scaling(report)
    lines += ["", "# Tables", ""] + compare.md_header(report)[2:]
    for run in report["runs"]:
        lines += compare.md_run(run, report["peers"])
    if report.get("memory"):
        lines += compare.md_memory(report["memory"])
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
