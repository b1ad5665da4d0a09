"""Activation patching, and mean / resample / zero ablation: the standard (component, position) sweep.

Interchange (``ablation="resample"``, the default of ``activation_patching``): base and source
inputs are paired as in ``task.sample_interventions``; every (component, position) of the base
is patched with the source's activation, one at a time, and the score is the drop of the metric
(default: the base's correct-class logit minus the mean logit, averaged over readout positions).
``mean`` and ``zero`` ablation patch the per-position mean activation or zeros instead. The
per-component score (``components``) patches the component at every position at once.
Components are ``model.components`` (heads, blocks of units, groups of channels); ``grain="site"``
sweeps whole sites instead, ``sites=`` any list of sites and components.
``budget``: the number of base inputs (default 32).
"""

from __future__ import annotations

import numpy as np

from .finding import SiteScores
from .patching import setup, sweep


def activation_patching(model, task, *, seed: int = 0, budget: int | None = None, ablation: str = "resample", metric: str = "logit",
                        sites=None, length: int | None = None, max_rows: int = 512, grain: str = "component") -> SiteScores:
    st = setup(model, task, seed=seed, budget=budget, ablation=ablation, sites=sites, length=length, grain=grain)
    n, length, base, names, sources, targets, mask = st.n, st.length, st.base, st.names, st.sources, st.targets, st.mask
    pairs = [(s, t) for s in names for t in range(length)] + [(s, None) for s in names]
    vals = sweep(model, base, sources, pairs, targets=targets, mask=mask, kind=metric, max_rows=max_rows)
    T = length
    scores = {s: vals[i * T : (i + 1) * T] for i, s in enumerate(names)}
    components = {s: float(vals[len(names) * T + i]) for i, s in enumerate(names)}
    return SiteScores(scores, components, ablation, "activation_patching", {"metric": metric, "n": n, "length": length, "seed": seed})


def mean_ablation(model, task, *, seed: int = 0, budget: int | None = None, ablation: str = "mean", **options) -> SiteScores:
    out = activation_patching(model, task, seed=seed, budget=budget, ablation=ablation, **options)
    out.method = "mean_ablation"
    return out


def resample_ablation(model, task, *, seed: int = 0, budget: int | None = None, ablation: str = "resample", **options) -> SiteScores:
    out = activation_patching(model, task, seed=seed, budget=budget, ablation=ablation, **options)
    out.method = "resample_ablation"
    return out


def zero_ablation(model, task, *, seed: int = 0, budget: int | None = None, ablation: str = "zero", **options) -> SiteScores:
    out = activation_patching(model, task, seed=seed, budget=budget, ablation=ablation, **options)
    out.method = "zero_ablation"
    return out


def naive_sweep(model, task, base, sources, pairs, *, targets, mask, kind: str = "logit") -> np.ndarray:
    """The reference the batched sweep is measured against: one full forward per pair."""
    import torch

    from zoo.sites import patch

    from .patching import as_tokens, effect
    from .patching import metric as metric_fn

    base_t = as_tokens(model, base)
    with torch.no_grad():
        clean = model.run(base_t).logits
        clean_value = metric_fn(clean, targets, mask, kind, clean)
        out = []
        for site, pos in pairs:
            logits = model.run(base_t, interventions={site: patch(sources[site], positions=pos)}).logits
            out.append(float(effect(metric_fn(logits, targets, mask, kind, clean), clean_value, kind).mean()))
    return np.asarray(out)
