"""Measuring a model against its task: accuracy, and interchange-intervention accuracy (IIA).

IIA of a location for a variable: patch the location (site, positions, basis) with a source run's
activation, and count the readout positions that the protocol of :mod:`tasks.interpreter` keeps
where the model's prediction equals the program's counterfactual output. It is computed per
(example, counted position) pair over a batch. Used to check compiled models (``zoo check``),
to write trained models' cards, and by the evaluator for a method's alignment.

``changed_only=True`` counts only the positions whose counterfactual output differs from the
base's: a stricter reading, since a location that holds nothing (a dead block, a patch that
changes nothing) scores the share of outputs the intervention leaves alone on plain IIA
(``sort``'s RNN: 0.88 on ``le3``) and 0 here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from tasks import IGNORE, Task

from .ground_truth import Location
from .model import ZooModel
from .sites import patch


def predictions(model: ZooModel, tokens, interventions=None) -> np.ndarray:
    with torch.no_grad():
        return model.run(torch.as_tensor(tokens), interventions=interventions).logits.argmax(-1).cpu().numpy()


def accuracy(model: ZooModel, task: Task, tokens) -> float:
    """Share of readout positions where the model's prediction equals the program's output."""
    targets = task.targets(tokens)
    mask = targets != IGNORE
    return float((predictions(model, tokens)[mask] == targets[mask]).mean())


def patched_predictions(model: ZooModel, location: Location, base, source, position) -> np.ndarray:
    """The base run's argmax with ``location`` at ``position`` (per example) taken from the source run."""
    with torch.no_grad():
        src = model.run(torch.as_tensor(source), cache=[location.site]).cache[location.site]
    fn = patch(src, positions=torch.as_tensor(np.asarray(position) + location.lag), basis=location.tensor())
    return predictions(model, base, interventions={location.site: fn})


def iia(model: ZooModel, task: Task, variable: str, location: Location, base, source, position, *, changed_only: bool = False) -> float:
    """IIA of ``location`` for ``variable`` on (base, source, position) cases (see module doc)."""
    predicted = patched_predictions(model, location, base, source, position)
    return counterfactual_accuracy(task, variable, base, source, position, predicted, changed_only=changed_only)


def counterfactual_accuracy(task: Task, variable: str, base, source, position, predicted: np.ndarray, *, changed_only: bool = False) -> float:
    """Share of counted positions where ``predicted`` (a patched run's argmax) equals the
    program's counterfactual output; NaN when no position counts. ``changed_only``: count only
    the positions where the counterfactual output differs from the base's."""
    cf = task.counterfactual(base, source, variable, position)
    return _share_right(predicted, cf, changed_mask(task, cf, base) if changed_only else cf.mask)


def counterfactual_accuracies(task: Task, variable: str, base, source, position, predicted: np.ndarray) -> tuple[float, float]:
    """(:func:`counterfactual_accuracy`, the same with ``changed_only``) from one counterfactual run."""
    cf = task.counterfactual(base, source, variable, position)
    return _share_right(predicted, cf, cf.mask), _share_right(predicted, cf, changed_mask(task, cf, base))


def changed_mask(task: Task, cf, base) -> np.ndarray:
    """The counted positions of counterfactual ``cf`` whose output differs from the base's."""
    return cf.mask & (cf.outputs != task.targets(base))


def _share_right(predicted: np.ndarray, cf, counted: np.ndarray) -> float:
    return float((predicted[counted] == cf.outputs[counted]).mean()) if counted.any() else float("nan")


@dataclass
class Report:
    accuracy: float
    iia: dict[str, float] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return self.accuracy == 1.0 and all(v == 1.0 for v in self.iia.values() if v == v)

    def lines(self) -> list[str]:
        out = [f"accuracy {self.accuracy:.4f}"]
        out += [f"IIA {name:<14} {value:.4f}" for name, value in self.iia.items()]
        return out


def check(model: ZooModel, task: Task, n: int = 512, seed: int = 0) -> Report:
    """Accuracy on ``n`` sampled inputs and, if the model has ground truth, each variable's IIA."""
    report = Report(accuracy(model, task, task.sample(n, seed=seed).tokens))
    if model.ground_truth is not None:
        for k, (name, location) in enumerate(model.ground_truth.variables.items()):
            base, source, _, position = task.sample_interventions(n, seed=seed + 1 + k, variable=name)
            report.iia[name] = iia(model, task, name, location, base, source, position)
    return report
