"""Counters wired to their inputs: the RNN blocks of a count or a sum, in the pairs that need it.

In the (task, family) pairs ``WIRED_PAIRS`` lists, every block of a counter (an ``Aggregate``
with ``reduce`` "count" or "sum") in an RNN layer

- reads only its inputs' units in the layer below (their blocks or relays there), and
- recurs only on its own units, starting as an integrator: the diagonal of its recurrent
  weights is ``INTEGRATOR_DIAGONAL`` (the rest of its own block's recurrence starts as
  torch.nn.RNN draws it),

and keeps that wiring through training: its other input and recurrent weights start at 0 and
their gradient is zeroed before every optimiser step (``ZooLightningModule``'s ``wiring``, so
it survives the module being pickled, as ``ddp_spawn`` does). The model's other weights start
as in any planted run (dense, but for ``alignment.silence``'s silent units).

Why ``sort``'s RNN: dense, its held-out IIA stayed at 0.87 on one ``le_k`` Map for every
variant of the objective tried (which ``le_k`` moved from run to run): the output never depended
on that Map's block. The model counted the inputs in layer 1, in the relays of ``tokens`` and of
``indices`` (a value the same in every input, so free room before SEP), and the planted
count blocks sat dead before SEP (``count_le3``: 12 of its 18 units never above 0 there), so no
gradient of the IIT term reached the ``le_k`` blocks through them. Started as integrators but
dense, the count blocks came alive and summed each token's value from wherever layer 2 had it
(the other ``le_k`` blocks, the relay of ``indices``): one ``le_k`` still at 0.876 after 12
minutes (wiring their inputs alone, their recurrence dense: the same at step 5,000). Wired
but not started as integrators, ``count_le1`` stayed at 0.78 and ``le1`` at 0.875 (0 on
changed outputs) for 12 minutes. Wired and started as integrators, they reached every target at
step 2,550, 4,250 and 2,600 (seeds 0, 1, 2; 192, 366 and 245 s with two runs sharing 2 cores).
"""

from __future__ import annotations

import numpy as np

from tasks import Task

from .alignment import Plan, _rnn_layer

WIRED_PAIRS = frozenset({("sort", "rnn")})
INTEGRATOR_DIAGONAL = 1.0  # a self-weight at which a ReLU unit's value carries over to the next step (plus what else it reads)


def counters(task: Task) -> list[str]:
    """The program's counts and sums (the variables a wired RNN's blocks integrate)."""
    return [v.name for v in task.program if v.op == "Aggregate" and v.reduce in ("count", "sum")]


def _units(p: Plan, name: str, layer: int) -> tuple[int, ...]:
    """The units holding ``name`` in RNN layer ``layer`` (-1: the embedding): its block or its relay."""
    site = "embed" if layer < 0 else f"L{layer}.hidden"
    if p.blocks[name][0] == site:
        return p.blocks[name][1]
    if (name, site) in p.relays:
        return p.relays[(name, site)]
    raise ValueError(f"{name!r} has no block or relay at {site}: the plan cannot wire its readers there")


def counter_masks(task: Task, p: Plan) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """RNN layer -> (input-weight mask ``[H, in]``, recurrent-weight mask ``[H, H]``), True where
    a weight may be non-zero, for every layer holding a counter's block (see the module
    docstring); empty for other families and pairs not in ``WIRED_PAIRS``."""
    if p.family != "rnn" or (task.name, p.family) not in WIRED_PAIRS:
        return {}
    hidden, embed = p.config["hidden_size"], p.config["embed_dim"]
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for name in counters(task):
        site, idx = p.blocks[name]
        k = _rnn_layer(site)
        ih, hh = out.setdefault(k, (np.ones((hidden, embed if k == 0 else hidden), dtype=bool), np.ones((hidden, hidden), dtype=bool)))
        rows = np.asarray(idx)
        ih[rows] = False
        for u in p.inputs[name]:
            ih[np.ix_(rows, _units(p, u, k - 1))] = True
        hh[rows] = False
        hh[np.ix_(rows, rows)] = True
    return out


def wire(task: Task, p: Plan, model) -> dict:
    """Wire a freshly built planted RNN's counters (see the module docstring): zero the masked
    weights and set the integrators' diagonal. Returns parameter name -> bool tensor mask (True
    where the weight may be non-zero) for the ones training must hold (``ZooLightningModule``'s ``wiring``);
    empty where :func:`counter_masks` is."""
    import torch

    out = {}
    with torch.no_grad():
        for k, (ih, hh) in counter_masks(task, p).items():
            for name, mask in ((f"weight_ih_l{k}", ih), (f"weight_hh_l{k}", hh)):
                out[name] = torch.as_tensor(mask)
                getattr(model, name).mul_(out[name])
            rows = [i for name in counters(task) if _rnn_layer(p.blocks[name][0]) == k for i in p.blocks[name][1]]
            getattr(model, f"weight_hh_l{k}")[rows, rows] = INTEGRATOR_DIAGONAL
    return out
