"""Metrics: does a method's finding recover the planted algorithm? Each function states its definition.

Node-level membership uses *components*: the sites whose kind is not ``"resid"`` or ``"embed"``
(a transformer's or SSM's ground-truth circuit also lists the residual-stream sites it passes
through, which every method touches; counting them would reward or punish a method for the
stream, not for finding the computation). Where that leaves only one class (every component in
the circuit, as in most RNNs), all sites are used; where even that is one class the AUROC is
undefined (NaN) and summaries skip it.
"""

from __future__ import annotations

import numpy as np
import torch

NON_COMPONENT_KINDS = ("resid", "embed")


# -- ranking ----------------------------------------------------------------------------------
def auroc(scores, labels) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative),
    ties counted one half (the Mann-Whitney U statistic / (n_pos * n_neg)). NaN when the labels
    are all one class."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def components(model) -> list[str]:
    """The model's components: site names whose kind is not resid/embed (see module doc)."""
    return [s.name for s in model.sites if s.kind not in NON_COMPONENT_KINDS]


def node_universe(model, truth) -> list[str]:
    """Components if both classes occur among them, else every site (see module doc)."""
    comps = components(model)
    circuit = set(truth.circuit)
    if 0 < sum(c in circuit for c in comps) < len(comps):
        return comps
    return [s.name for s in model.sites]


def site_score_vector(finding, names, signed: bool = False) -> np.ndarray:
    """One score per site: the finding's per-component score if it has one, else the max over
    positions (of |score|, or of the signed score when ``signed``); 0 for sites it never scored."""
    out = []
    for n in names:
        if n in finding.components:
            v = finding.components[n]
            out.append(v if signed else abs(v))
        elif n in finding.scores:
            a = finding.scores[n]
            out.append(float(a.max() if signed else np.abs(a).max()))
        else:
            out.append(0.0)
    return np.asarray(out)


def node_auroc(finding, model, truth, signed: bool = False) -> float:
    """AUROC of a SiteScores' per-site scores (absolute by default, signed if ``signed``) against
    membership of the ground-truth circuit, over :func:`node_universe`."""
    names = node_universe(model, truth)
    circuit = set(truth.circuit)
    return auroc(site_score_vector(finding, names, signed), [n in circuit for n in names])


def edge_auroc(edge_scores: dict, truth, candidates) -> float:
    """AUROC of scores per edge ``(upstream, downstream)`` against membership of the ground-truth
    edges, over ``candidates`` (every edge the family has; unscored edges score 0). NaN when the
    ground truth has no edges (families without a residual stream)."""
    if not truth.edges:
        return float("nan")
    gt = {tuple(e) for e in truth.edges}
    cand = list(dict.fromkeys([tuple(e) for e in candidates] + list(gt)))
    return auroc([abs(edge_scores.get(e, 0.0)) for e in cand], [e in gt for e in cand])


def precision_recall(found, truth_set) -> tuple[float, float]:
    """Precision = |found & truth| / |found| (1.0 for an empty ``found``), recall = |found & truth|
    / |truth| (1.0 for an empty truth)."""
    found, truth_set = set(found), set(truth_set)
    hit = len(found & truth_set)
    return (hit / len(found) if found else 1.0), (hit / len(truth_set) if truth_set else 1.0)


def top_k(finding, names, k: int) -> list[str]:
    """The ``k`` highest-scoring names (|score|, ties broken by the model's site order)."""
    s = site_score_vector(finding, names)
    order = sorted(range(len(names)), key=lambda i: (-s[i], i))
    return [names[i] for i in order[:k]]


# -- faithfulness -----------------------------------------------------------------------------
class Faithfulness:
    """f(C) = (m(C) - m(empty)) / (m(full) - m(empty)), with every component outside C ablated.

    m is the mean probability of the program's correct output at the readout positions (over
    ``n`` seeded inputs); "ablated" replaces a component's activation at every position with
    the ablation source (``resample``: the same component on paired source inputs; ``mean``;
    ``zero``), as :func:`methods.patching.ablation_sources` builds it. m(full) runs the model
    untouched; m(empty) ablates every component (:func:`components`). If m(full) == m(empty)
    f is undefined (NaN).
    """

    def __init__(self, model, task, ablation: str = "resample", n: int = 64, seed: int = 0):
        from methods.patching import ablation_sources, readout

        self.model, self.task, self.ablation = model, task, ablation
        self.base = task.sample(n, seed=seed + 31337).tokens
        self.comps = components(model)
        self.sources = ablation_sources(model, task, self.base, self.comps, ablation, seed=seed + 1)
        self.targets, self.mask = readout(task, self.base)
        self._cache: dict[frozenset, float] = {}
        self.full = self.m(self.comps)
        self.empty = self.m(())

    def m(self, kept) -> float:
        from methods.patching import metric
        from zoo.sites import patch

        key = frozenset(c for c in kept if c in self.comps)
        if key not in self._cache:
            iv = {c: patch(self.sources[c]) for c in self.comps if c not in key}
            with torch.no_grad():
                logits = self.model.run(torch.as_tensor(self.base), interventions=iv).logits
            self._cache[key] = float(metric(logits, self.targets, self.mask, "prob").mean())
        return self._cache[key]

    def __call__(self, kept) -> float:
        den = self.full - self.empty
        if abs(den) < 1e-9:
            return float("nan")
        return (self.m(kept) - self.empty) / den

    def curve(self, ranked) -> np.ndarray:
        """f of the top-k components of ``ranked`` for k = 0..len(ranked)."""
        return np.asarray([self(ranked[:k]) for k in range(len(ranked) + 1)])


def cpr_cmd(curve) -> tuple[float, float]:
    """MIB's CPR and CMD: the areas under f and under |1 - f| over circuit sizes k/n in [0, 1]
    (trapezoid rule over k = 0..n). CPR higher is better, CMD lower is better."""
    f = np.asarray(curve, dtype=np.float64)
    if len(f) < 2 or not np.isfinite(f).all():
        return float("nan"), float("nan")
    x = np.linspace(0, 1, len(f))
    return float(np.trapezoid(f, x)), float(np.trapezoid(np.abs(1 - f), x))


# -- variable recovery ------------------------------------------------------------------------
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


def variable_recovery(alignment, model, task, truth, n: int = 256, seed: int = 0) -> dict:
    """Per aligned variable, on ``n`` held-out pairs (seed ``seed``, kept apart from the method's
    own seeds by the caller) under the interpreter's protocol
    (:func:`methods.finding.alignment_predictions`): the alignment's IIA; its IIA counted only on
    the outputs the counterfactual changes (``iia_changed``, NaN when none does: then the variable
    cannot tell a causal location from one that holds nothing, which scores 1 on plain IIA); and
    :func:`subspace_overlap` with the ground-truth basis (0 when the method chose another site or
    another lag)."""
    from methods.finding import alignment_predictions
    from zoo.verify import counterfactual_accuracies

    out = {}
    for k, (name, av) in enumerate(alignment.variables.items()):
        base, source, position, got = alignment_predictions(model, task, name, av, n=n, seed=seed + 101 * (k + 1))
        iia, changed = counterfactual_accuracies(task, name, base, source, position, got)
        loc = truth.variables.get(name)
        ov = subspace_overlap(av.basis, loc.basis) if loc is not None and loc.site == av.site and loc.lag == av.lag else 0.0
        out[name] = {"iia": iia, "iia_changed": changed, "overlap": ov, "site": av.site, "dim": int(av.basis.shape[0])}
    return out


# -- intervals --------------------------------------------------------------------------------
def bootstrap_ci(values, stat=np.mean, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(point, low, high): ``stat`` of the finite ``values`` and its percentile bootstrap interval
    (``n_boot`` seeded resamples with replacement). NaNs are dropped; all NaN gives NaNs."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boots = np.asarray([stat(v[rng.integers(0, len(v), len(v))]) for _ in range(n_boot)])
    lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(stat(v)), float(lo), float(hi)


def bootstrap_gap(groups: dict, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Architecture gap = max - min over groups (families) of the group means, with a percentile
    bootstrap interval resampling each group's values independently. NaN with < 2 groups."""
    g = {k: np.asarray([x for x in v if x is not None and np.isfinite(x)], float) for k, v in groups.items()}
    g = {k: v for k, v in g.items() if len(v)}
    if len(g) < 2:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    point = max(v.mean() for v in g.values()) - min(v.mean() for v in g.values())
    boots = []
    for _ in range(n_boot):
        means = [v[rng.integers(0, len(v), len(v))].mean() for v in g.values()]
        boots.append(max(means) - min(means))
    lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(point), float(lo), float(hi)
