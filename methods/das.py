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
candidate sites train at once on stacked copies of the batch (copy k patches site k only), one
forward per group of sites that share a layer and recurrence, each resumed from the clean run
(``model.prefix``, ``zoo.model.Start``) at its layer and earliest patched position: the result
equals one forward over every copy, without recomputing what the patch cannot change, and a
patched recurrent state steps through time in its own layer only.
Per site, the subspace kept is the best by IIA on the training pairs among snapshots taken
during training (initial one included). The site is then chosen by IIA on held-out pairs (the
earliest site within ``tol`` of the best), so a site after one whose subspace already gets every
training pair right stops training at that snapshot, and so does an earlier one whose training
IIA has not risen for ``patience`` snapshots; where no site is perfect, a site that has not risen
for ``patience`` snapshots more than ``margin`` below the best stops (:func:`_still_training`;
``meta["trained_steps"]`` says how long each variable trained). Progress (variable, step) goes to
:func:`methods.progress.report`.

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

from zoo.model import Start
from zoo.sites import patch

from .finding import AlignedVariable, Alignment
from .patching import as_tokens, cache, device_of, site_names
from .progress import report

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
        steps: int = 60, batch: int = 32, lr: float = 0.05, tol: float = 0.01, init: str = "diff", patience: int = 2,
        margin: float = 0.1) -> Alignment:
    if init not in INITS:
        raise ValueError(f"init {init!r} must be one of {', '.join(INITS)}")
    n = int(budget or 128)
    length = length or task.max_len
    names = site_names(model, sites)
    widths = {s.name: s.width for s in model.sites}
    groups = _groups(model, names)
    variables = list(variables or task.program.names)
    out, iias, trained_steps = {}, {}, {}
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
        prefix = model.prefix(base_t)
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
        opt = torch.optim.Adam([p for r in rotations.values() for p in r.parameters()], lr=lr)
        rng = np.random.default_rng(vseed)
        # keep, per site, the subspace with the best IIA on the training pairs seen so far: the
        # cross-entropy keeps pushing margins after every pair is right, which on exact
        # (step-like) compiled models can trade a few pairs away
        best = {s: (-1.0, None) for s in names}
        every = max(1, steps // 6)
        training = list(names)

        stale = {s: 0 for s in names}  # snapshots in a row without a better training IIA

        def snapshot(step):
            bases = {s: rotations[s].weight.detach().clone() for s in training}
            for s, v in _iia_of(model, prefix, src_acts, bases, _groups_of(groups, training), rows, pos_t, cf).items():
                stale[s] = 0 if v > best[s][0] else stale[s] + 1
                if v > best[s][0]:
                    best[s] = (v, bases[s])
            report(vi * steps + step, len(variables) * steps, f"variable {var} ({vi + 1}/{len(variables)}), step {step}/{steps}, {len(training)} of {len(names)} sites training")
            return _still_training(names, training, best, stale, patience, margin)

        training = snapshot(0)
        done = 0
        for step in range(steps if msk.any() else 0):
            idx = torch.as_tensor(rng.choice(n, size=min(batch, n), replace=False))
            if not training:
                continue  # the draws go on, so that a site's minibatches do not depend on when the others stopped
            b = len(idx)
            m = msk[idx]
            if m.any():
                params = [p for s in training for p in rotations[s].parameters()]
                loss = 0.0
                for group in _groups_of(groups, training):
                    logits = _patched_logits(model, prefix, src_acts, {s: rotations[s].weight for s, _ in group}, group, idx, pos_t[idx])
                    loss = loss + nn.functional.cross_entropy(logits[m.repeat(len(group), 1)], tgt[idx].repeat(len(group), 1)[m.repeat(len(group), 1)], reduction="sum") / b
                opt.zero_grad(set_to_none=True)  # the sites that stopped keep no gradient: Adam leaves them alone
                for p, g in zip(params, torch.autograd.grad(loss, params, allow_unused=True)):
                    p.grad = g
                opt.step()
            done = step + 1
            if (step + 1) % every == 0 or step + 1 == steps:
                training = snapshot(step + 1)
        trained_steps[var] = done
        bases = {s: best[s][1] for s in names}
        tb, ts, _, tpos = test
        tcf = task.counterfactual(tb, ts, var, tpos)
        _, tsrc = cache(model, ts, names)
        tb_t = as_tokens(model, tb)
        held_out = _iia_of(model, model.prefix(tb_t), tsrc, bases, groups, torch.arange(len(tb)), torch.as_tensor(tpos), tcf)
        iias[var] = {s: held_out[s] for s in names}
        top = np.nanmax(list(iias[var].values())) if any(v == v for v in iias[var].values()) else float("nan")
        site = next((s for s in names if iias[var][s] >= top - tol), names[0])
        basis = bases[site].double().cpu().numpy()
        out[var] = AlignedVariable(site, _reorthonormalise(basis), "all", 0, score=iias[var][site] if iias[var][site] == iias[var][site] else None)
    report(len(variables) * steps, len(variables) * steps, "done")
    return Alignment(out, "das", {"iia": iias, "n": n, "steps": steps, "trained_steps": trained_steps, "seed": seed})


def _still_training(names: list[str], training: list[str], best: dict, stale: dict, patience: int, margin: float) -> list[str]:
    """The sites of ``training`` still worth training. The site kept is the earliest within
    ``tol`` of the best on held-out pairs, so once some site's subspace (of all ``names``, in
    order) gets every training pair right, a later site could win only where that one failed on
    held-out pairs: only the sites before it train on, and of these only those whose training
    IIA rose in the last ``patience`` snapshots (a stalled one would have to climb to within
    ``tol`` of 1). Where no site is perfect, a site stops when it has stalled for ``patience``
    snapshots more than ``margin`` below the best site's training IIA. On exact compiled models
    training stops early, often before it starts."""
    perfect = next((i for i, s in enumerate(names) if best[s][0] >= 1.0), None)
    if perfect is not None:
        return [s for s in names[:perfect] if s in training and stale[s] < patience]
    top = max(best[s][0] for s in names)
    return [s for s in training if stale[s] < patience or best[s][0] >= top - margin]


def _groups(model, names: list[str]) -> list[list[str]]:
    """The candidate sites in groups that each run as one forward: by layer (a group resumes
    from the clean run at its layer, ``zoo.model.Start``) and by whether the site is recurrent
    (a patched recurrent state makes its layer step through time; the others keep the model's
    vectorised path)."""
    site = {s.name: s for s in model.sites}
    keyed: dict = {}
    for s in names:
        keyed.setdefault((site[s].layer, site[s].recurrent), []).append(s)
    return [[(s, site[s].layer) for s in group] for group in keyed.values()]


def _groups_of(groups, names) -> list[list[tuple[str, int]]]:
    keep = set(names)
    return [g for g in ([(s, l) for s, l in group if s in keep] for group in groups) if g]


def _patched_logits(model, prefix, src_acts, bases, group, idx, pos) -> torch.Tensor:
    """Logits ``[len(group) * b, T, C]`` of the base rows ``idx`` with copy k's subspace of site
    ``group[k]`` patched from the source at ``pos``, resumed from the clean run at the group's
    layer and at its earliest patched position."""
    names = [s for s, _ in group]
    K, b = len(names), len(idx)
    start = Start(prefix, layer=min(l for _, l in group), position=int(pos.min()) if len(pos) else 0, rows=idx.repeat(K))
    ivs = _stacked({s: src_acts[s][idx] for s in names}, bases, names, pos, b)
    return model.run(prefix.tokens[idx].repeat(K, 1), interventions=ivs, start=start).logits


def _iia_of(model, prefix, src_acts, bases, groups, idx, pos_t, cf, chunk: int = 4) -> dict[str, float]:
    """IIA of each site's subspace on (base, source) pairs: per group, stacked forwards over the
    pairs sorted by intervened position in ``chunk`` slices (a slice resumes at its earliest
    position)."""
    names = [s for g in groups for s, _ in g]
    if not cf.mask.any():
        return {s: float("nan") for s in names}
    order = torch.as_tensor(np.argsort(np.asarray(pos_t), kind="stable"))
    right = {s: 0 for s in names}
    with torch.no_grad():
        for part in order.tensor_split(min(chunk, len(order))):
            sel = idx[part]
            m, want = cf.mask[part.numpy()], cf.outputs[part.numpy()]
            for group in groups:
                pred = _patched_logits(model, prefix, src_acts, bases, group, sel, pos_t[part]).argmax(-1).cpu().numpy()
                for k, (s, _) in enumerate(group):
                    right[s] += int((pred[k * len(sel) : (k + 1) * len(sel)][m] == want[m]).sum())
    total = int(cf.mask.sum())
    return {s: right[s] / total for s in names}


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
