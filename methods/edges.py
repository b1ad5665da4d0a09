"""Edges of a circuit where the model has them: writers summing into a residual stream.

Read from the site interface alone (site kinds, never the family): a model has edges when it has
``resid`` sites; its edge nodes are the sites that write into the stream (kinds ``head``,
``attn``, ``mlp``, ``mixer``), plus two pseudo-nodes, ``"embed"`` (the first residual site's
content, before any writer) and ``"logits"`` (the output), as in the ground truth.

An edge ``a -> b`` is tested by path patching: ``a``'s output is replaced by its ablation while
every other writer is pinned to its clean output, so the only route from ``a`` to ``b`` left is
the direct one through the stream; the edge is kept when ``b``'s activation (for ``logits``:
the KL of the outputs) moves by more than ``threshold`` (relative change of ``b``'s activation,
averaged over the batch). One forward per tested pair, only among the given components.
"""

from __future__ import annotations

import torch

from zoo.sites import patch

from .patching import metric

WRITER_KINDS = ("head", "attn", "mlp", "mixer")


def edge_nodes(model) -> list[str]:
    """The writer sites in model order, or [] when the model has no residual stream."""
    sites = list(model.sites)
    if not any(s.kind == "resid" for s in sites):
        return []
    return [s.name for s in sites if s.kind in WRITER_KINDS]


def writer_sites(model, names) -> list[str]:
    """The writer sites (:func:`edge_nodes`) that the named sites or components write through:
    a writer site itself, a component of it, or the hidden units of the sublayer it outputs
    (``L0.mlp.hidden`` writes through ``L0.mlp``; an SSM's ``L0.state``/``L0.conv`` through
    ``L0.mixer``), by the sites' layers and kinds."""
    writers = edge_nodes(model)
    if not writers:
        return []
    sites = {s.name: s for s in model.sites}
    comps = {c.name: c for c in model.components}
    out = set()
    for n in names:
        site = sites[n] if n in sites else sites[comps[n].site]
        if site.name in writers:
            out.add(site.name)
            continue
        same_layer = [w for w in writers if sites[w].layer == site.layer and sites[w].kind in ("mlp", "mixer")]
        kind = "mlp" if site.kind == "mlp_hidden" else "mixer"
        out.update(w for w in same_layer if sites[w].kind == kind)
    return [w for w in writers if w in out]


def find_edges(model, base_t, sources, components, *, targets, mask, clean_logits, threshold: float = 1e-3) -> tuple[tuple[tuple[str, str], ...], dict]:
    """Direct edges among ``components`` (plus embed and logits); returns (edges, scores)."""
    writers = edge_nodes(model)
    if not writers:
        return (), {}
    order = {s.name: i for i, s in enumerate(model.sites)}
    first_resid = next(s.name for s in model.sites if s.kind == "resid")
    kept = [w for w in writers if w in set(components)]
    with torch.no_grad():
        clean = model.run(base_t, cache=writers + [first_resid])
    nodes_from = ["embed"] + kept
    nodes_to = kept + ["logits"]
    edges, scores = [], {}
    for a in nodes_from:
        for b in nodes_to:
            if a == b or (a != "embed" and b != "logits" and order[a] >= order[b]):
                continue
            pins = {w: patch(clean.cache[w]) for w in writers if w not in (a, b)}
            site_a = first_resid if a == "embed" else a
            ivs = {**pins, site_a: patch(sources[site_a])}
            with torch.no_grad():
                res = model.run(base_t, cache=[] if b == "logits" else [b], interventions=ivs)
            if b == "logits":
                score = float(metric(res.logits, targets, mask, "kl", clean_logits).mean())
            else:
                ref = clean.cache[b]
                score = float(((res.cache[b] - ref).norm(dim=-1).mean() / ref.norm(dim=-1).mean().clamp_min(1e-12)))
            scores[f"{a}->{b}"] = score
            if score > threshold:
                edges.append((a, b))
    return tuple(edges), scores
