"""Subnetwork probing -> Circuit: a hard-concrete mask over components, learned.

Each component (``model.components``: a head, a block of units, a group of channels; or a site
with ``grain="site"``) gets a hard-concrete gate z in [0, 1] (Louizos et al. 2018: stretched
(-0.1, 1.1), temperature 2/3) on the patch mask of :func:`methods.patching.mask_interventions`:
the component's activation becomes ``z * x + (1 - z) * ablation`` at every position, with the
ablation (``zero``, ``mean``, ``resample``) an explicit argument recorded in the circuit. The
gates' log-alphas are trained with Adam on KL(clean || masked) over readout positions plus
``l0`` times the expected number of open gates. The circuit keeps the components whose
deterministic gate is above one half; ``scores`` holds every gate's probability of being open.
Edges among the kept writers come from path patching (:mod:`methods.edges`) where the model
has a residual stream.

``budget``: the number of base inputs (default 32); ``steps`` Adam steps (default 100).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .edges import edge_nodes, find_edges, writer_sites
from .finding import Circuit
from .patching import as_tokens, mask_interventions, metric, resolve, setup
from .progress import report

BETA, GAMMA, ZETA = 2 / 3, -0.1, 1.1


def subnetwork_probing(model, task, *, seed: int = 0, budget: int | None = None, ablation: str = "resample", steps: int = 100,
                       lr: float = 0.1, l0: float = 0.01, sites=None, length: int | None = None, edges: bool = True, edge_threshold: float = 1e-3,
                       grain: str = "component") -> Circuit:
    st = setup(model, task, seed=seed, budget=budget, ablation=ablation, sites=sites, length=length, all_sources=edges, grain=grain)
    n, length, base, names, sources, targets, mask = st.n, st.length, st.base, st.names, st.sources, st.targets, st.mask
    base_t = as_tokens(model, base)
    where = resolve(model, names)
    with torch.no_grad():
        clean = model.run(base_t).logits
    g = torch.Generator().manual_seed(seed)
    log_alpha = torch.full((len(names),), 3.0, requires_grad=True)  # start with every gate open
    opt = torch.optim.Adam([log_alpha], lr=lr)
    for step in range(steps):
        if step % 10 == 0:
            report(step, steps, "mask training")
        u = torch.rand(len(names), generator=g).clamp(1e-6, 1 - 1e-6)
        s = torch.sigmoid((torch.log(u) - torch.log(1 - u) + log_alpha) / BETA)
        z = (s * (ZETA - GAMMA) + GAMMA).clamp(0, 1)
        amounts = {name: 1 - z[i] for i, name in enumerate(names)}
        logits = model.run(base_t, interventions=mask_interventions(sources, amounts, where=where)).logits
        kl = metric(logits, targets, mask, "kl", clean).mean()
        expected_open = torch.sigmoid(log_alpha - BETA * math.log(-GAMMA / ZETA)).sum()
        loss = kl + l0 * expected_open
        (grad,) = torch.autograd.grad(loss, [log_alpha])
        log_alpha.grad = grad
        opt.step()
    with torch.no_grad():
        gate = (torch.sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA).clamp(0, 1)
        p_open = torch.sigmoid(log_alpha - BETA * math.log(-GAMMA / ZETA))
    kept = tuple(name for i, name in enumerate(names) if gate[i] > 0.5)
    scores = {name: float(p_open[i]) for i, name in enumerate(names)}
    found, edge_scores = find_edges(model, base_t, sources, writer_sites(model, kept), targets=targets, mask=mask, clean_logits=clean, threshold=edge_threshold) if edges and edge_nodes(model) else ((), {})
    return Circuit(kept, found, ablation, scores, "subnetwork_probing", {"steps": steps, "l0": l0, "n": n, "seed": seed, "gates": np.asarray(gate).tolist(), "edge_scores": edge_scores})
