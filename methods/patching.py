"""The patching engine every method shares: ablation sources, metrics, a batched sweep, patch masks.

Everything goes through ``model.sites``, ``model.run(tokens, cache=, interventions=)`` and
:func:`zoo.sites.patch` / :func:`zoo.sites.add`; nothing here knows a model's family.

- :func:`ablation_sources`: per site, what an ablated activation is replaced with. ``zero``
  (a zero vector), ``mean`` (the mean activation at each position over a reference sample),
  ``resample`` (the activation on another input: the paired source of an interchange, or a
  fresh sample). The ablation is always an explicit argument and is recorded in the finding.
- :func:`metric`: per-example scores of the base's correct class at the readout positions
  (``logit``: its logit minus the mean logit; ``prob``; ``logprob``; ``changed``: the share of
  readout positions whose prediction differs from the clean run; ``kl``: KL(clean || patched)).
- :func:`sweep`: the activation-patching sweep over (name, position) pairs in few forwards: one
  row per (pair, example) stacked into large batches, each row patched at its own pair only
  (built from ``patch`` with one position per example), and rows whose patch changes nothing
  skipped. A name is a site or a component (``model.components``: a head, a block of units, a
  group of channels), which patches only its units; methods work at the component grain the
  evaluator scores unless told otherwise (:func:`node_names`).
- :func:`mask_interventions`: the patch-mask mechanism shared by attribution, integrated
  gradients, ACDC and subnetwork probing: ``x -> x + p * (source - x)`` per component (site)
  with a patch amount ``p`` (0 keeps the model, 1 ablates) that may require grad and may vary
  per row and position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from tasks import IGNORE
from zoo.model import Start
from zoo.sites import patch

from .finding import check_ablation

METRICS = ("logit", "prob", "logprob", "changed", "kl")


def device_of(model) -> torch.device:
    try:
        return next(iter(model.parameters())).device
    except (StopIteration, AttributeError, TypeError):
        return torch.device("cpu")


def resolve(model, names: Iterable[str]) -> dict[str, tuple[str, tuple[int, ...] | None]]:
    """What each name patches: ``name -> (site, units)``, units None for a whole site. A name is
    a site or a component (``model.components``)."""
    sites = {s.name for s in model.sites}
    comps = {c.name: c for c in model.components}
    out = {}
    for n in names:
        if n in sites:  # a site, or a component that is a whole site (a head)
            out[n] = (n, None)
        elif n in comps:
            out[n] = (comps[n].site, comps[n].units)
        else:
            raise ValueError(f"unknown site or component {n!r}; sites: {', '.join(sites)}; components: {', '.join(comps)}")
    return out


def node_names(model, grain: str = "component", names: Iterable[str] | None = None) -> list[str]:
    """What a method scores or keeps: the requested names (sites or components, checked), else
    every component (``grain="component"``, the grain the evaluator scores) or every site."""
    if names is not None:
        names = list(names)
        resolve(model, names)
        return names
    if grain == "component":
        return [c.name for c in model.components]
    if grain == "site":
        return [s.name for s in model.sites]
    raise ValueError(f"grain {grain!r} must be 'component' or 'site'")


def site_names(model, sites: Iterable[str] | None = None) -> list[str]:
    """The model's site names in its order, or the requested ones (checked)."""
    all_names = [s.name for s in model.sites]
    if sites is None:
        return all_names
    sites = list(sites)
    unknown = [s for s in sites if s not in all_names]
    if unknown:
        raise ValueError(f"unknown sites {unknown}; this model's sites: {', '.join(all_names)}")
    return sites


def as_tokens(model, tokens) -> torch.Tensor:
    return torch.as_tensor(np.asarray(tokens), dtype=torch.long, device=device_of(model))


def cache(model, tokens, sites: Sequence[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits and cached activations ``[B, T, W]`` at ``sites`` (no grad)."""
    with torch.no_grad():
        res = model.run(as_tokens(model, tokens), cache=list(sites))
    return res.logits, res.cache


def ablation_sources(model, task, base, sites: Sequence[str], ablation: str, *, seed: int = 0, source=None, n_reference: int = 64) -> dict[str, torch.Tensor]:
    """Per site, the activation an ablated site takes, broadcastable to the base's ``[B, T, W]``.

    ``resample`` uses ``source`` tokens (the paired inputs of an interchange) when given, else a
    fresh seeded sample of the same shape; ``mean`` the per-position mean over ``n_reference``
    sampled inputs of the base's length; ``zero`` zeros.
    """
    check_ablation(ablation)
    base = np.asarray(base)
    B, T = base.shape
    dev = device_of(model)
    if ablation == "zero":
        return {s: torch.zeros(model.site(s).width, device=dev) for s in sites}
    if ablation == "mean":
        ref = task.sample(n_reference, seed=seed + 7919, length=T).tokens
        _, acts = cache(model, ref, sites)
        return {s: acts[s].mean(0, keepdim=True) for s in sites}
    if source is None:
        source = task.sample(B, seed=seed + 104729, length=T).tokens
    source = np.asarray(source)
    if source.shape != base.shape:
        raise ValueError(f"source {source.shape} and base {base.shape} must have the same shape")
    _, acts = cache(model, source, sites)
    return acts


@dataclass
class Setup:
    """What every ablation-based method starts from: paired base/source inputs (the source pairs
    of ``task.sample_interventions`` on the output variable), the sites, their ablation sources
    and the readout targets."""

    n: int
    length: int
    base: np.ndarray
    names: list
    sources: dict
    targets: torch.Tensor
    mask: torch.Tensor


def setup(model, task, *, seed: int, budget, ablation: str, sites=None, length: int | None = None, all_sources: bool = False,
          grain: str = "component") -> Setup:
    """The common start of an ablation-based method; ``budget`` base inputs (default 32).
    ``names`` are ``sites`` (sites or components) if given, else every component or site by
    ``grain``; ``sources`` are keyed by site. ``all_sources``: ablation sources for every site
    (for edge finding)."""
    check_ablation(ablation)
    n = int(budget or 32)
    length = length or task.max_len
    base, source, _, _ = task.sample_interventions(n, seed=seed, length=length, variable=task.output.name)
    names = node_names(model, grain, sites)
    needed = site_names(model) if all_sources else list(dict.fromkeys(site for site, _ in resolve(model, names).values()))
    sources = ablation_sources(model, task, base, needed, ablation, seed=seed, source=source)
    targets, mask = readout(task, base)
    return Setup(n, length, base, names, sources, targets, mask)


def readout(task, base) -> tuple[torch.Tensor, torch.Tensor]:
    """The base's correct classes ``[B, T]`` (0 where not read out) and the readout mask."""
    targets = task.targets(np.asarray(base))
    mask = targets != IGNORE
    return torch.as_tensor(np.where(mask, targets, 0)), torch.as_tensor(mask)


def metric(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, kind: str = "logit", clean: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example mean over readout positions; ``logits`` ``[R, T, C]`` with ``R`` a multiple of
    ``B`` (copies of the base batch), ``targets``/``mask`` ``[B, T]``."""
    if kind not in METRICS:
        raise ValueError(f"metric {kind!r} must be one of {', '.join(METRICS)}")
    R, B = logits.shape[0], targets.shape[0]
    reps = R // B
    tg = targets.to(logits.device).repeat(reps, 1)
    m = mask.to(logits.device).repeat(reps, 1).to(logits.dtype)
    if kind == "logit":
        val = logits.gather(-1, tg[..., None])[..., 0] - logits.mean(-1)
    elif kind == "prob":
        val = logits.softmax(-1).gather(-1, tg[..., None])[..., 0]
    elif kind == "logprob":
        val = logits.log_softmax(-1).gather(-1, tg[..., None])[..., 0]
    else:
        if clean is None:
            raise ValueError(f"metric {kind!r} needs the clean logits")
        c = clean.to(logits.device).repeat(reps, 1, 1)
        if kind == "changed":
            val = (logits.argmax(-1) != c.argmax(-1)).to(logits.dtype)
        else:
            lp = c.log_softmax(-1)
            val = (lp.exp() * (lp - logits.log_softmax(-1))).sum(-1)
    return (val * m).sum(1) / m.sum(1).clamp_min(1)


def effect(patched: torch.Tensor, clean_value: torch.Tensor, kind: str) -> torch.Tensor:
    """A patch's effect from per-example metric values: the drop for logit/prob/logprob, the
    value itself for changed/kl (which are 0 on the clean run)."""
    if kind in ("changed", "kl"):
        return patched
    return clean_value.repeat(patched.shape[0] // clean_value.shape[0]) - patched


def _tile(source: torch.Tensor, reps: int) -> torch.Tensor:
    """A per-example source ``[B, T, W]`` repeated for ``reps`` stacked copies of the batch."""
    if reps == 1 or source.dim() < 3 or source.shape[0] == 1:
        return source
    return source.repeat(reps, 1, 1)


def _rows_of(source: torch.Tensor, examples: torch.Tensor) -> torch.Tensor:
    """A source for the stacked rows drawn from ``examples``: indexed if per-example, else as is."""
    return source if source.dim() < 3 or source.shape[0] == 1 else source[examples]


def _unit_mask(units, width: int, device) -> torch.Tensor:
    """``[1, width]`` boolean: the coordinates a name patches (all of them for a site)."""
    m = torch.ones(1, width, dtype=torch.bool, device=device) if units is None else torch.zeros(1, width, dtype=torch.bool, device=device)
    if units is not None:
        m[0, torch.as_tensor(units, dtype=torch.long, device=device)] = True
    return m


def _rows_patch(source: torch.Tensor, rows: torch.Tensor, examples: torch.Tensor, positions: torch.Tensor, unit_rows: torch.Tensor | None = None):
    """One site's intervention for the stacked rows of a sweep chunk: row ``rows[i]`` (which
    holds example ``examples[i]``) is patched at ``positions[i]`` (-1: every position) with that
    example's source, on the coordinates ``unit_rows[i]`` (``[R, W]`` boolean; None: all); every
    other row is left alone, so a row costs one patch whatever the number of sites."""
    src = _rows_of(source, examples)
    every = positions < 0
    whole = patch(src[every] if src.dim() == 3 and src.shape[0] > 1 else src) if every.any() else None
    one = patch(src[~every] if src.dim() == 3 and src.shape[0] > 1 else src, positions=positions[~every]) if (~every).any() else None

    def fn(x, pos):
        out = x.clone()
        for sel, f in ((every, whole), (~every, one)):
            if f is None:
                continue
            r = rows[sel]
            new = f(x[r], pos)
            if unit_rows is not None:
                new = torch.where(unit_rows[sel][:, None, :], new, x[r])
            out[r] = new
        return out

    return fn


def sweep(model, base, sources: dict[str, torch.Tensor], pairs: Sequence[tuple[str, int | None]], *, targets, mask, kind: str = "logit", clean_logits=None, max_rows: int = 512) -> np.ndarray:
    """Effect of patching each ``(name, position)`` (position None: every position) with its
    site's ``sources[site]``, averaged over the base batch. Returns ``[len(pairs)]``. A name is a
    site or a component (:func:`resolve`); a component patches only its units.

    The pairs are batched: one row per (pair, example), up to ``max_rows`` rows per forward,
    each row patched at its own pair only. A row whose patch would not change the activation
    (the source equals the base there, e.g. at BOS, or at a site that is constant) has effect 0
    without running; causality and determinism make that exact. Each forward resumes from the
    clean run (``model.prefix`` and ``zoo.model.Start``): layers below the chunk's lowest patched
    layer, and on models that resume in time the steps before its earliest patched position,
    are taken from the clean run instead of recomputed. Pairs are ordered so that chunks share
    late starts: by (position, layer) where the model resumes in time, else by (layer, position).
    """
    base_t = as_tokens(model, base)
    B, T = base_t.shape
    where = resolve(model, dict.fromkeys(name for name, _ in pairs))
    used = list(dict.fromkeys(where[name][0] for name, _ in pairs))
    with torch.no_grad():
        res = model.run(base_t, cache=used)
    prefix = model.prefix(base_t)
    if clean_logits is None:
        clean_logits = res.logits
    targets, mask = targets.to(base_t.device), mask.to(base_t.device)
    clean_value = metric(clean_logits, targets, mask, kind, clean_logits)
    layer = {s.name: s.layer for s in model.sites}
    by_time = getattr(model, "resumes_positions", False)

    def start_key(i):
        site, pos = where[pairs[i][0]][0], pairs[i][1]
        p = 0 if pos is None else pos
        return (-p, -layer[site], used.index(site)) if by_time else (-layer[site], -p, used.index(site))

    work = []  # (pair index, examples whose activation the patch changes), latest starts first
    for i in sorted(range(len(pairs)), key=start_key):
        (site, units), pos = where[pairs[i][0]], pairs[i][1]
        acts = res.cache[site]
        src = sources[site].to(acts.dtype).expand_as(acts)
        if units is not None:
            idx = torch.as_tensor(units, dtype=torch.long, device=acts.device)
            acts, src = acts[..., idx], src[..., idx]
        if pos is None:
            changed = (src != acts).flatten(1).any(1)
        else:
            changed = (src[:, pos] != acts[:, pos]).any(-1)
        ex = changed.nonzero()[:, 0]
        if ex.numel():
            work.append((i, ex))
    out = np.zeros(len(pairs))
    chunk: list = []
    rows = 0
    for item in work + [None]:
        if item is not None and (not chunk or rows + item[1].numel() <= max_rows):
            chunk.append(item)
            rows += item[1].numel()
            continue
        _run_chunk(model, base_t, prefix, layer, sources, pairs, where, chunk, targets, mask, kind, clean_logits, clean_value, out, B)
        chunk, rows = ([item], item[1].numel()) if item is not None else ([], 0)
    return out


def _run_chunk(model, base_t, prefix, layer, sources, pairs, where, chunk, targets, mask, kind, clean_logits, clean_value, out, B):
    if not chunk:
        return
    dev = base_t.device
    examples = torch.cat([ex for _, ex in chunk])
    starts = np.cumsum([0] + [ex.numel() for _, ex in chunk])
    interventions = {}
    for site in dict.fromkeys(where[pairs[i][0]][0] for i, _ in chunk):
        ks = [k for k, (i, _) in enumerate(chunk) if where[pairs[i][0]][0] == site]
        rows = torch.cat([torch.arange(int(starts[k]), int(starts[k + 1]), device=dev) for k in ks])
        pos = torch.cat([torch.full((chunk[k][1].numel(),), -1 if pairs[chunk[k][0]][1] is None else int(pairs[chunk[k][0]][1]), dtype=torch.long, device=dev) for k in ks])
        width = sources[site].shape[-1]
        unit_rows = torch.cat([_unit_mask(where[pairs[chunk[k][0]][0]][1], width, dev).expand(chunk[k][1].numel(), -1) for k in ks])
        interventions[site] = _rows_patch(sources[site], rows, examples[rows], pos, unit_rows)
    first_layer = min(layer[where[pairs[i][0]][0]] for i, _ in chunk)
    first_position = min(0 if pairs[i][1] is None else pairs[i][1] for i, _ in chunk)
    start = Start(prefix, layer=first_layer, position=first_position, rows=examples)
    with torch.no_grad():
        logits = model.run(base_t[examples], interventions=interventions, start=start).logits
    row_effect = effect(metric(logits, targets[examples], mask[examples], kind, clean_logits[examples]), clean_value[examples], kind)
    for k, (i, _) in enumerate(chunk):
        out[i] = float(row_effect[starts[k] : starts[k + 1]].sum()) / B


def mask_interventions(sources: dict[str, torch.Tensor], amounts: dict[str, torch.Tensor], reps: int = 1, where: dict | None = None) -> dict:
    """The patch mask: per name ``x -> x + p * (source - x)`` on its coordinates; ``amounts[name]``
    is a scalar, ``[R]`` (per row) or ``[R, T]`` (per row and position) tensor of patch amounts in
    [0, 1] (0 keeps the model's activation, 1 replaces it with the ablation); ``R`` = reps x
    batch. ``where`` (:func:`resolve`) maps names that are components to their site and units;
    without it every name is a site. Names of one site add up into one intervention."""
    by_site: dict[str, list] = {}
    for name, p in amounts.items():
        site, units = where[name] if where is not None else (name, None)
        by_site.setdefault(site, []).append((units, p))
    out = {}
    for site, parts in by_site.items():
        full = patch(_tile(sources[site], reps))
        width = sources[site].shape[-1]

        def fn(x, pos, full=full, parts=parts, width=width):
            delta = full(x, pos) - x
            total = torch.zeros_like(x)
            for units, p in parts:
                if p.dim() == 2:
                    amt = p[:, pos][..., None]
                elif p.dim() == 1:
                    amt = p[:, None, None]
                else:
                    amt = p
                m = 1.0 if units is None else _unit_mask(units, width, x.device).to(x.dtype)
                total = total + amt.to(x.dtype) * m
            return x + total * delta

        out[site] = fn
    return out
