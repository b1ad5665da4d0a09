"""Sanity table of the methods on compiled models, one line per (task, family, method).

    python -m benchmarks.methods [--tasks parity shift induction] [--methods ...] [--budget 32]

For a SiteScores method: the mean per-site score (max over positions) on sites that hold a
program variable or belong to the ground-truth circuit, against the mean on every other site,
and the share of (in, out) site pairs ordered correctly (a plain AUROC). For an Alignment
method: the mean and minimum held-out IIA over the variables it aligned, and how many of them it
placed at their ground-truth site. For a Circuit method: precision and recall of its components
against the ground-truth circuit (non-residual sites). Ground truth is read here, by the
benchmark, never by the methods (they run through ``methods.run``'s guarded view).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import methods
import tasks
import zoo

METHODS = ("activation_patching", "attribution_patching", "integrated_gradients", "probes", "das", "sae", "acdc", "subnetwork_probing", "random", "oracle")
STREAM_KINDS = ("resid", "embed")  # carriers, not components


def site_score_line(model, finding) -> str:
    gt = model.ground_truth
    inside = set(gt.site_variables) | set(gt.circuit)
    per_site = finding.by_site("max") if finding.scores else dict(finding.components)
    ins = [abs(v) for s, v in per_site.items() if s in inside]
    outs = [abs(v) for s, v in per_site.items() if s not in inside]
    if not ins or not outs:
        return f"in {np.mean(ins or [0]):.3f}  out -  (no outside sites)"
    auroc = np.mean([(a > b) + 0.5 * (a == b) for a in ins for b in outs])
    return f"in {np.mean(ins):.3f}  out {np.mean(outs):.3f}  AUROC {auroc:.2f}"


def alignment_line(model, task, finding, n: int) -> str:
    gt = model.ground_truth
    iias, at_gt = [], 0
    for name, aligned in finding.variables.items():
        iias.append(methods.alignment_iia(model, task, name, aligned, n=n, seed=123))
        at_gt += aligned.site == gt.variables[name].site
    return f"IIA mean {np.nanmean(iias):.3f} min {np.nanmin(iias):.3f}  at GT site {at_gt}/{len(iias)}"


def circuit_line(model, finding) -> str:
    kinds = {s.name: s.kind for s in model.sites}
    truth = {c for c in model.ground_truth.circuit if kinds.get(c) not in STREAM_KINDS}
    found = {c for c in finding.components if kinds.get(c) not in STREAM_KINDS}
    precision = len(found & truth) / max(len(found), 1)
    recall = len(found & truth) / max(len(truth), 1)
    return f"precision {precision:.2f}  recall {recall:.2f}  ({len(found)} components, {len(truth)} in GT)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["parity", "shift", "induction"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--budget", type=int, default=32)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for task_name in args.tasks:
        task = tasks.get(task_name)
        for family in zoo.FAMILIES:
            model = zoo.compile(task, family)
            for name in args.methods:
                start = time.perf_counter()
                finding = methods.run(name, model, task, seed=0, budget=args.budget)
                seconds = time.perf_counter() - start
                if isinstance(finding, methods.SiteScores):
                    line = site_score_line(model, finding)
                elif isinstance(finding, methods.Alignment):
                    line = alignment_line(model, task, finding, n=128)
                else:
                    line = circuit_line(model, finding)
                print(f"{task_name:<10} {family:<12} {name:<22} {seconds:>6.1f}s  {line}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
