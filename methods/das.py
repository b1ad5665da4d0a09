"""Distributed alignment search (DAS) -> Alignment.

Per program variable, a ``k``-dimensional subspace with orthonormal rows is learned at every
candidate site (``torch.nn.utils.parametrizations.orthogonal`` on a ``[k, width]`` weight), by
interchange-intervention training on the program's counterfactuals: base/source pairs from
``task.sample_interventions(variable=...)``, the subspace of the base's activation at the
intervened position replaced by the source's (``zoo.sites.patch`` with a basis), and a
cross-entropy loss against ``task.counterfactual`` at the readout positions the protocol counts.
Each subspace starts (``init="diff"``) at the top principal directions of the part of the
source-minus-base activation differences at the intervened positions that the variable's own
change predicts (a least-squares fit of the differences on the change of its one-hot code or
value); ``"pca"`` uses the raw differences, ``"random"`` a seeded random start. All
candidate sites train at once on stacked copies of the batch (copy k patches site k only).
Per site, the subspace kept is the best by IIA on the training pairs among snapshots taken
during training (initial one included). The site is then chosen by IIA on held-out pairs (the
earliest site within ``tol`` of the best).

``k`` (``dims``): the number of values minus one for a categorical variable (the differences
of one-hot codes span that many dimensions), 1 for a numerical one, capped by the site width.
``budget``: training pairs per variable, and as many held out (default 128); ``steps`` Adam
steps (default 60) on minibatches of ``batch`` pairs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrizations

from zoo.sites import patch

from .finding import AlignedVariable, Alignment
from .patching import as_tokens, cache, device_of, site_names

INITS = ("diff", "pca", "random")


def _value_change(task, node, var, base, source, pos) -> torch.Tensor:
    """``[n, C]``: how the variable changes from base to source at the intervened position
    (one-hot difference for a categorical variable, the value difference for a numerical one)."""
    rows = np.arange(len(base))
    vb, vs = task.run(base)[var][rows, pos], task.run(source)[var][rows, pos]
    if node.value_set.is_numerical:
        return torch.as_tensor((vs - vb)[:, None], dtype=torch.float64)
    vals = np.asarray(node.value_set.values)
    return torch.as_tensor((vs[:, None] == vals).astype(np.float64) - (vb[:, None] == vals))


def default_dim(variable, width: int) -> int:
    vs = variable.value_set
    k = 1 if vs.is_numerical else max(1, vs.size - 1)
    return max(1, min(k, width))


def _stacked(sources: dict, bases: dict, names: list[str], positions: torch.Tensor, b: int) -> dict:
    """Interventions for ``len(names)`` stacked copies of a batch of ``b``: copy k patches the
    subspace of site ``names[k]`` at ``positions``, other copies leave that site alone."""
    out = {}
    for k, s in enumerate(names):
        fn = patch(sources[s], positions=positions, basis=bases[s])

        def f(x, pos, k=k, fn=fn):
            return torch.cat([x[: k * b], fn(x[k * b : (k + 1) * b], pos), x[(k + 1) * b :]], 0)

        out[s] = f
    return out


def das(model, task, *, seed: int = 0, budget: int | None = None, sites=None, variables=None, dims=None, length: int | None = None,
        steps: int = 60, batch: int = 32, lr: float = 0.05, tol: float = 0.01, init: str = "diff") -> Alignment:
    if init not in INITS:
        raise ValueError(f"init {init!r} must be one of {', '.join(INITS)}")
    n = int(budget or 128)
    length = length or task.max_len
    names = site_names(model, sites)
    widths = {s.name: s.width for s in model.sites}
    variables = list(variables or task.program.names)
    out, iias = {}, {}
    for vi, var in enumerate(variables):
        node = task.program[var]
        k_of = {s: (dims.get(var, default_dim(node, widths[s])) if isinstance(dims, dict) else min(int(dims), widths[s]) if dims else default_dim(node, widths[s])) for s in names}
        k_of = {s: max(1, min(k, widths[s])) for s, k in k_of.items()}
        vseed = seed * 1000 + vi
        train = task.sample_interventions(n, seed=vseed, length=length, variable=var)
        test = task.sample_interventions(n, seed=vseed + 500, length=length, variable=var)
        base, source, _, pos = train
        cf = task.counterfactual(base, source, var, pos)
        dev = device_of(model)
        tgt = torch.as_tensor(np.where(cf.mask, cf.outputs, 0), device=dev)
        msk = torch.as_tensor(cf.mask, device=dev)
        _, src_acts = cache(model, source, names)
        _, base_acts = cache(model, base, names) if init != "random" else (None, None)
        change = _value_change(task, node, var, base, source, pos)
        base_t, pos_t = as_tokens(model, base), torch.as_tensor(pos)
        rows = torch.arange(n)
        with torch.random.fork_rng():
            torch.manual_seed(vseed)
            rotations = {}
            for s in names:
                lin = nn.Linear(widths[s], k_of[s], bias=False, device=dev)
                if init != "random":
                    diff = (src_acts[s][rows, pos_t] - base_acts[s][rows, pos_t]).double().cpu()
                    if init == "diff":  # the part of the differences the variable's change predicts
                        diff = change @ torch.linalg.lstsq(change, diff, driver="gelsd").solution
                    with torch.no_grad():
                        lin.weight.copy_(_top_directions(diff.cpu(), k_of[s]))
                rotations[s] = parametrizations.orthogonal(lin)
        params = [p for r in rotations.values() for p in r.parameters()]
        opt = torch.optim.Adam(params, lr=lr)
        rng = np.random.default_rng(vseed)
        K = len(names)
        # keep, per site, the subspace with the best IIA on the training pairs seen so far: the
        # cross-entropy keeps pushing margins after every pair is right, which on exact
        # (step-like) compiled models can trade a few pairs away
        best = {s: (-1.0, None) for s in names}
        every = max(1, steps // 6)

        def snapshot():
            bases = {s: rotations[s].weight.detach().clone() for s in names}
            for s, v in _iia_of(model, base_t, src_acts, bases, names, pos_t, cf).items():
                if v > best[s][0]:
                    best[s] = (v, bases[s])

        snapshot()
        for step in range(steps if msk.any() else 0):
            idx = torch.as_tensor(rng.choice(n, size=min(batch, n), replace=False))
            b = len(idx)
            ivs = _stacked({s: src_acts[s][idx] for s in names}, {s: r.weight for s, r in rotations.items()}, names, pos_t[idx], b)
            logits = model.run(base_t[idx].repeat(K, 1), interventions=ivs).logits
            m = msk[idx].repeat(K, 1)
            if m.any():
                loss = nn.functional.cross_entropy(logits[m], tgt[idx].repeat(K, 1)[m], reduction="sum") / b
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                for p, g in zip(params, grads):
                    p.grad = g
                opt.step()
            if (step + 1) % every == 0 or step + 1 == steps:
                snapshot()
        bases = {s: best[s][1] for s in names}
        tb, ts, _, tpos = test
        tcf = task.counterfactual(tb, ts, var, tpos)
        _, tsrc = cache(model, ts, names)
        iias[var] = _iia_of(model, as_tokens(model, tb), tsrc, bases, names, torch.as_tensor(tpos), tcf)
        top = np.nanmax(list(iias[var].values())) if any(v == v for v in iias[var].values()) else float("nan")
        site = next((s for s in names if iias[var][s] >= top - tol), names[0])
        basis = bases[site].double().cpu().numpy()
        out[var] = AlignedVariable(site, _reorthonormalise(basis), "all", 0, score=iias[var][site] if iias[var][site] == iias[var][site] else None)
    return Alignment(out, "das", {"iia": iias, "n": n, "steps": steps, "seed": seed})


def _top_directions(diff: torch.Tensor, k: int) -> torch.Tensor:
    """``k`` orthonormal rows: the top principal directions of the source-minus-base activation
    differences at the intervened positions (where an interchange moves the site), completed
    with seeded random directions when the differences span fewer than ``k``."""
    W = diff.shape[1]
    _, s, vt = torch.linalg.svd(diff, full_matrices=False)
    keep = vt[: min(k, int((s > 1e-6 * s.max().clamp_min(1e-12)).sum()))] if s.numel() else vt[:0]
    extra = torch.randn(W, k, dtype=diff.dtype)
    q, _ = torch.linalg.qr(torch.cat([keep.T, extra], 1))
    return q[:, :k].T.to(torch.float32)


def _reorthonormalise(b: np.ndarray) -> np.ndarray:
    """The nearest matrix with orthonormal rows (``b`` is orthonormal up to float32 error)."""
    u, _, vt = np.linalg.svd(b, full_matrices=False)
    return u @ vt


def _iia_of(model, base_t, src_acts, bases, names, pos_t, cf) -> dict[str, float]:
    """IIA of each site's subspace on (base, source) pairs, all sites in one stacked forward."""
    if not cf.mask.any():
        return {s: float("nan") for s in names}
    b, K = base_t.shape[0], len(names)
    with torch.no_grad():
        ivs = _stacked(src_acts, bases, names, pos_t, b)
        pred = model.run(base_t.repeat(K, 1), interventions=ivs).logits.argmax(-1).cpu().numpy()
    return {s: float((pred[k * b : (k + 1) * b][cf.mask] == cf.outputs[cf.mask]).mean()) for k, s in enumerate(names)}
