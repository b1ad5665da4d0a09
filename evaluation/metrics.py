"""Metrics: does a method's finding recover the planted algorithm? Each function states its definition.

The unit of localisation is a **cell**: a (component, position) pair, where components are the
model's heads, blocks of MLP or RNN units and groups of SSM channels (``model.components``), and
the ground truth labels every cell in the circuit (1), out of it (0: decoys, and variables where
nothing reads them) or neither (-1: input-independent cells, idle units), see
:mod:`zoo.cells`. Cell metrics skip the -1s. A finding that scores whole sites gives each of a
site's components its site's score (so it cannot tell a decoy block from a real one in the same
layer); a score per component and no position is that component's score at every position.

Alignment metrics live in :mod:`evaluation.alignment_scores`.
"""

from __future__ import annotations

import numpy as np
import torch

from zoo.components import COMPONENT_KINDS
from zoo.ground_truth import NEITHER, POSITIVE

NON_COMPONENT_KINDS = ("resid", "embed")


# -- ranking ----------------------------------------------------------------------------------
def auroc(scores, labels) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative),
    ties counted one half (the Mann-Whitney U statistic / (n_pos * n_neg)), computed from ranks.
    NaN when the labels are all one class."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties (1-based)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def auroc_null_sd(n_pos: int, n_neg: int) -> float:
    """Standard deviation of the AUROC of scores that ignore the labels (continuous, i.i.d.): the
    Mann-Whitney null, ``sqrt((n_pos + n_neg + 1) / (12 n_pos n_neg))``."""
    return float(np.sqrt((n_pos + n_neg + 1) / (12.0 * n_pos * n_neg))) if n_pos and n_neg else float("nan")


def components(model) -> list[str]:
    """The model's component names (``model.components``), in model order."""
    return [c.name for c in model.components]


def cell_scores(finding, model, length: int, signed: bool = False) -> dict[str, np.ndarray]:
    """Per component, a score per position ``[length]`` from a SiteScores (see module doc): its
    own scores, else its site's, else its own or its site's score over all positions, else 0.
    Absolute values unless ``signed``."""
    out = {}
    for c in model.components:
        if c.name in finding.scores:
            v = finding.scores[c.name]
        elif c.site in finding.scores:
            v = finding.scores[c.site]
        elif c.name in finding.components:
            v = np.full(length, finding.components[c.name])
        elif c.site in finding.components:
            v = np.full(length, finding.components[c.site])
        else:
            v = np.zeros(length)
        v = np.asarray(v, dtype=np.float64)[:length]
        if len(v) < length:
            v = np.concatenate([v, np.zeros(length - len(v))])
        out[c.name] = v if signed else np.abs(v)
    return out


def cell_labels(truth) -> dict[str, np.ndarray]:
    return {c: np.asarray(lab, dtype=np.int64) for c, lab in truth.cells.items()}


def cell_auroc(finding, model, truth, signed: bool = False) -> float:
    """Node AUROC over (component, position) cells: the finding's cell scores (:func:`cell_scores`)
    against the ground truth's labels, cells labelled neither skipped."""
    labels = cell_labels(truth)
    L = len(next(iter(labels.values()))) if labels else 0
    scores = cell_scores(finding, model, L, signed)
    s, y = [], []
    for c, lab in labels.items():
        keep = lab != NEITHER
        s.append(scores[c][keep])
        y.append(lab[keep] == POSITIVE)
    if not s:
        return float("nan")
    return auroc(np.concatenate(s), np.concatenate(y))


def cell_counts(truth) -> tuple[int, int]:
    """(positive, negative) cells of a ground truth."""
    lab = np.concatenate([np.asarray(v) for v in truth.cells.values()]) if truth.cells else np.zeros(0)
    return int((lab == POSITIVE).sum()), int((lab == 0).sum())


def component_scores(finding, model, truth) -> dict[str, float]:
    """One score per component: the max over positions of its cell scores (absolute)."""
    L = len(next(iter(truth.cells.values()))) if truth.cells else finding.n_positions
    return {c: float(v.max()) if len(v) else 0.0 for c, v in cell_scores(finding, model, L).items()}


def site_auroc(finding, model, truth) -> float:
    """The site-level node AUROC (kept as a second column): over the sites that hold components,
    a site is positive when one of its components has a positive cell, and scores the max of its
    own scores and its components' (absolute, over positions)."""
    comp = component_scores(finding, model, truth)
    positive = set(truth.positive_components())
    sites = [s for s in model.sites if s.kind in COMPONENT_KINDS]
    by_site: dict[str, list] = {s.name: [] for s in sites}
    for c in model.components:
        by_site[c.site].append(c.name)
    scored = [s.name for s in sites if by_site[s.name] and any(truth.cells.get(c) and any(x != NEITHER for x in truth.cells[c]) for c in by_site[s.name])]
    own = {s: float(np.abs(finding.scores[s]).max()) if s in finding.scores else abs(finding.components.get(s, 0.0)) for s in scored}
    values = [max([own[s]] + [comp[c] for c in by_site[s]]) for s in scored]
    labels = [any(c in positive for c in by_site[s]) for s in scored]
    return auroc(values, labels)


def precision_recall(found, truth_set) -> tuple[float, float]:
    """Precision = |found & truth| / |found| (1.0 for an empty ``found``), recall = |found & truth|
    / |truth| (1.0 for an empty truth)."""
    found, truth_set = set(found), set(truth_set)
    hit = len(found & truth_set)
    return (hit / len(found) if found else 1.0), (hit / len(truth_set) if truth_set else 1.0)


def cell_precision_recall(kept, truth) -> tuple[float, float]:
    """Precision and recall over (component, position) cells of a circuit that keeps components
    ``kept`` at every position: kept cells labelled positive over kept cells labelled positive or
    negative, and over all positive cells."""
    kept = set(kept)
    tp = fp = pos = 0
    for c, lab in truth.cells.items():
        lab = np.asarray(lab)
        p, n = int((lab == POSITIVE).sum()), int((lab == 0).sum())
        pos += p
        if c in kept:
            tp, fp = tp + p, fp + n
    return (tp / (tp + fp) if tp + fp else 1.0), (tp / pos if pos else 1.0)


def ranked(scores: dict[str, float], names: list[str]) -> list[str]:
    """``names`` by decreasing score (ties broken by the model's order)."""
    return [n for _, _, n in sorted((-scores.get(n, 0.0), i, n) for i, n in enumerate(names))]


def expand_sites(names, model) -> list[str]:
    """Component names for a circuit's entries: a component as is, a site as its components."""
    comps = model.components
    by_site: dict[str, list[str]] = {}
    for c in comps:
        by_site.setdefault(c.site, []).append(c.name)
    known = {c.name for c in comps}
    out = []
    for n in names:
        if n in known:
            out.append(n)
        else:
            out.extend(by_site.get(n, []))
    return list(dict.fromkeys(out))


# -- faithfulness -----------------------------------------------------------------------------
class Faithfulness:
    """f(C) = (m(C) - m(empty)) / (m(full) - m(empty)), with every component outside C ablated.

    m is the mean probability of the program's correct output at the readout positions (over
    ``n`` seeded inputs); "ablated" replaces a component's units at every position with the
    ablation source (``resample``: the same units on paired source inputs; ``mean``; ``zero``),
    as :func:`methods.patching.ablation_sources` builds it. m(full) runs the model untouched;
    m(empty) ablates every component. If m(full) == m(empty) f is undefined (NaN).
    """

    def __init__(self, model, task, ablation: str = "resample", n: int = 64, seed: int = 0):
        from methods.patching import ablation_sources, readout, resolve

        self.model, self.task, self.ablation = model, task, ablation
        self.base = task.sample(n, seed=seed + 31337).tokens
        self.comps = components(model)
        self.where = resolve(model, self.comps)
        sites = list(dict.fromkeys(site for site, _ in self.where.values()))
        self.sources = ablation_sources(model, task, self.base, sites, ablation, seed=seed + 1)
        self.targets, self.mask = readout(task, self.base)
        self._cache: dict[frozenset, float] = {}
        self.full = self.m(self.comps)
        self.empty = self.m(())

    def m(self, kept) -> float:
        from methods.patching import mask_interventions, metric

        key = frozenset(c for c in kept if c in self.where)
        if key not in self._cache:
            amounts = {c: torch.ones(()) for c in self.comps if c not in key}
            iv = mask_interventions(self.sources, amounts, where=self.where) if amounts else {}
            with torch.no_grad():
                logits = self.model.run(torch.as_tensor(self.base), interventions=iv).logits
            self._cache[key] = float(metric(logits, self.targets, self.mask, "prob").mean())
        return self._cache[key]

    def __call__(self, kept) -> float:
        den = self.full - self.empty
        if abs(den) < 1e-9:
            return float("nan")
        return (self.m(kept) - self.empty) / den

    def curve(self, order, points: int = 11) -> tuple[np.ndarray, np.ndarray]:
        """(sizes k/n, f of the top-k components of ``order``) at ``points`` evenly spaced sizes
        (k = 0 and k = n included)."""
        n = len(order)
        ks = np.unique(np.round(np.linspace(0, n, min(points, n + 1))).astype(int))
        return ks / max(n, 1), np.asarray([self(order[:k]) for k in ks])


def faithfulness_at_size(faith: Faithfulness, kept, size: int, scores: dict | None = None, seed: int = 0) -> float:
    """Faithfulness of a circuit at the ground truth's size: a circuit of at most ``size``
    components is scored as it is; a larger one by its ``size`` best components by its own
    ``scores`` (its per-component evidence), or, without scores, by the mean over 4 seeded random
    subsets of ``size`` of them. Keeping everything therefore scores what a random circuit of the
    ground truth's size scores, not 1."""
    kept = list(kept)
    if len(kept) <= size:
        return faith(kept)
    if scores:
        return faith(ranked(scores, kept)[:size])
    rng = np.random.default_rng(seed)
    return float(np.nanmean([faith([kept[i] for i in rng.choice(len(kept), size, replace=False)]) for _ in range(4)]))


def cpr_cmd(sizes, curve) -> tuple[float, float]:
    """MIB's CPR and CMD: the areas under f and under |1 - f| over circuit sizes k/n in [0, 1]
    (trapezoid rule over the measured sizes). CPR higher is better, CMD lower is better."""
    f = np.asarray(curve, dtype=np.float64)
    x = np.asarray(sizes, dtype=np.float64)
    if len(f) < 2 or not np.isfinite(f).all():
        return float("nan"), float("nan")
    return float(np.trapezoid(f, x)), float(np.trapezoid(np.abs(1 - f), x))


def edge_auroc(edge_scores: dict, truth, candidates) -> float:
    """AUROC of scores per edge ``(upstream, downstream)`` against membership of the ground-truth
    edges, over ``candidates`` (every edge the family has; unscored edges score 0). NaN when the
    ground truth has no edges (families without a residual stream)."""
    if not truth.edges:
        return float("nan")
    gt = {tuple(e) for e in truth.edges}
    cand = list(dict.fromkeys([tuple(e) for e in candidates] + list(gt)))
    return auroc([abs(edge_scores.get(e, 0.0)) for e in cand], [e in gt for e in cand])


# -- intervals --------------------------------------------------------------------------------
def bootstrap_ci(values, stat=np.mean, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(point, low, high): ``stat`` of the finite ``values`` and its percentile bootstrap interval
    (``n_boot`` seeded resamples with replacement). NaNs are dropped; all NaN gives NaNs."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boots = stat(v[rng.integers(0, len(v), (n_boot, len(v)))], axis=1) if stat is np.mean else np.asarray([stat(v[rng.integers(0, len(v), len(v))]) for _ in range(n_boot)])
    lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(stat(v)), float(lo), float(hi)


def paired_gap(table: dict, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """The architecture gap on paired cells.

    ``table``: unit (a task and kind) -> {family: score}. Only units with a finite score in every
    family of the table count (the same tasks compared in every family). The families with the
    highest and the lowest mean over those units are fixed from the data; the gap is the
    difference of their means, and its interval a percentile bootstrap over units (a resampled
    unit keeps all its families, so the pairing stays), of the same two families' mean
    difference. Scores that do not depend on the family (a random control) give an interval
    around 0. Returns ``{"gap": (point, low, high), "high": family, "low": family, "units": n}``.
    """
    families = sorted({f for row in table.values() for f in row})
    units = [u for u, row in table.items() if all(np.isfinite(row.get(f, np.nan)) for f in families)]
    if len(families) < 2 or not units:
        return {"gap": (float("nan"),) * 3, "high": None, "low": None, "units": len(units)}
    M = np.asarray([[table[u][f] for f in families] for u in units], dtype=np.float64)
    means = M.mean(0)
    hi, lo = int(np.argmax(means)), int(np.argmin(means))
    diff = M[:, hi] - M[:, lo]
    rng = np.random.default_rng(seed)
    boots = diff[rng.integers(0, len(diff), (n_boot, len(diff)))].mean(1)
    a, b = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"gap": (float(diff.mean()), float(a), float(b)), "high": families[hi], "low": families[lo], "units": len(units)}
