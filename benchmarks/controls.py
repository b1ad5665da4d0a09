"""How often the random control cries wolf, and where the degenerate baselines sit.

``python -m benchmarks.controls [--seeds 200] [--tasks ...]`` builds the default grid's compiled
and reparametrized models (with decoys), then for each seed runs the ``random`` control on every
model, scores it exactly as the evaluator does (node AUROC over cells) and applies the summary's
random check (:func:`evaluation.summary.random_check`). It prints the share of seeds whose run
would be flagged (target: below 1%; the check's nominal rate is 0.1%), beside the mean and
spread of random's AUROC. With ``--baselines`` it also prints every degenerate baseline's node
AUROC per family (target: at most 0.65 and at least 0.35, i.e. no better than chance in either
direction).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main(argv=None) -> None:
    import methods
    import tasks
    import zoo
    from evaluation import metrics as M
    from evaluation.summary import random_check

    parser = argparse.ArgumentParser(prog="python -m benchmarks.controls")
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--tasks", nargs="*", default=None)
    parser.add_argument("--baselines", action="store_true", help="also score the degenerate SiteScores baselines")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    models = []
    for name in args.tasks or tasks.names():
        for family in zoo.FAMILIES:
            try:
                m = zoo.compile(name, family, decoys=True)
            except zoo.CompileError:
                continue
            for kind, mm in (("compiled", m), ("reparametrized", zoo.reparametrize(m, seed=1))):
                models.append((name, family, kind, mm.eval(), tasks.get(name)))
    counts = {(n, f, k): M.cell_counts(m.ground_truth) for n, f, k, m, _ in models}
    print(f"{len(models)} models built in {time.perf_counter() - start:.1f} s; negative cells per family (min, median):")
    for family in zoo.FAMILIES:
        neg = [counts[k][1] for k in counts if k[1] == family]
        print(f"  {family:<12} {min(neg)}, {int(np.median(neg))}   (positive: {min(counts[k][0] for k in counts if k[1] == family)}, {int(np.median([counts[k][0] for k in counts if k[1] == family]))})")
    flagged, means = 0, []
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        rows = []
        for i, (name, family, kind, m, task) in enumerate(models):
            f = methods.run("random", m, task, seed=seed * 1000 + i)
            pos, neg = counts[(name, family, kind)]
            rows.append({"method": "random", "task": name, "family": family, "kind": kind, "status": "ok", "auroc": M.cell_auroc(f, m, m.ground_truth),
                         "cells_positive": pos, "cells_negative": neg})
        check = random_check(rows)
        flagged += check["passed"] is False
        means.append(np.mean([r["auroc"] for r in rows]))
    print(f"\nrandom control over {args.seeds} seeds x {len(models)} cells ({time.perf_counter() - t0:.1f} s): "
          f"flagged {flagged} ({100 * flagged / args.seeds:.2f}%, target < 1%); mean AUROC {np.mean(means):.4f}, spread of the run mean {np.std(means):.4f}")
    if args.baselines:
        from methods.registry import DEGENERATE

        print("\ndegenerate baselines, node AUROC over cells (mean per family; target within 0.35..0.65):")
        for b in DEGENERATE:
            per = {}
            for name, family, kind, m, task in models:
                f = methods.run(b, m, task, seed=0)
                if f.kind != "site_scores":
                    break
                per.setdefault(family, []).append(M.cell_auroc(f, m, m.ground_truth))
            if per:
                print(f"  {b:<22} " + "  ".join(f"{fam} {np.nanmean(v):.3f} (max {np.nanmax(v):.3f})" for fam, v in per.items()))


if __name__ == "__main__":
    main()
