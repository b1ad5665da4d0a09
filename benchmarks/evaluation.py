"""Evaluating activation patching over the whole compiled zoo.

    python -m benchmarks.evaluation [--method activation_patching] [--kinds compiled] [--out DIR]

Runs ``evaluation.evaluate`` for one method over every task x family (kind ``compiled``; the
refused pairs become refused cells), from scratch into a fresh directory, single-threaded, and
prints the wall-clock seconds: in total, inside the method, and in scoring (node AUROC, the
faithfulness curve for CPR/CMD, top-k faithfulness). Target: <= 120 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

import evaluation


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="activation_patching")
    p.add_argument("--kinds", default="compiled")
    p.add_argument("--out", default=None, help="results directory (default: a fresh temporary one)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = args.out or tempfile.mkdtemp(prefix="bench-eval-")
    start = time.perf_counter()
    rows = evaluation.evaluate([args.method], None, None, kinds=tuple(args.kinds.split(",")), out=out, progress=lambda s: None)
    total = time.perf_counter() - start
    ok = [r for r in rows if r["status"] == "ok"]
    method_s = sum(r.get("method_seconds", 0.0) for r in ok)
    cell_s = sum(r.get("seconds", 0.0) for r in rows)
    status = {s: sum(r["status"] == s for r in rows) for s in dict.fromkeys(r["status"] for r in rows)}
    print(f"{args.method} over the {args.kinds} zoo: {len(rows)} cells {status}")
    print(f"  total {total:.1f} s (target <= 120 s): in the method {method_s:.1f} s, scoring and compiling {cell_s - method_s:.1f} s")
    slow = sorted(rows, key=lambda r: -r.get("seconds", 0))[:5]
    print("  slowest cells: " + ", ".join(f"{r['task']}/{r['family']} {r['seconds']:.1f} s" for r in slow))
    print(evaluation.render_text(evaluation.summarize(rows)))


if __name__ == "__main__":
    main()
