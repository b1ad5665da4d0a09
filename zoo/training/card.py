"""Model cards: what a trained model's ``config.json`` records beside its weights.

``meta`` of a trained model holds ``kind: "trained"``, ``planted``, ``task``, ``family``,
``max_len``, ``seed`` and ``card``: the config, seed, steps, wall seconds, why the run stopped
(``stopped``: "targets", "gave up" (``give_up_minutes``), "max_minutes" or "max_steps"),
held-out accuracy, per-variable IIA on held-out pairs (planted only; measured with
:func:`zoo.verify.iia` on the ground-truth locations) and the same counted only on the outputs
the interventions change (``iia_changed``, :func:`measure`'s ``changed``; not part of "reached", which is
the issue's plain IIA), the targets, and per strict site the
held-out accuracy with that site's strict patch applied (:func:`strict_accuracy`;
``min_strict`` the worst; training aims for ``STRICT_TARGET`` but "reached" means the accuracy
and IIA targets). ``zoo.store.load`` refuses a trained model without it.
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from tasks import IGNORE, Task

from .. import verify
from ..sites import patch
from ..store import TRAINED_CARD_KEYS as CARD_KEYS  # noqa: F401  (re-exported)

ACCURACY_TARGET, IIA_TARGET = 0.99, 0.95
STRICT_TARGET = 0.95  # not part of "reached": training aims for it (see ZooLightningModule), the card records it


def measure(model, task: Task, data, n: int = 512, *, early_exit: bool = False, order=None, changed: dict | None = None) -> tuple[float, dict[str, float]]:
    """Held-out accuracy and, when the model has ground truth, each variable's held-out IIA.

    ``early_exit`` (the checks during training, which only decide whether to stop): no IIA while
    accuracy misses its target, and none after the first variable that misses, taking variables
    in ``order`` (say, worst first); the dict then holds only the variables measured. The card
    always measures everything.

    ``changed``: a dict to fill, from the same patched runs, with each variable's IIA counted only
    on the outputs its interventions change (``zoo.verify``'s ``changed_only``); None where none
    does (its IIA then only says the location holds nothing else). Plain IIA also counts the
    outputs an intervention leaves alone, which a location that holds nothing gets right.
    """
    model = _on_cpu(model)
    was = model.training
    model.eval()
    acc = verify.accuracy(model, task, data.heldout(n))
    iia = {}
    if model.ground_truth is not None and not (early_exit and acc < ACCURACY_TARGET):
        index = {name: k for k, name in enumerate(model.ground_truth.variables)}
        for name in sorted(index, key=lambda v: list(order).index(v) if order and v in order else -1):
            loc = model.ground_truth.variables[name]
            base, source, _, position = data.heldout_pairs(name, index[name], n)
            predicted = verify.patched_predictions(model, loc, base, source, position)
            if changed is None:  # the checks during training: plain IIA only
                value = verify.counterfactual_accuracy(task, name, base, source, position, predicted)
            else:
                value, on_changed = verify.counterfactual_accuracies(task, name, base, source, position, predicted)
                changed[name] = None if on_changed != on_changed else on_changed
            iia[name] = 1.0 if value != value else value  # no counted position: nothing to get wrong
            if early_exit and iia[name] < IIA_TARGET:
                break
    model.train(was)
    return acc, iia


def strict_accuracy(model, task: Task, data, masks: dict, n: int = 512) -> dict[str, float]:
    """Site -> held-out accuracy with the coordinates the strict term patches there (``masks``:
    site -> bool ``[W]``) taken from another held-out input at every position, one site at a
    time: how far the ground truth's "nothing else at this site matters" holds (1.0: exactly)."""
    if not masks:
        return {}
    model = _on_cpu(model)
    base, source = data.heldout(n), data.heldout_sources(n)
    targets = task.targets(base)
    keep = targets != IGNORE
    with torch.no_grad():
        cache = model.run(torch.as_tensor(source), cache=sorted(masks)).cache
    out = {}
    for site, cols in masks.items():
        basis = torch.eye(len(cols))[torch.as_tensor(cols, dtype=torch.bool)]
        fn = patch(cache[site], positions=None, basis=basis)
        out[site] = float((verify.predictions(model, base, interventions={site: fn})[keep] == targets[keep]).mean())
    return out


def _on_cpu(model):
    """``model``, or a CPU copy of it when it lives elsewhere (``verify`` works on CPU tensors)."""
    return copy.deepcopy(model).cpu() if any(p.device.type != "cpu" for p in model.parameters()) else model


def reached(acc: float, iia: dict) -> bool:
    return acc >= ACCURACY_TARGET and all(v >= IIA_TARGET for v in iia.values())


def make_card(model, *, seed, steps, seconds, acc, iia, planted, strict=None, stopped=None, iia_changed=None, optimiser=None, wired=()) -> dict:
    changed = {k: (None if v is None else float(v)) for k, v in (iia_changed or {}).items()}
    live = [v for v in changed.values() if v is not None]
    return {
        "config": dataclasses.asdict(model.config),
        "seed": int(seed),
        "optimiser": dict(optimiser or {}),  # AdamW's lr and the batch size
        "steps": int(steps),
        "wall_seconds": round(float(seconds), 2),
        "stopped": stopped,
        "heldout_accuracy": float(acc),
        "iia": {k: float(v) for k, v in iia.items()},
        "min_iia": float(min(iia.values())) if iia else None,
        "iia_changed": changed,  # measure's changed: IIA on the outputs an intervention changes (None: it never changes one)
        "min_iia_changed": min(live) if live else None,
        "planted": bool(planted),
        "targets": {"accuracy": ACCURACY_TARGET, "iia": IIA_TARGET if planted else None, "strict": STRICT_TARGET if planted else None},
        "reached": bool(reached(acc, iia)),
        "strict": {k: float(v) for k, v in (strict or {}).items()},  # strict_accuracy: trained toward STRICT_TARGET, not part of "reached"
        "min_strict": float(min(strict.values())) if strict else None,
        "params": model.num_parameters(),  # the wired counters' weights held at 0 included
        "wired": list(wired),  # the variables whose RNN blocks were wired to their inputs (zoo.training.wiring)
    }


def format_card(meta: dict) -> str:
    c = meta["card"]
    lines = [
        f"model card: {meta['family']} trained on {meta['task']} (seed {c['seed']}, {'planted' if c['planted'] else 'unplanted: no ground truth beyond behaviour'})",
        f"  params {c['params']:,}   steps {c['steps']}   wall {c['wall_seconds']:.1f} s" + (f"   stopped: {c['stopped']}" if c.get("stopped") else "")
        + "".join(f"   {k} {v:g}" for k, v in (c.get("optimiser") or {}).items()),
        f"  held-out accuracy {c['heldout_accuracy']:.4f} (target {c['targets']['accuracy']})",
    ]
    changed = c.get("iia_changed") or {}
    for name, v in c["iia"].items():
        w = changed.get(name)
        lines.append(f"  IIA {name:<16} {v:.4f}" + ("" if name not in changed else f"   on changed outputs {w:.4f}" if w is not None else "   (no held-out intervention changes an output)"))
    if c.get("min_strict") is not None:
        worst = min(c["strict"], key=c["strict"].get)
        aim = c["targets"].get("strict")
        lines.append(f"  strict: accuracy {c['min_strict']:.4f} at worst ({worst}) with what the algorithm does not use there patched"
                     + (f" (aimed for {aim})" if aim is not None else ""))
    if c.get("wired"):
        lines.append(f"  wired to their inputs only (zoo.training.wiring): {', '.join(c['wired'])}")
    lines.append(f"  targets reached: {'yes' if c['reached'] else 'NO'}")
    return "\n".join(lines)


def card_problem(meta: dict) -> str | None:
    """Why a trained model's card is unusable, or None when it is complete."""
    from ..store import _card_problem

    return _card_problem(meta)
