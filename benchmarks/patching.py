"""The activation-patching sweep against its naive cost, per family.

    python -m benchmarks.patching [--batch 32] [--repeats 3] [--tasks parity shift induction]

Measured side by side in one run on a compiled model per (task, family): the full sweep over
every (site, position) pair as ``methods.patching.sweep`` does it (copies of the base batch
stacked, each copy patched at its own pair, ``max_rows`` rows per forward) and the naive cost,
one full ``model.run`` per patched (site, position). Both give the same scores (checked here).
Target: the sweep costs at most 0.7x the naive cost. Single-threaded (``torch.set_num_threads(1)``),
best of ``--repeats``.

What the sweep saves: per-forward overhead (few large forwards instead of many small ones), the
rows whose patch changes nothing (the source equals the base there), and the computation before
the patched site: each forward resumes from the clean run (``model.prefix`` + ``Start``),
skipping the layers below the chunk's lowest patched layer and, on models that resume in time
(RNN, SSM), the time steps before its earliest patched position.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import tasks
import zoo
from methods.activation_patching import naive_sweep
from methods.patching import ablation_sources, readout, site_names, sweep

TASKS = ("parity", "shift", "induction")


def best(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-rows", type=int, default=512)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{'task':<12} {'family':<12} {'pairs':>6} {'sweep s':>9} {'naive s':>9} {'ratio':>7}")
    worst = 0.0
    for task_name in args.tasks:
        task = tasks.get(task_name)
        for family in zoo.FAMILIES:
            try:
                model = zoo.compile(task, family)
            except Exception as e:  # noqa: BLE001 - a refused or unfinished (task, family) pair
                print(f"{task_name:<12} {family:<12} skipped: {type(e).__name__}: {str(e)[:60]}")
                continue
            base, source, _, _ = task.sample_interventions(args.batch, seed=0, variable=task.output.name)
            names = site_names(model)
            sources = ablation_sources(model, task, base, names, "resample", source=source)
            targets, mask = readout(task, base)
            pairs = [(s, t) for s in names for t in range(task.max_len)]
            t_fast, fast = best(lambda: sweep(model, base, sources, pairs, targets=targets, mask=mask, max_rows=args.max_rows), args.repeats)
            t_slow, slow = best(lambda: naive_sweep(model, task, base, sources, pairs, targets=targets, mask=mask), args.repeats)
            if not np.allclose(fast, slow, atol=1e-4):
                raise AssertionError(f"{task_name}/{family}: batched and naive sweeps disagree by {np.abs(fast - slow).max()}")
            ratio = t_fast / t_slow
            worst = max(worst, ratio)
            print(f"{task_name:<12} {family:<12} {len(pairs):>6} {t_fast:>9.3f} {t_slow:>9.3f} {ratio:>6.2f}x")
    print(f"worst ratio {worst:.2f}x (target <= 0.7x)")
    return 0 if worst <= 0.7 else 1


if __name__ == "__main__":
    raise SystemExit(main())
