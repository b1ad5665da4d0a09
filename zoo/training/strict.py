"""What the strict SIIT term patches, and which blocks carry a variable beyond its own site.

Given a planted alignment (:mod:`zoo.training.alignment`), the trainer must say, at every site,
which coordinates nothing of the algorithm may depend on:

- **a residual-stream point** (transformer, SSM): every coordinate no variable uses, and the
  blocks *idle* there: those of variables not written yet, and of variables nothing after that
  point reads (:func:`idle_variables`). Otherwise a layer can smuggle a variable's inputs
  through a block reserved for a later variable, or bypass a variable by re-reading its inputs.
- **a component's output** (an attention head, an SSM mixer, an MLP): everything outside the
  blocks of the variables that component computes (:func:`writers`: the components between a
  variable's latest input and its site; for a per-position ``Map``/``Sum`` only the MLPs). A
  component that computes nothing is patched whole: no layer may compute a variable earlier
  than, or beside, the place the alignment gives it (``modular_addition``'s SSM would sum its
  digits in layer 0's mixer instead of summing the ``digit`` block in layer 1).
- **an RNN layer** (or its embedding): the units no block or relay of that layer uses, and the
  blocks of variables nothing above reads (the token's own block once a Map of it sits beside it
  in the embedding); nothing in a layer that holds a lookup's memory slots or feeds them
  (:func:`zoo.training.alignment.scratch_layers`).

A variable computed over several stages in turn (a ``Scan`` over two layers, a count decoded by
the MLP after its attention) keeps the unused coordinates inside its span as scratch work
(:func:`spans`). :func:`carriers` lists the blocks that carry a variable beyond its own site (its
block at later stream points, its RNN relays): IIT checks that they hold the variable and
nothing else.
"""

from __future__ import annotations

import numpy as np

from .alignment import STREAM_KINDS, Plan, _rnn_layer, scratch_layers

COMPONENT_KINDS = ("head", "mixer", "mlp")  # sites that are one component's output, summed into the stream


def _order(model) -> dict[str, int]:
    return {s.name: k for k, s in enumerate(model.site_list())}


def _components(model) -> list[str]:
    return [s.name for s in model.site_list() if s.kind in COMPONENT_KINDS]


def writers(p: Plan, model) -> dict[str, tuple[str, ...]]:
    """Variable -> the components (head, mixer and MLP output sites) that compute it: those
    between its latest input's site and its own site; for a per-position variable (``Map``,
    ``Sum``) only the MLPs among them (a sequence mixer has no business computing it). Empty for
    the inputs and for RNNs (a layer is one component: its hidden state is the site)."""
    if p.family == "rnn":
        return {}
    order, comps = _order(model), _components(model)
    out = {}
    for name, (site, _) in p.blocks.items():
        inputs = p.inputs.get(name, ())
        if not inputs:
            out[name] = ()
            continue
        lo, hi = max(order[p.blocks[u][0]] for u in inputs), order[site]
        span = [c for c in comps if lo < order[c] <= hi]
        if name in p.per_position:
            span = [c for c in span if model.site(c).kind == "mlp"] or span
        out[name] = tuple(span)
    return out


def _stages(model, components) -> int:
    """How many components run one after the other (the heads of one layer are one stage)."""
    return len({f"L{model.site(c).layer}.attn" if model.site(c).kind == "head" else c for c in components})


def spans(p: Plan, model) -> list[tuple[str, int, int]]:
    """(variable, first, last) site orders of variables computed by several components in turn
    (a ``Scan`` placed after two layers, a count decoded by the MLP after its attention): the
    stream points strictly inside such a span carry the computation's scratch work."""
    order, w = _order(model), writers(p, model)
    return [(v, max(order[p.blocks[u][0]] for u in p.inputs[v]), order[p.blocks[v][0]]) for v, cs in w.items() if _stages(model, cs) > 1]


def idle_variables(p: Plan, model, site: str) -> list[str]:
    """Variables whose block is idle at the residual-stream point ``site``: not written yet (its
    writer comes later), or stale (every reader was computed at or before ``site``; never the
    output). The strict term patches idle blocks, so no layer can smuggle a variable's inputs
    through a block reserved for a later variable, or bypass a variable by re-reading its inputs:
    in the transformer of ``sort``, ``tokens`` is stale at ``L2.resid`` once the ``le_k`` Maps are
    written, so layer 2 must count ``le_k``. A variable still being computed at ``site`` (inside
    its span, see :func:`spans`) is not idle there."""
    if p.family == "rnn" or model.site(site).kind != "resid":
        return []
    order = _order(model)
    here = order[site]
    busy = {v for v, lo, hi in spans(p, model) if lo < here < hi}

    def stale(name):
        return name != p.output and all(order[p.blocks[r][0]] <= here for r in p.readers.get(name, ()))

    return [name for name, (written, _) in p.blocks.items() if name not in busy and (order[written] > here or stale(name))]


def free_basis(p: Plan, model, site: str) -> np.ndarray:
    """Orthonormal rows spanning the coordinates of ``site`` that the strict term patches.

    - a residual-stream point: every coordinate no variable uses, plus the blocks idle there
      (:func:`idle_variables`); inside a variable's span (:func:`spans`) the unused coordinates
      hold its scratch work and are left alone;
    - a component's output (an attention head, a mixer, an MLP): everything outside the blocks of
      the variables it computes (:func:`writers`; the output's block for components after the
      output is written, which decode it further), plus the unused coordinates when it shares a
      span with other components. A component that computes nothing is patched whole, so no
      layer computes a variable before (or besides) the place the alignment gives it;
    - an RNN layer or its embedding: every unit but the blocks of its variables that a higher
      layer reads (or the output) and its relays; nothing in a scratch layer (a lookup's memory
      slots and the layer feeding them).

    Empty ``[0, width]`` when nothing is patched.
    """
    width = model.site(site).width
    kind = model.site(site).kind
    unused = set(range(width)) - {i for _, idx in p.blocks.values() for i in idx}
    if p.family != "rnn" and kind == "resid":
        idle = set(idle_variables(p, model, site))
        keep = {i for name, (_, idx) in p.blocks.items() if name not in idle for i in idx}
        order = _order(model)
        if any(lo < order[site] < hi for _, lo, hi in spans(p, model)):
            keep |= unused
    elif p.family != "rnn" and kind in STREAM_KINDS:
        w = writers(p, model)
        mine = [v for v, cs in w.items() if site in cs]
        if _order(model)[site] > _order(model)[p.blocks[p.output][0]]:
            mine.append(p.output)
        keep = {i for v in mine for i in p.blocks[v][1]}
        if any(_stages(model, w[v]) > 1 for v in mine):
            keep |= unused
    elif p.family == "rnn" and _rnn_layer(site) in scratch_layers(p):
        keep = set(range(width))
    else:
        here = _rnn_layer(site)
        read_above = [n for n, (s, _) in p.blocks.items() if s == site and (n == p.output or any(_rnn_layer(p.blocks[r][0]) > here for r in p.readers.get(n, ())))]
        keep = {i for n in read_above for i in p.blocks[n][1]} | {i for (_, s), idx in p.relays.items() if s == site for i in idx}
    free = [i for i in range(width) if i not in keep]
    basis = np.zeros((len(free), width), dtype=np.float32)
    basis[np.arange(len(free)), free] = 1.0
    return basis


def strict_sites(p: Plan, model) -> list[str]:
    """Sites the strict SIIT term patches: the stream points, hidden layers and component outputs
    where :func:`free_basis` is not empty."""
    out = []
    for s in model.site_list():
        if s.kind in ("resid", "hidden", "embed") + COMPONENT_KINDS or s.name in p.sites():
            if free_basis(p, model, s.name).shape[0]:
                out.append(s.name)
    return out


def carriers(p: Plan, model) -> list[tuple[str, str, np.ndarray]]:
    """(variable, site, axis-aligned basis) of every block that carries a variable beyond its own
    site: its RNN relays, and its block at the later residual-stream points where it is still
    read. Training checks that such a block holds the variable and nothing else (patched where
    base and source agree, the outputs stay)."""
    order = _order(model)
    out = []
    for s in model.site_list():
        if p.family == "rnn":
            blocks = {n: idx for (n, site), idx in p.relays.items() if site == s.name}
        elif s.kind == "resid":
            live = live_variables(p, model, s.name)
            blocks = {n: p.blocks[n][1] for n in live if order[p.blocks[n][0]] < order[s.name]}
        else:
            blocks = {}
        for n, idx in blocks.items():
            basis = np.zeros((len(idx), s.width), dtype=np.float32)
            basis[np.arange(len(idx)), list(idx)] = 1.0
            out.append((n, s.name, basis))
    return out


def live_variables(p: Plan, model, site: str) -> list[str]:
    """The variables live at the residual-stream point ``site``: written there or before, still
    read later (not idle) and not still being computed."""
    order = _order(model)
    idle = set(idle_variables(p, model, site))
    busy = {v for v, lo, hi in spans(p, model) if lo < order[site] < hi}
    return [n for n, (s, _) in p.blocks.items() if order[s] <= order[site] and n not in idle and n not in busy]
