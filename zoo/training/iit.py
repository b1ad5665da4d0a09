"""The planting objective: behaviour + interchange-intervention training (IIT) + strict SIIT.

For a base input b, a source input s, a program variable V and a position j per example:

- **behaviour**: cross-entropy of the model's outputs on b against the program's outputs.
- **IIT** (weight 1): run s, take the activation at V's aligned location (a site and a block of
  its coordinates), and patch it into the run of b at position j (``zoo.sites.patch`` with the
  block's basis). The patched model must produce the program's *counterfactual* output, the
  output of b when V[j] takes its value from s, on the readout positions that the protocol of
  :mod:`tasks.interpreter` counts (all t >= j for a per-position V, t == j for an aggregate).
  This makes the block *causally* hold V: whatever the model reads V from, it reads from there.
- **strict SIIT** (weight 0.4): patch the part of a site *outside* every aligned block (the free
  coordinates of the residual stream, the unused units of a hidden layer) with the source's
  activation at every position; the outputs must stay the base's program outputs. This forbids
  the model from computing the algorithm anywhere but in the aligned blocks.

Both terms are cross-entropies over counted positions (``IGNORE`` elsewhere), batched: one
variable per step, a position per example.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tasks import IGNORE

from ..sites import patch

IIT_WEIGHT, STRICT_WEIGHT, BEHAVIOUR_WEIGHT = 1.0, 0.4, 1.0


def ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long(), ignore_index=IGNORE)


def planted_losses(model, batch: dict, locations: dict, free: dict) -> dict:
    """``{"behaviour", "iit", "strict"}`` losses for one batch.

    ``locations``: variable -> (site, basis tensor ``[k, W]``); ``free``: site -> basis of the
    coordinates outside every aligned block.
    """
    base, source = batch["base"], batch["source"]
    out = {"behaviour": ce(model(base), batch["targets"])}
    site, basis = locations[batch["variable"]]
    strict_site = batch.get("strict_site") or None
    wanted = [site] + ([strict_site] if strict_site and strict_site != site else [])
    src = model.run(source, cache=wanted).cache
    fn = patch(src[site], positions=batch["position"], basis=basis)
    out["iit"] = ce(model.run(base, interventions={site: fn}).logits, batch["cf_targets"])
    if strict_site:
        fn = patch(src[strict_site], positions=None, basis=free[strict_site])
        out["strict"] = ce(model.run(base, interventions={strict_site: fn}).logits, batch["targets"])
    else:
        out["strict"] = out["behaviour"].new_zeros(())
    out["loss"] = BEHAVIOUR_WEIGHT * out["behaviour"] + IIT_WEIGHT * out["iit"] + STRICT_WEIGHT * out["strict"]
    return out
