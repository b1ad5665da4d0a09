"""Controls: ``random`` (a seeded RNG, no model reads) and ``oracle`` (reads the ground truth).

The evaluator needs both: the oracle must score 1.0 and random must sit at chance, or the run is
flagged. ``oracle*`` are the only methods marked :func:`~methods.registry.reads_ground_truth`,
so ``methods.run`` hands them the real model instead of the guarded view.

- ``random``: SiteScores uniform in [0, 1) per (component, position).
- ``random_alignment``: every variable at a random site, a random orthonormal basis of the
  dimension DAS would use.
- ``random_circuit``: each component kept with probability one half.
- ``oracle``: SiteScores 1 on the ground truth's positive (component, position) cells, 0 elsewhere.
- ``oracle_alignment``: the ground-truth locations of the program's variables (not the decoys');
  ``oracle_circuit``: the components with a positive cell, and the ground truth's edges.

The degenerate baselines, controls of another kind, are in :mod:`methods.baselines`.
"""

from __future__ import annotations

import numpy as np

from .das import default_dim
from .finding import AlignedVariable, Alignment, Circuit, SiteScores
from .registry import reads_ground_truth
from zoo.ground_truth import POSITIVE


def random(model, task, *, seed: int = 0, budget: int | None = None, length: int | None = None) -> SiteScores:
    rng = np.random.default_rng(seed)
    length = length or task.max_len
    names = [c.name for c in model.components]
    return SiteScores({c: rng.random(length) for c in names}, {}, None, "random", {"seed": seed})


def random_alignment(model, task, *, seed: int = 0, budget: int | None = None) -> Alignment:
    rng = np.random.default_rng(seed)
    sites = list(model.sites)
    out = {}
    for var in task.program.names:
        site = sites[int(rng.integers(len(sites)))]
        k = default_dim(task.program[var], site.width)
        q, _ = np.linalg.qr(rng.standard_normal((site.width, k)))
        out[var] = AlignedVariable(site.name, q.T, "all", 0)
    return Alignment(out, "random_alignment", {"seed": seed})


def random_circuit(model, task, *, seed: int = 0, budget: int | None = None) -> Circuit:
    rng = np.random.default_rng(seed)
    names = [c.name for c in model.components]
    keep = rng.random(len(names)) < 0.5
    return Circuit(tuple(s for s, k in zip(names, keep) if k), (), None, {}, "random_circuit", {"seed": seed})


def _truth(model):
    gt = model.ground_truth
    if gt is None:
        raise ValueError("the oracle needs a model with ground truth (a compiled or planted model)")
    return gt


@reads_ground_truth
def oracle(model, task, *, seed: int = 0, budget: int | None = None, length: int | None = None) -> SiteScores:
    gt = _truth(model)
    length = length or task.max_len
    scores = {}
    for c in model.components:
        lab = np.asarray(gt.cells.get(c.name, ()), dtype=np.int64)[:length]
        scores[c.name] = np.pad((lab == POSITIVE).astype(float), (0, length - len(lab)))
    return SiteScores(scores, {}, None, "oracle", {})


@reads_ground_truth
def oracle_alignment(model, task, *, seed: int = 0, budget: int | None = None) -> Alignment:
    gt = _truth(model)
    return Alignment({v: AlignedVariable(loc.site, loc.basis, "all", loc.lag) for v, loc in gt.program_variables.items()}, "oracle_alignment", {})


@reads_ground_truth
def oracle_circuit(model, task, *, seed: int = 0, budget: int | None = None) -> Circuit:
    gt = _truth(model)
    return Circuit(gt.positive_components(), tuple(tuple(e) for e in gt.edges), None, {}, "oracle_circuit", {})
