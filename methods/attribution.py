"""Attribution patching and integrated-gradients attribution -> SiteScores.

Both are gradients of the patch mask (:func:`methods.patching.mask_interventions`): patching a
(component, position) by an amount p moves the metric by about ``p * grad . (source - clean)``
(summed over the component's units). Components by default, ``grain="site"`` or ``sites=`` for others.

- ``attribution_patching``: the first-order estimate at p = 0, for every (site, position) from
  one forward and one ``torch.autograd.grad`` through :func:`zoo.sites.add` with a zero delta
  that requires grad (no backward hooks). Score = estimated drop of the metric.
- ``integrated_gradients``: the patch amount of one component (all its positions) integrated
  from 0 to 1 (midpoint rule, ``steps`` points); every component is done at once on stacked
  copies of the batch (copy k interpolates component k only). A component's scores sum to its
  whole-component patching effect up to the quadrature error (completeness).

``budget``: the number of base inputs (default 32). ``metric`` must be differentiable
(``logit``, ``prob``, ``logprob``).
"""

from __future__ import annotations

import numpy as np
import torch

from zoo.sites import add

from .finding import SiteScores
from .patching import as_tokens, mask_interventions, resolve, setup
from .patching import metric as metric_fn

DIFFERENTIABLE = ("logit", "prob", "logprob")


def _setup(model, task, seed, budget, ablation, metric, sites, length, grain):
    if metric not in DIFFERENTIABLE:
        raise ValueError(f"gradient attribution needs a differentiable metric ({', '.join(DIFFERENTIABLE)}), got {metric!r}")
    st = setup(model, task, seed=seed, budget=budget, ablation=ablation, sites=sites, length=length, grain=grain)
    return st.n, st.length, st.base, st.names, st.sources, st.targets, st.mask


def attribution_patching(model, task, *, seed: int = 0, budget: int | None = None, ablation: str = "resample", metric: str = "logit",
                         sites=None, length: int | None = None, grain: str = "component") -> SiteScores:
    n, length, base, names, sources, targets, mask = _setup(model, task, seed, budget, ablation, metric, sites, length, grain)
    where = resolve(model, names)
    used = list(dict.fromkeys(site for site, _ in where.values()))
    base_t = as_tokens(model, base)
    widths = {s.name: s.width for s in model.sites}
    deltas = {s: torch.zeros(base_t.shape[0], length, widths[s], device=base_t.device, requires_grad=True) for s in used}
    res = model.run(base_t, cache=used, interventions={s: add(deltas[s]) for s in used})
    value = metric_fn(res.logits, targets, mask, metric).sum()  # per-example gradients; averaged below
    grads = dict(zip(used, torch.autograd.grad(value, [deltas[s] for s in used], allow_unused=True)))
    scores = {}
    for name, (site, units) in where.items():
        g = grads[site]
        if g is None:
            scores[name] = np.zeros(length)
            continue
        prod = g * (sources[site].detach() - res.cache[site].detach())
        if units is not None:
            prod = prod[..., list(units)]
        scores[name] = (-prod.sum(-1).mean(0)).cpu().numpy()
    components = {s: float(v.sum()) for s, v in scores.items()}
    return SiteScores(scores, components, ablation, "attribution_patching", {"metric": metric, "n": n, "length": length, "seed": seed})


def integrated_gradients(model, task, *, seed: int = 0, budget: int | None = None, ablation: str = "resample", metric: str = "logit",
                         sites=None, length: int | None = None, steps: int = 8, grain: str = "component") -> SiteScores:
    n, length, base, names, sources, targets, mask = _setup(model, task, seed, budget, ablation, metric, sites, length, grain)
    where = resolve(model, names)
    base_t = as_tokens(model, base)
    B, K = base_t.shape[0], len(names)
    dev = base_t.device
    rows = torch.arange(K * B, device=dev) // B  # copy index of each row
    total = {s: torch.zeros(K * B, length, device=dev) for s in names}
    for i in range(steps):
        alpha = (i + 0.5) / steps
        leaves = {s: torch.zeros(K * B, length, device=dev, requires_grad=True) for s in names}
        amounts = {s: alpha * (rows == k).to(torch.float32)[:, None] + leaves[s] for k, s in enumerate(names)}
        logits = model.run(base_t.repeat(K, 1), interventions=mask_interventions(sources, amounts, reps=K, where=where)).logits
        value = metric_fn(logits, targets, mask, metric).sum()
        grads = torch.autograd.grad(value, [leaves[s] for s in names], allow_unused=True)
        for s, g in zip(names, grads):
            if g is not None:
                total[s] += g.detach() / steps
    scores = {s: (-total[s][k * B : (k + 1) * B].mean(0)).cpu().numpy() for k, s in enumerate(names)}
    components = {s: float(v.sum()) for s, v in scores.items()}
    return SiteScores(scores, components, ablation, "integrated_gradients", {"metric": metric, "n": n, "length": length, "seed": seed, "steps": steps})


__all__ = ["attribution_patching", "integrated_gradients"]
