"""Scores of an Alignment: does each aligned location hold the variable, only the variable, compactly?

Per program variable V aligned to a location (site, basis, lag), on held-out (base, source,
position) pairs under the protocol of :mod:`tasks.interpreter`:

- ``iia``: the share of counted readouts where the patched model's output equals the program's
  counterfactual; ``iia_changed``: the same counted only where the counterfactual output differs
  from the base's (a location holding nothing gets every unchanged output right, so plain IIA
  flatters it; NaN where no pair changes an output, e.g. ``indices``, which interchange at one
  position cannot move);
- ``selectivity``: the same patch must leave the *decoys* alone. Models the evaluator scores
  compute a decoy clone of the program (:mod:`tasks.decoys`) that no output reads, and the ground
  truth carries a readout of the decoy output. Counted at the intervened position, in the pairs
  whose source and base decoy outputs differ there (where a location that also carried the
  source's decoys would show it), selectivity is the share where the decoy readout still equals
  the program's counterfactual (the base's decoy output, for a variable the decoys do not read).
  A whole-site location carries the decoys that share the site and fails it; a location holding
  only V passes it. NaN without decoys;
- ``compactness``: ``min(1, d_truth / d)``, the ground-truth subspace's dimension over the
  aligned one's: a location that spans a whole 64-wide stream for a 1-dimensional count explains
  less than one that names the count's direction;
- ``decodes``: whether the location determines V's value: the held-out accuracy of a
  nearest-class-mean decoder of V from the activation projected on the aligned basis. Under the
  same-position readout a variable and a function of it read at that position (a count and its
  parity) have the same IIA at the reader's location; only this tells them apart (reported, not
  in the headline: :func:`indistinguishable` lists such pairs);
- ``overlap``: the subspace overlap with the ground-truth basis (0 at another site or lag).

The headline ``score`` of a variable is ``iia_changed x selectivity x compactness`` (a missing
selectivity counts 1), each of the first two divided by the ground truth's own value and capped at
1 on a trained model (whose planted location is itself imperfect: the oracle scores 1 by
definition there, as on compiled models). The alignment's headline is the mean over the
program's variables that some pair changes an output of, a variable the method did not align
counting 0. Why a product: each factor is necessary. IIA alone is won by a whole-site basis (it
carries the variable, and everything else); selectivity alone by a location holding nothing;
compactness alone by any small subspace. A whole-site basis therefore scores near 0 wherever the
site holds decoys or is wider than the variable, a random subspace near 0 by ``iia_changed``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from methods.finding import patched_rows



def subspace_overlap(a, b) -> float:
    """Mean squared cosine of the principal angles between the row spaces of ``a`` [k, W] and
    ``b`` [l, W]: ||Qa Qb^T||_F^2 / min(k, l) with Qa, Qb orthonormal bases. 1 for equal (or
    nested) subspaces, 0 for orthogonal ones; 0 if the widths differ (different sites)."""
    a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    if a.shape[1] != b.shape[1]:
        return 0.0
    qa = np.linalg.qr(a.T)[0].T
    qb = np.linalg.qr(b.T)[0].T
    return float(np.sum((qa @ qb.T) ** 2) / min(len(qa), len(qb)))


def _share(hit: np.ndarray, counted: np.ndarray) -> float:
    return float(hit[counted].mean()) if counted.any() else float("nan")


def patched_run(model, aligned, base, source, position, readout_sites=()):
    """The base run with ``aligned`` patched from the source at ``position``: (argmax ``[n, L]``,
    cached ``readout_sites``)."""
    with torch.no_grad():
        src = model.run(torch.as_tensor(source), cache=[aligned.site]).cache[aligned.site]
        res = model.run(torch.as_tensor(base), interventions={aligned.site: aligned.intervention(src, position)}, cache=list(readout_sites))
    return res.logits.argmax(-1).cpu().numpy(), res.cache


def causal_scores(model, task, truth, variable: str, aligned, pairs) -> dict:
    """``iia``, ``iia_changed`` and ``selectivity`` of one aligned variable on ``pairs``
    (base, source, position); ``task`` computes the decoys if the model does."""
    base, source, _, position = pairs
    readouts = dict(truth.readouts) if truth is not None else {}
    sites = list(dict.fromkeys(r.site for r in readouts.values()))
    got, cache = patched_run(model, aligned, base, source, position, sites)
    cf = task.counterfactual(base, source, variable, position)
    changed = cf.mask & (cf.outputs != task.targets(base))
    out = {"iia": _share(got == cf.outputs, cf.mask), "iia_changed": _share(got == cf.outputs, changed)}
    program = task.program
    sel = []
    if readouts and program.decoy_names and variable in program.output_names:
        base_values, source_values = task.run(base), task.run(source)
        n, L = base.shape
        at = np.zeros((n, L), dtype=bool)
        at[np.arange(n), np.asarray(position)] = True
        at[:, 0] = False
        for name, r in readouts.items():
            if name not in cf.values:
                continue
            decoded = r.decode(cache[r.site])
            counted = at & (source_values[name] != base_values[name])  # a leak of the source's decoys would show here
            if counted.any():
                sel.append((decoded == cf.values[name])[counted])
    out["selectivity"] = float(np.concatenate(sel).mean()) if sel else float("nan")
    return out


def decodability(model, task, variable: str, aligned, n: int = 128, seed: int = 0) -> float:
    """Held-out accuracy of a nearest-class-mean decoder of ``variable`` from the activation at
    ``aligned``'s site projected on its basis (positions 1.., half the inputs to fit, half to test)."""
    return batched_decodability(model, task, {variable: aligned}, n=n, seed=seed)[variable]


def headline(row: dict, reference: dict | None = None) -> float:
    """A variable's headline from its scores (see the module doc); NaN when no pair changes an
    output of it."""
    iia_c, sel, comp = row.get("iia_changed", float("nan")), row.get("selectivity", float("nan")), row.get("compactness", 1.0)
    if not math.isfinite(iia_c):
        return float("nan")
    ref = reference or {}
    r_iia = ref.get("iia_changed", 1.0)
    r_sel = ref.get("selectivity", 1.0)
    a = min(1.0, iia_c / r_iia) if math.isfinite(r_iia) and r_iia > 0 else iia_c
    b = 1.0 if not math.isfinite(sel) else (min(1.0, sel / r_sel) if math.isfinite(r_sel) and r_sel > 0 else sel)
    return float(a * b * comp)


def alignment_scores(alignment, model, task, truth, n: int = 256, seed: int = 0, references: dict | None = None, decode_n: int = 128) -> dict:
    """Per program variable of ``task`` (decoys excluded): the scores of the module doc and its
    headline ``score``; a variable the alignment leaves out gets ``{"missing": True, "score": 0}``.
    ``references``: variable -> the ground truth's own ``iia_changed`` / ``selectivity`` (trained
    models; see :func:`reference_scores`). Every variable's pairs run in the same batched
    forwards (:func:`batched_causal_scores`)."""
    program = task.program
    names = [v for v in program.names if v in program.output_names]
    aligned = {name: alignment.variables[name] for name in names if name in alignment.variables}
    pairs = {name: task.sample_interventions(n, seed=seed + 101 * (k + 1), variable=name) for k, name in enumerate(names) if name in aligned}
    causal = batched_causal_scores(model, task, truth, aligned, pairs)
    decodes = batched_decodability(model, task, aligned, n=decode_n, seed=seed + 7)
    out = {}
    for name in names:
        av = aligned.get(name)
        if av is None:
            out[name] = {"missing": True, "score": 0.0}
            continue
        row = dict(causal[name])
        loc = truth.variables.get(name) if truth is not None else None
        row["dim"] = int(av.basis.shape[0]) if av.featurizer is None else len(av.featurizer.features)
        row["truth_dim"] = int(loc.dim) if loc is not None else None
        row["compactness"] = min(1.0, row["truth_dim"] / row["dim"]) if loc is not None else 1.0
        row["overlap"] = subspace_overlap(av.basis, loc.basis) if loc is not None and loc.site == av.site and loc.lag == av.lag else 0.0
        row["decodes"] = decodes[name]
        row["site"] = av.site
        row["score"] = headline(row, (references or {}).get(name))
        out[name] = row
    return out


def batched_causal_scores(model, task, truth, aligned: dict, pairs: dict, chunk: int = 1024) -> dict:
    """:func:`causal_scores` of every aligned variable from one batched set of forwards."""
    if not aligned:
        return {}
    names = list(aligned)
    base = np.concatenate([pairs[v][0] for v in names])
    source = np.concatenate([pairs[v][1] for v in names])
    position = np.concatenate([np.broadcast_to(np.asarray(pairs[v][3]), (len(pairs[v][0]),)) for v in names])
    owner = np.concatenate([np.full(len(pairs[v][0]), v, dtype=object) for v in names])
    readouts = dict(truth.readouts) if truth is not None else {}
    sites = list(dict.fromkeys(r.site for r in readouts.values()))
    got, cache = patched_rows(model, aligned, base, source, position, owner, sites, chunk)
    decoded = {name: r.decode(cache[r.site]) for name, r in readouts.items()}
    program = task.program
    out, start = {}, 0
    for v in names:
        n = len(pairs[v][0])
        rows = slice(start, start + n)
        start += n
        b, s, pos = base[rows], source[rows], position[rows]
        cf = task.counterfactual(b, s, v, pos)
        changed = cf.mask & (cf.outputs != task.targets(b))
        row = {"iia": _share(got[rows] == cf.outputs, cf.mask), "iia_changed": _share(got[rows] == cf.outputs, changed)}
        sel = []
        if readouts and program.decoy_names:
            bv, sv = task.run(b), task.run(s)
            at = np.zeros(b.shape, dtype=bool)
            at[np.arange(n), pos] = True
            at[:, 0] = False
            for name in readouts:
                if name in cf.values:
                    counted = at & (sv[name] != bv[name])  # a leak of the source's decoys would show here
                    if counted.any():
                        sel.append((decoded[name][rows] == cf.values[name])[counted])
        row["selectivity"] = float(np.concatenate(sel).mean()) if sel else float("nan")
        out[v] = row
    return out


def batched_decodability(model, task, aligned: dict, n: int = 128, seed: int = 0) -> dict:
    """:func:`decodability` of every aligned variable from one forward on a shared sample."""
    if not aligned:
        return {}
    tokens = task.sample(n, seed=seed).tokens
    values = task.run(tokens)
    with torch.no_grad():
        cache = model.run(torch.as_tensor(tokens), cache=sorted({av.site for av in aligned.values()})).cache
    return {v: _nearest_mean(cache[av.site].double().cpu().numpy(), values[v], av) for v, av in aligned.items()}


def _nearest_mean(acts: np.ndarray, values: np.ndarray, aligned) -> float:
    n, L = values.shape
    t = np.arange(1, L)
    X = acts[:, np.clip(t + aligned.lag, 0, L - 1), :] @ np.asarray(aligned.basis, dtype=np.float64).T  # [n, L-1, k]
    y = values[:, t]
    half = n // 2
    Xtr, ytr = X[:half].reshape(-1, X.shape[-1]), y[:half].reshape(-1)
    Xte, yte = X[half:].reshape(-1, X.shape[-1]), y[half:].reshape(-1)
    classes = np.unique(ytr)
    if len(classes) < 2 or len(yte) == 0:
        return float("nan")
    means = np.stack([Xtr[ytr == c].mean(0) for c in classes])
    pred = classes[((Xte[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)]
    return float((pred == yte).mean())


def reference_scores(model, task, truth, n: int = 256, seed: int = 0) -> dict:
    """The ground truth's own ``iia_changed`` and ``selectivity`` per variable, on the pairs
    :func:`alignment_scores` draws (the headline's denominators on a trained model)."""
    from methods.finding import AlignedVariable

    program = task.program
    names = [v for v in program.names if v in program.output_names]
    aligned = {v: AlignedVariable(truth.variables[v].site, truth.variables[v].basis, "all", truth.variables[v].lag) for v in names}
    pairs = {name: task.sample_interventions(n, seed=seed + 101 * (k + 1), variable=name) for k, name in enumerate(names)}
    causal = batched_causal_scores(model, task, truth, aligned, pairs)
    return {v: {"iia_changed": r["iia_changed"], "selectivity": r["selectivity"]} for v, r in causal.items()}


def summarize_variables(rows: dict) -> dict:
    """The alignment's cell-level figures from its per-variable rows: ``score`` (the headline:
    mean over variables with a defined score, missing ones 0), and the means of ``iia``,
    ``iia_changed``, ``selectivity``, ``compactness``, ``decodes`` and ``overlap`` where defined."""
    def mean(key, default=None):
        vals = [r[key] for r in rows.values() if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        return float(np.mean(vals)) if vals else (default if default is not None else float("nan"))

    scored = [r["score"] for r in rows.values() if r.get("missing") or math.isfinite(r.get("score", float("nan")))]
    out = {k: mean(k) for k in ("iia", "iia_changed", "selectivity", "compactness", "decodes", "overlap")}
    out["score"] = float(np.mean(scored)) if scored else float("nan")
    out["missing"] = sum(bool(r.get("missing")) for r in rows.values())
    return out


def indistinguishable(model, task, truth, n: int = 128, seed: int = 0, tol: float = 0.99) -> list[dict]:
    """Pairs (V, W) of program variables where aligning V to W's ground-truth location scores
    IIA on changed outputs >= ``tol`` (the output protocol cannot tell V from W there), with
    V's decodability from that location (low: the location does not determine V)."""
    from methods.finding import AlignedVariable

    program = task.program
    names = [v for v in program.names if v in program.output_names]
    out = []
    for k, v in enumerate(names):
        pairs = task.sample_interventions(n, seed=seed + 101 * (k + 1), variable=v)
        for w in names:
            if w == v:
                continue
            loc = truth.variables[w]
            av = AlignedVariable(loc.site, loc.basis, "all", loc.lag)
            row = causal_scores(model, task, truth, v, av, pairs)
            if math.isfinite(row["iia_changed"]) and row["iia_changed"] >= tol:
                out.append({"variable": v, "at": w, "iia_changed": row["iia_changed"], "decodes": decodability(model, task, v, av, n=n, seed=seed)})
    return out
