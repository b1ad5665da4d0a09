"""IIA on the outputs an intervention changes, for every planted model of a store.

The card's IIA counts every position the protocol counts, including those whose counterfactual
output equals the base's: a location that holds nothing scores the share of such outputs. This
reads each planted model of a store (``zoo build``'s ``STORE/trained/``) and prints, per model,
the card's accuracy and min IIA beside the IIA counted only where the counterfactual differs from
the base (``zoo.training.card.measure``'s ``changed``, on the card's held-out pairs), its worst
variable, and the share of counted outputs that variable's interventions change. Variables whose
held-out interventions never change an output are listed (their IIA only says the location holds
nothing else).

    python -m benchmarks.changed_iia [--store DIR] [--tasks sort reverse] [--archs rnn]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import tasks
import zoo
from zoo import store, verify
from zoo.training import card
from zoo.training.build import default_store
from zoo.training.datamodule import TaskDataModule


def rows(model, task, n: int = 512) -> dict[str, tuple[float, float | None, float]]:
    """Variable -> (IIA, IIA on changed outputs or None, share of counted outputs changed), on the
    held-out pairs the card measured on."""
    data = TaskDataModule(task, seed=model.meta["card"]["seed"])
    changed: dict = {}
    _, iia = card.measure(model, task, data, n, changed=changed)
    out = {}
    for k, name in enumerate(model.ground_truth.variables):
        base, source, _, position = data.heldout_pairs(name, k, n)
        cf = task.counterfactual(base, source, name, position)
        share = float(verify.changed_mask(task, cf, base).sum() / max(int(cf.mask.sum()), 1))
        out[name] = (iia[name], changed[name], share)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=None, help="a zoo build store (default: zoo build's)")
    parser.add_argument("--tasks", nargs="+", default=None)
    parser.add_argument("--archs", nargs="+", default=list(zoo.FAMILIES), choices=zoo.FAMILIES)
    args = parser.parse_args(argv)
    root = (default_store() if args.store is None else Path(args.store)) / "trained"
    names = args.tasks or list(tasks.names())
    print("| task | family | accuracy | min IIA | min IIA on changed outputs | worst variable (share changed) | never changed |")
    print("|---|---|---|---|---|---|---|")
    for task_name in names:
        for arch in args.archs:
            for path in sorted(root.glob(f"{task_name}-{arch}-seed*")):
                model = store.load(path)
                if model.ground_truth is None:
                    continue
                measured = rows(model, tasks.get(task_name))
                live = {v: r for v, r in measured.items() if r[1] is not None}
                never = ", ".join(v for v in measured if v not in live) or "-"
                cells = [task_name, arch, f"{model.meta['card']['heldout_accuracy']:.4f}", f"{min(r[0] for r in measured.values()):.4f}", "-", "-", never]
                if live:
                    worst = min(live, key=lambda v: live[v][1])
                    cells[4:6] = [f"{live[worst][1]:.4f}", f"{worst} ({live[worst][2]:.2f})"]
                print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
