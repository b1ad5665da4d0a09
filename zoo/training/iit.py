"""The planting objective: behaviour + interchange-intervention training (IIT) + strict SIIT.

For a base input b, a source input s, a program variable V and a position j per example:

- **behaviour**: cross-entropy of the model's outputs on b against the program's outputs.
- **IIT** (weight 1): run s, take the activation at V's aligned location (a site and a block of
  its coordinates), and patch it into the run of b at position j (``zoo.sites.patch`` with the
  block's basis). The patched model must produce the program's *counterfactual* output, the
  output of b when V[j] takes its value from s, on the readout positions that the protocol of
  :mod:`tasks.interpreter` counts (all t >= j for a per-position V, t == j for an aggregate).
  This makes the block *causally* hold V: whatever the model reads V from, it reads from there.
- **strict SIIT** (weight 0.4): patch the part of every site *outside* the aligned blocks (the
  free coordinates of the residual stream, the unused units of a hidden layer), all sites at once
  in one run, with the source's activations at every position; the outputs must stay the base's program outputs. This forbids
  the model from computing the algorithm anywhere but in the aligned blocks. At a point of the
  residual stream the patch also covers the idle blocks (``alignment.idle_variables``): those of
  variables not written yet, and of variables nothing after that point reads. Otherwise the
  model can smuggle its inputs through a block reserved for a later variable, or bypass a
  variable by re-reading its inputs (count tokens instead of the ``le_k`` Maps in ``sort``), and
  IIT alone rarely escapes that solution.

Both terms are cross-entropies over counted positions (``IGNORE`` elsewhere), batched: one
variable per step for IIT, a position per example.
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

    ``locations``: variable -> (site, basis tensor ``[k, W]``); ``free``: strict site -> basis of
    the coordinates the algorithm does not use there.
    """
    base, source = batch["base"], batch["source"]
    out = {"behaviour": ce(model(base), batch["targets"])}
    site, basis = locations[batch["variable"]]
    src = model.run(source, cache=sorted({site, *free})).cache
    fn = patch(src[site], positions=batch["position"], basis=basis)
    out["iit"] = ce(model.run(base, interventions={site: fn}).logits, batch["cf_targets"])
    if free:  # every strict site at once: one run closes every bypass
        fns = {s: patch(src[s], positions=None, basis=b) for s, b in free.items()}
        out["strict"] = ce(model.run(base, interventions=fns).logits, batch["targets"])
    else:
        out["strict"] = out["behaviour"].new_zeros(())
    out["loss"] = BEHAVIOUR_WEIGHT * out["behaviour"] + IIT_WEIGHT * out["iit"] + STRICT_WEIGHT * out["strict"]
    return out
