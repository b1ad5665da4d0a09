"""Summaries of a grid: per method, the headline score per family, its margin over the degenerate
baselines, the architecture gap on paired cells, and the control checks.

- ``summarize(rows)``: per method, the mean headline score (node AUROC over cells for
  SiteScores, the alignment score for an Alignment, faithfulness at the ground truth's size for a
  Circuit; :mod:`evaluation.grid`) over its finished cells with a seeded bootstrap interval over
  cells, the same per family and per kind, the **margin** over the best degenerate baseline of
  the same finding kind (:data:`methods.registry.DEGENERATE`), and the **architecture gap** on
  paired cells (:func:`evaluation.metrics.paired_gap`: the tasks and kinds scored in every
  family, bootstrapped over them with the pairing kept). Trained models that missed their
  targets (``reached: false``) are left out of every figure and counted.
- ``control_checks(rows)``: a run is valid only while

  * every oracle (``oracle``, ``oracle_alignment``, ``oracle_circuit``) scores 1.0 (within
    :data:`ORACLE_TOLERANCE`) on its headline in every cell of every kind, trained included;
  * ``random`` sits at chance: its mean cell AUROC is within :data:`RANDOM_Z` null standard
    deviations of 0.5, the null being the exact Mann-Whitney variance of each cell's AUROC under
    scores that ignore the labels (so a correct random control raises a false alarm in 1 run of
    1,000, whatever the number of cells; ``benchmarks/controls.py`` measures it);
  * no degenerate baseline scores within :data:`DEGENERATE_MARGIN` of the oracle of its finding
    kind.

  A run without one of these controls says so ("not run"); it does not fail the check.
"""

from __future__ import annotations

import math

import numpy as np

from .metrics import auroc_null_sd, bootstrap_ci, paired_gap

ORACLE_TOLERANCE = 0.02
RANDOM_Z = 3.29  # two-sided p = 0.001 under the null
DEGENERATE_MARGIN = 0.1
NOT_RUN = ("refused", "missing")  # a compiler refused the pair / the trained model is not in the store
HEADLINE = {"site_scores": "node AUROC (cells)", "alignment": "alignment score", "circuit": "faithfulness at size"}
ORACLE_OF = {"site_scores": "oracle", "alignment": "oracle_alignment", "circuit": "oracle_circuit"}


def _degenerate() -> tuple[str, ...]:
    from methods.registry import DEGENERATE

    return DEGENERATE


def _controls() -> tuple[str, ...]:
    from methods.registry import CONTROLS

    return CONTROLS


def usable(r) -> bool:
    """A finished cell that counts: status ok, and not a trained model that missed its targets."""
    return r.get("status") == "ok" and r.get("reached", True) is not False


def _vals(rows, key="score"):
    return [r[key] for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]


def _mean(rows, key="score") -> float:
    v = _vals(rows, key)
    return float(np.mean(v)) if v else float("nan")


EXTRA_KEYS = ("auroc", "auroc_signed", "site_auroc", "edge_auroc", "edge_precision", "edge_recall", "precision_at_k", "faithfulness_at_k", "cpr", "cmd",
              "iia", "iia_changed", "selectivity", "compactness", "decodes", "overlap", "faithfulness", "precision", "recall", "cell_precision", "cell_recall")


def summarize(rows, seed: int = 0) -> dict:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    families = list(dict.fromkeys(r["family"] for r in rows))
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    out = {"methods": {}, "families": families, "kinds": kinds, "checks": control_checks(rows, seed=seed)}
    for m in methods:
        mr = [r for r in rows if r["method"] == m]
        ok = [r for r in mr if usable(r)]
        finding = next((r.get("finding") for r in ok if r.get("finding")), None)
        table: dict = {}
        for r in ok:
            if isinstance(r.get("score"), (int, float)) and math.isfinite(r["score"]):
                table.setdefault((r["task"], r["kind"]), {})[r["family"]] = r["score"]
        gap = paired_gap(table, seed=seed)
        out["methods"][m] = {
            "finding": finding,
            "metric": HEADLINE.get(finding, "score"),
            "score": bootstrap_ci(_vals(ok), seed=seed),
            "per_family": {f: bootstrap_ci(_vals([r for r in ok if r["family"] == f]), seed=seed) for f in families},
            "per_kind": {k: bootstrap_ci(_vals([r for r in ok if r["kind"] == k]), seed=seed) for k in kinds},
            "gap": gap["gap"], "gap_between": (gap["high"], gap["low"]), "gap_units": gap["units"],
            "cells": len(mr),
            "failed": sum(r.get("status") not in ("ok", *NOT_RUN) for r in mr),
            "refused": sum(r.get("status") == "refused" for r in mr),
            "unreached": sum(r.get("status") == "ok" and r.get("reached") is False for r in mr),
            "seconds": float(sum(r.get("seconds", 0.0) for r in mr)),
            "extra": {k: _mean(ok, k) for k in EXTRA_KEYS if _vals(ok, k)},
            "control": m in _controls(),
        }
    best_degenerate = {}
    for m, s in out["methods"].items():
        if m in _degenerate() and s["finding"] and math.isfinite(s["score"][0]):
            best_degenerate[s["finding"]] = max(best_degenerate.get(s["finding"], -math.inf), s["score"][0])
    for m, s in out["methods"].items():
        base = best_degenerate.get(s["finding"])
        s["margin"] = s["score"][0] - base if base is not None and math.isfinite(s["score"][0]) else float("nan")
    return out


def control_checks(rows, seed: int = 0) -> list[dict]:
    """One dict per check: name, passed (True, False, or None when the control did not run), detail."""
    checks = []
    for kind, oracle in ORACLE_OF.items():
        mr = [r for r in rows if r["method"] == oracle]
        ok = [r for r in mr if r.get("status") == "ok"]
        failed = [r for r in mr if r.get("status") not in ("ok", *NOT_RUN)]
        if not mr:
            checks.append({"name": f"{oracle} scores 1.0", "passed": None, "detail": "not run"})
            continue
        bad = [(f"{r['task']}/{r['family']}/{r['kind']}", r.get("score")) for r in ok
               if not (isinstance(r.get("score"), (int, float)) and abs(r["score"] - 1.0) <= ORACLE_TOLERANCE)]
        passed = not bad and not failed and bool(ok)
        detail = f"1.0 (within {ORACLE_TOLERANCE}) in every one of {len(ok)} cells" if passed else (
            f"{len(bad)} of {len(ok)} cells off 1.0, e.g. {bad[:3]}" if bad else f"{len(failed)} cells failed" if failed else "no finished cells")
        checks.append({"name": f"{oracle} scores 1.0", "passed": passed, "detail": detail})
    checks.append(random_check(rows))
    oracle_mean = {kind: _mean([r for r in rows if r["method"] == o and usable(r)]) for kind, o in ORACLE_OF.items()}
    for m in _degenerate():
        mr = [r for r in rows if r["method"] == m and usable(r)]
        if not mr:
            continue
        kind = next((r.get("finding") for r in mr if r.get("finding")), None)
        score, ref = _mean(mr), oracle_mean.get(kind, float("nan"))
        if not math.isfinite(ref):
            ref = 1.0  # an oracle scores 1 by definition
        passed = not (math.isfinite(score) and score >= ref - DEGENERATE_MARGIN)
        checks.append({"name": f"degenerate baseline {m} stays away from the oracle", "passed": passed,
                       "detail": f"{HEADLINE.get(kind, 'score')} {score:.3f} vs the oracle's {ref:.3f} (must be below {ref - DEGENERATE_MARGIN:.3f})"})
    return checks


def random_check(rows) -> dict:
    """``random`` at chance: its mean cell AUROC against the Mann-Whitney null (see module doc)."""
    mr = [r for r in rows if r["method"] == "random" and usable(r)]
    cells = [r for r in mr if isinstance(r.get("auroc"), (int, float)) and math.isfinite(r["auroc"]) and r.get("cells_positive") and r.get("cells_negative")]
    if not cells:
        return {"name": "random sits at chance", "passed": None, "detail": "not run (no random cell with a defined AUROC)"}
    mean = float(np.mean([r["auroc"] for r in cells]))
    sd = math.sqrt(sum(auroc_null_sd(r["cells_positive"], r["cells_negative"]) ** 2 for r in cells)) / len(cells)
    z = (mean - 0.5) / sd if sd > 0 else 0.0
    return {"name": "random sits at chance", "passed": abs(z) <= RANDOM_Z,
            "detail": f"mean cell AUROC {mean:.3f} over {len(cells)} cells, {z:+.2f} null SDs from 0.5 (limit {RANDOM_Z})"}


def broken(summary) -> bool:
    return any(c["passed"] is False for c in summary["checks"])


def fixed(v: float, digits: int = 3) -> str:
    """``v`` with ``digits`` decimals, never ``-0.000``: a value that rounds to zero has no sign."""
    text = f"{v:.{digits}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


def fmt_ci(t) -> str:
    point, lo, hi = (0.0 if isinstance(x, float) and abs(x) < 5e-4 else x for x in t)
    if not math.isfinite(point):
        return "n/a"
    return f"{fixed(point)} [{fixed(lo, 2)}, {fixed(hi, 2)}]"


def _fmt(v: float, signed: bool = False) -> str:
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return "n/a"
    v = 0.0 if abs(v) < 5e-4 else v
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def leaderboard_rows(summary) -> list[list[str]]:
    """Header + one row per method: methods by headline score within each finding kind, then the
    controls."""
    fams = summary["families"]
    head = ["method", "finding", "metric", "score [95% CI]", "margin", *fams, "arch gap [95% CI]", "cells", "failed", "refused", "seconds"]
    order = {"site_scores": 0, "alignment": 1, "circuit": 2, None: 3}
    items = sorted(summary["methods"].items(), key=lambda kv: (kv[1]["control"], order.get(kv[1]["finding"], 3),
                                                               -(kv[1]["score"][0] if math.isfinite(kv[1]["score"][0]) else -1)))
    rows = [head]
    for m, s in items:
        hi, lo = s["gap_between"]
        gap = fmt_ci(s["gap"]) + (f" {hi}-{lo}" if hi and hi != lo else "")
        rows.append([m + (" (control)" if s["control"] else ""), s["finding"] or "-", s["metric"], fmt_ci(s["score"]), _fmt(s["margin"], signed=True),
                     *[fmt_ci(s["per_family"][f]) for f in fams], gap, str(s["cells"]), str(s["failed"]), str(s["refused"]), f"{s['seconds']:.1f}"])
    return rows


def text_table(rows) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def check_lines(summary) -> list[str]:
    mark = {True: "ok", False: "FAILED", None: "not run"}
    return [f"[{mark[c['passed']]}] {c['name']}: {c['detail']}" for c in summary["checks"]]


def render_text(summary) -> str:
    lines = []
    if broken(summary):
        lines.append("THE EVALUATION IS BROKEN: a control check failed (see below); do not trust these scores.\n")
    lines.append(text_table(leaderboard_rows(summary)))
    lines.append("")
    lines += check_lines(summary)
    unreached = sum(s["unreached"] for s in summary["methods"].values())
    if unreached:
        lines.append(f"{unreached} cells on trained models that missed their targets are left out of every figure.")
    lines.append(NA_NOTE)
    return "\n".join(lines)


NA_NOTE = ("margin: the score minus the best degenerate baseline's of the same finding kind (controls: constant, layer_order, site_width, "
           "activation_variance, activation_norm, full_site_alignment, keep_all_circuit). arch gap: the mean of the best family minus the worst "
           "on the tasks and kinds scored in every family, bootstrapped over them. n/a: no defined score. refused: a compiler refused the "
           "(task, family) pair; a trained model not yet in the store is a missing cell, evaluated by the next run.")
