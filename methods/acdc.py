"""ACDC (automatic circuit discovery) over components -> Circuit.

Components are ``model.components`` (heads, blocks of units, groups of channels; ``grain="site"``
for whole sites). On the patch mask of :func:`methods.patching.mask_interventions`
a removed component's activation is replaced by its ablation (``zero``, ``mean`` or ``resample``,
an explicit argument recorded in the circuit) at every position. Starting from the full model,
components are visited from the output back to the input (reverse site order); one is removed
for good when removing it raises the KL divergence of the outputs from the clean run's (averaged
over readout positions) by less than ``threshold``. ``scores`` holds each component's KL increase
when it was tried. Where the model sums writers into a residual stream, the edges among the kept
writers (and embed/logits) come from path patching (:mod:`methods.edges`, ``edges=True``).

``budget``: the number of base inputs (default 32).
"""

from __future__ import annotations

import torch

from .edges import edge_nodes, find_edges, writer_sites
from .finding import Circuit
from .patching import as_tokens, mask_interventions, metric, resolve, setup
from .progress import report


def kl_with_removed(model, base_t, sources, removed, targets, mask, clean, where=None) -> float:
    amounts = {s: torch.ones(()) for s in removed}
    with torch.no_grad():
        logits = model.run(base_t, interventions=mask_interventions(sources, amounts, where=where)).logits
    return float(metric(logits, targets, mask, "kl", clean).mean())


def acdc(model, task, *, seed: int = 0, budget: int | None = None, ablation: str = "resample", threshold: float = 0.01,
         sites=None, length: int | None = None, edges: bool = True, edge_threshold: float = 1e-3, grain: str = "component") -> Circuit:
    st = setup(model, task, seed=seed, budget=budget, ablation=ablation, sites=sites, length=length, all_sources=edges, grain=grain)
    n, length, base, names, sources, targets, mask = st.n, st.length, st.base, st.names, st.sources, st.targets, st.mask
    base_t = as_tokens(model, base)
    where = resolve(model, names)
    with torch.no_grad():
        clean = model.run(base_t).logits
    removed: list[str] = []
    current = 0.0
    scores = {}
    for i, s in enumerate(reversed(names)):
        report(i, len(names), f"trying without {s}")
        kl = kl_with_removed(model, base_t, sources, removed + [s], targets, mask, clean, where)
        scores[s] = kl - current
        if kl - current < threshold:
            removed.append(s)
            current = kl
    kept = tuple(s for s in names if s not in removed)
    found, edge_scores = find_edges(model, base_t, sources, writer_sites(model, kept), targets=targets, mask=mask, clean_logits=clean, threshold=edge_threshold) if edges and edge_nodes(model) else ((), {})
    return Circuit(kept, found, ablation, scores, "acdc", {"threshold": threshold, "final_kl": current, "n": n, "seed": seed, "edge_scores": edge_scores})
