"""DAS before and after a change, side by side: seconds and IIA per evaluation cell.

    python -m benchmarks.das [--cells dyck1/ssm sort/ssm] [--kind compiled] [--before c1b08ce] [--no-before]

Each cell is run as ``zoo evaluate --method das`` runs it (the cell's model and seed, the
default budget, scored by :func:`evaluation.grid.score_finding` on held-out pairs): once with
``methods/das.py`` as it was at the ``--before`` commit (loaded from git; default: the last
commit before DAS grouped its forwards and stopped stalled sites, issue 33), once as it is now.
Printed per cell: seconds, mean IIA and IIA on changed outputs over the variables, the sites
chosen where they differ, and the speed-up. Torch's optimiser imports (seconds, once per
process) are done before either is timed.
"""

from __future__ import annotations

import argparse
import subprocess
import time
import types
from pathlib import Path

import torch

import methods
import tasks
from evaluation.grid import _model, cell_seed, score_finding

BEFORE = "c1b08ce"  # main before issue 33's DAS changes
ROOT = Path(__file__).resolve().parent.parent


def das_at(commit: str):
    """``methods.das.das`` as it was at ``commit`` (its module run inside the current package)."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:methods/das.py"], capture_output=True, text=True, check=True).stdout
    module = types.ModuleType("methods._das_before")
    module.__package__ = "methods"
    exec(compile(source, f"{commit}:methods/das.py", "exec"), module.__dict__)
    return module.das


def run_cell(das, task_name: str, family: str, kind: str) -> dict:
    task = tasks.get(task_name)
    model = _model(task, family, kind, 0)
    seed = cell_seed(0, task_name, family, kind)
    start = time.perf_counter()
    finding = methods.run(das, model, task, seed=seed)
    seconds = time.perf_counter() - start
    row = score_finding(finding, model, task, seed=seed)
    return {"seconds": seconds, "iia": row["iia"], "iia_changed": row["iia_changed"], "sites": {v: a.site for v, a in finding.variables.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["dyck1/ssm", "sort/ssm"], help="TASK/FAMILY")
    parser.add_argument("--kind", default="compiled", choices=("compiled", "reparametrized"))
    parser.add_argument("--before", default=BEFORE, help="the commit whose methods/das.py is 'before'")
    parser.add_argument("--no-before", action="store_true", help="time the current DAS only")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # its first construction imports torch._dynamo (seconds)
    versions = {} if args.no_before else {"before": das_at(args.before)}
    versions["after"] = methods.get("das")
    print(f"DAS per cell ({args.kind}; before = methods/das.py at {args.before}); seconds, mean IIA / IIA on changed outputs over the variables")
    print(f"{'cell':<18}" + "".join(f"{name:>28}" for name in versions) + ("   speed-up" if len(versions) == 2 else ""))
    for cell in args.cells:
        task_name, family = cell.split("/")
        res = {name: run_cell(fn, task_name, family, args.kind) for name, fn in versions.items()}
        line = f"{cell:<18}" + "".join(f"{r['seconds']:>9.1f} s  IIA {r['iia']:.3f} / {r['iia_changed']:.3f}" for r in res.values())
        if len(res) == 2:
            line += f"   {res['before']['seconds'] / res['after']['seconds']:>6.1f}x"
            moved = {v: (s, res["after"]["sites"][v]) for v, s in res["before"]["sites"].items() if res["after"]["sites"].get(v) != s}
            if moved:
                line += "   sites moved: " + ", ".join(f"{v} {a} -> {b}" for v, (a, b) in moved.items())
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
