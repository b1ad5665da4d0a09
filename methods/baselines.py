"""Degenerate baselines: methods that find nothing, as controls for the evaluator.

A metric is only as good as the trivial method it rejects. Each of these reads the model's
structure or its activations but makes no causal step (nothing patched, nothing ablated), or
returns "everything"; the evaluator runs them beside ``random`` and ``oracle`` and flags a run
where one of them scores near the oracle. None reads the ground truth.

- ``constant``: SiteScores 1 on every (component, position);
- ``layer_order``: SiteScores = the component's layer (later layers score higher);
- ``site_width``: SiteScores = the component's number of units;
- ``activation_variance``: SiteScores = the variance of the component's units across sampled
  inputs, summed over units, per position;
- ``activation_norm``: SiteScores = the mean L2 norm of the component's units per position;
- ``full_site_alignment``: every variable on the *whole* basis of the site where that scores the
  best plain IIA on a few pairs (it carries the variable, and everything else at the site);
- ``keep_all_circuit``: a Circuit of every component.

``budget``: inputs for the activation statistics (default 64) / pairs per (variable, site) for
the site choice (default 32).
"""

from __future__ import annotations

import numpy as np
import torch

from .finding import AlignedVariable, Alignment, Circuit, SiteScores, patched_rows
from .patching import as_tokens


def _per_component(model, length: int, value) -> dict:
    return {c.name: np.full(length, float(value(c))) for c in model.components}


def constant(model, task, *, seed: int = 0, budget: int | None = None) -> SiteScores:
    return SiteScores(_per_component(model, task.max_len, lambda c: 1.0), {}, None, "constant", {})


def layer_order(model, task, *, seed: int = 0, budget: int | None = None) -> SiteScores:
    return SiteScores(_per_component(model, task.max_len, lambda c: c.layer), {}, None, "layer_order", {})


def site_width(model, task, *, seed: int = 0, budget: int | None = None) -> SiteScores:
    return SiteScores(_per_component(model, task.max_len, lambda c: c.width), {}, None, "site_width", {})


def _activations(model, task, seed: int, budget):
    tokens = task.sample(int(budget or 64), seed=seed).tokens
    sites = list(dict.fromkeys(c.site for c in model.components))
    with torch.no_grad():
        cache = model.run(as_tokens(model, tokens), cache=sites).cache
    return {c.name: cache[c.site][..., list(c.units)].double() for c in model.components}


def activation_variance(model, task, *, seed: int = 0, budget: int | None = None) -> SiteScores:
    acts = _activations(model, task, seed, budget)
    scores = {name: a.var(0, unbiased=False).sum(-1).cpu().numpy() for name, a in acts.items()}
    return SiteScores(scores, {}, None, "activation_variance", {"n": int(budget or 64)})


def activation_norm(model, task, *, seed: int = 0, budget: int | None = None) -> SiteScores:
    acts = _activations(model, task, seed, budget)
    scores = {name: a.norm(dim=-1).mean(0).cpu().numpy() for name, a in acts.items()}
    return SiteScores(scores, {}, None, "activation_norm", {"n": int(budget or 64)})


def full_site_alignment(model, task, *, seed: int = 0, budget: int | None = None) -> Alignment:
    n = int(budget or 32)
    whole = {s.name: AlignedVariable(s.name, np.eye(s.width), "all", 0) for s in model.sites}
    out, chosen = {}, {}
    for k, var in enumerate(task.program.names):
        base, source, _, position = task.sample_interventions(n, seed=seed + k, variable=var)
        names = list(whole)  # every site tried at once: the pairs repeated once per site
        owner = np.repeat(np.asarray(names, dtype=object), len(base))
        reps = len(names)
        got, _ = patched_rows(model, whole, np.tile(base, (reps, 1)), np.tile(source, (reps, 1)), np.tile(position, reps), owner, (), chunk=2048)
        cf = task.counterfactual(base, source, var, position)
        iia = [float((got[i * len(base):(i + 1) * len(base)] == cf.outputs)[cf.mask].mean()) if cf.mask.any() else 0.0 for i in range(reps)]
        best = names[int(np.argmax(iia))]
        out[var], chosen[var] = whole[best], best
    return Alignment(out, "full_site_alignment", {"sites": chosen})


def keep_all_circuit(model, task, *, seed: int = 0, budget: int | None = None) -> Circuit:
    return Circuit(tuple(c.name for c in model.components), (), None, {}, "keep_all_circuit", {})
