"""The planting objective: behaviour + interchange-intervention training (IIT) + strict SIIT.

Every example of a batch has a base input b, a source input s, and its own program variable V
and position j (drawn by :mod:`zoo.training.datamodule`); one run of s and three of b serve the
whole batch.

- **behaviour** (weight 1): cross-entropy of the model's outputs on b against the program's.
  (Taking it from the run of s instead, whose inputs are drawn as b's are, saves a run, 1.2x a
  step, and took as many steps on average; but the seed-0 grid with it lost three pairs, as any
  change of the trajectories puts the slowest pairs' time limits at stake.)
- **IIT** (weight 1): each example patches V's aligned block (a site and coordinates of it) with
  the source's activation at j, and at every other position where V has the same value in b and
  s; the patched model must produce the program's *counterfactual* output on the positions that
  the protocol of :mod:`tasks.interpreter` counts (t >= j for a per-position V, t == j for an
  aggregate). This makes the block *causally* hold V, and nothing but V: a block that also
  carries, say, a running count is caught where V agrees but the count does not. Some examples
  are no-ops (V agrees at j too: every output must stay the base's), some replace a per-position
  V at every position (``tasks.interpreter.replaced``: a strong signal where one position moves
  few outputs, as ``le0`` in ``sort``), and some patch a block that *carries* V beyond its site
  (``strict.carriers``: V's block at a later stream point, an RNN relay), where agreeing
  positions must change nothing. In the transformer and the SSM the cross-entropy weighs the
  outputs the intervention changes as much as those it leaves alone (:func:`iit_ce`,
  ``CHANGED_SHARE``): ``le_k`` in ``sort`` changes 12% of the outputs it counts, and under a
  plain mean a block holding nothing scores 0.88.
- **strict SIIT** (weight 0.4): a random half of the strict sites (``strict.strict_sites``, at
  least one) take the source's activations on the coordinates the algorithm may not depend on
  (``strict.free_basis``: free coordinates, idle blocks, what a component writes outside its
  own variables) at every position; the outputs must stay the base's. A random subset, not all
  sites at once: a model can learn to be invariant to one consistent joint patch while each
  site alone still matters, and methods patch one site at a time. Sites whose held-out strict
  accuracy lags (``focus``, measured by the module) are also patched alone in half the examples.

Cross-entropies are over counted positions (``IGNORE`` elsewhere).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tasks import IGNORE

IIT_WEIGHT, STRICT_WEIGHT, BEHAVIOUR_WEIGHT = 1.0, 0.4, 1.0
STRICT_SITE_RATE = 0.5  # the chance of each strict site being patched in a step's strict run
FOCUS_RATE = 0.5  # with lagging strict sites: the share of examples that patch one of them alone
# the IIT loss's weight on the outputs an intervention changes, per family (see iit_ce); None: a
# plain mean. In the RNN the equal weighting cost two pairs their targets within zoo build's time
# limits (induction, reverse: the behaviour is learnt later) and fixed none, so the RNN keeps the
# plain mean; in the stream families it raised the IIA on changed outputs and lost no pair.
CHANGED_SHARE = {"transformer": 0.5, "ssm": 0.5, "rnn": None}


def ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long(), ignore_index=IGNORE)


def iit_ce(logits: torch.Tensor, cf_targets: torch.Tensor, targets: torch.Tensor, share: float | None = 0.5) -> torch.Tensor:
    """The IIT cross-entropy: the counted outputs the intervention changes (counterfactual !=
    base output) weigh ``share``, those it leaves alone the rest; a plain mean when ``share`` is
    None or either set is empty. A plain mean lets a block that holds nothing score well where a
    patch moves few outputs (``le_k`` in ``sort`` moves 12% of them)."""
    if share is None:
        return ce(logits, cf_targets)
    per = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), cf_targets.reshape(-1).long(), ignore_index=IGNORE, reduction="none")
    counted = cf_targets.reshape(-1) != IGNORE
    changed = counted & (cf_targets.reshape(-1) != targets.reshape(-1))
    same = counted & ~changed
    if not bool(changed.any()) or not bool(same.any()):
        return per[counted].mean() if bool(counted.any()) else per.sum() * 0.0
    return share * per[changed].mean() + (1.0 - share) * per[same].mean()


def masked_patch(source: torch.Tensor, mask: torch.Tensor):
    """Replace a site's activation by ``source``'s where ``mask`` (``[B, T, W]``, 0/1) is 1.

    A recurrent site is tapped once per time step; its slices are taken with ``unbind`` once,
    whose backward is one ``stack``, not a zero-filled ``[B, T, W]`` gradient per step."""
    steps = {}

    def fn(x, pos):
        if pos.numel() == source.shape[1]:
            return x + (source - x) * mask
        if pos.numel() == 1:
            if not steps:
                steps["src"], steps["mask"] = source.unbind(1), mask.unbind(1)
            t = int(pos[0])
            return x + (steps["src"][t][:, None] - x) * steps["mask"][t][:, None]
        lo, hi = int(pos[0]), int(pos[-1]) + 1  # a resumed run: a contiguous range of positions
        return x + (source[:, lo:hi] - x) * mask[:, lo:hi]

    return fn


def strict_masks(strict: dict, shape, generator=None, focus=()) -> dict:
    """Site -> 0/1 mask ``[B, T, W]`` for the strict run: a random subset of the strict sites
    (each with probability ``STRICT_SITE_RATE``, at least one), each patching its free
    coordinates (``strict[site]``, a 0/1 ``[W]`` mask) at every position.

    ``focus``: sites whose strict claim lags when patched alone (see ``ZooLightningModule``).
    With any, ``FOCUS_RATE`` of the examples patch one of them (drawn uniformly) alone and the
    others the random subset: a site can look invariant inside a joint patch and still matter
    alone (``sort``'s SSM: ``L1.mixer`` patched alone left 0.80 accuracy while the strict loss
    read 0.05), and methods patch one site at a time. No focus draws nothing more, so the
    subsets are the same as without it."""
    names = sorted(strict)
    pick = torch.rand(len(names), generator=generator) < STRICT_SITE_RATE
    pick[torch.randint(len(names), (1,), generator=generator)] = True
    focus = sorted(focus)
    none = torch.zeros(shape[0], dtype=torch.bool)
    alone = torch.rand(shape[0], generator=generator) < FOCUS_RATE if focus else none
    which = torch.randint(len(focus), (shape[0],), generator=generator) if focus else None
    out = {}
    for name, k in zip(names, pick):
        rows = ~alone if k else none
        if name in focus:
            rows = rows | (alone & (which == focus.index(name)))
        if bool(rows.any()):
            out[name] = rows.float().to(strict[name].device)[:, None, None] * strict[name].float().expand(*shape, -1)
    return out


def iit_masks(locations: dict, names: list[str], batch: dict) -> dict:
    """Site -> 0/1 mask ``[B, T, W]`` for the IIT run: example b patches the block of its own
    variable ``names[batch["variable"][b]]`` (at location ``batch["location"][b]``, 0 = its own
    site) at the positions ``batch["iit_mask"][b]``; one run serves every variable of the batch."""
    masks: dict[str, torch.Tensor] = {}
    which, where, rows_mask = batch["variable"], batch["location"], batch["iit_mask"]
    for k, name in enumerate(names):
        for i, (site, basis) in enumerate(locations[name]):
            rows = (which == k) & (where == i)
            if not bool(rows.any()):
                continue
            cols = (basis.sum(0) != 0).float()  # an axis-aligned block
            m = (rows[:, None] & rows_mask)[..., None].float() * cols
            masks[site] = masks[site] + m if site in masks else m
    return masks


def planted_losses(model, batch: dict, locations: dict, strict: dict, generator: torch.Generator | None = None, focus=()) -> dict:
    """``{"behaviour", "iit", "strict", "loss"}`` for one batch.

    ``locations``: variable -> its locations ``[(site, basis [k, W])]``, its own site first, then
    the blocks carrying it (``strict.carriers``), in the order of the batch's variable indices;
    ``strict``: site -> 0/1 mask ``[W]`` of the coordinates the strict term patches.
    ``generator`` draws the strict term's random subset of sites; ``focus``: the strict sites
    that lag (see :func:`strict_masks`).
    """
    base, source = batch["base"], batch["source"]
    names = list(locations)
    sites = {site for locs in locations.values() for site, _ in locs}
    src = model.run(source, cache=sorted(sites | set(strict))).cache
    out = {"behaviour": ce(model(base), batch["targets"])}
    fns = {site: masked_patch(src[site], m.to(src[site].dtype)) for site, m in iit_masks(locations, names, batch).items()}
    out["iit"] = iit_ce(model.run(base, interventions=fns).logits, batch["cf_targets"], batch["targets"], CHANGED_SHARE.get(model.family))
    if strict:
        fns = {site: masked_patch(src[site], m.to(src[site].dtype)) for site, m in strict_masks(strict, base.shape, generator, focus).items()}
        out["strict"] = ce(model.run(base, interventions=fns).logits, batch["targets"])
    else:
        out["strict"] = out["behaviour"].new_zeros(())
    out["loss"] = BEHAVIOUR_WEIGHT * out["behaviour"] + IIT_WEIGHT * out["iit"] + STRICT_WEIGHT * out["strict"]
    return out
