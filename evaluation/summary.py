"""Summaries of a grid: per method, the headline score per family, the architecture gap, the checks.

- ``summarize(rows)``: per method, the mean headline score (node AUROC for SiteScores, IIA for an
  Alignment, faithfulness for a Circuit; see :mod:`evaluation.grid`) over its finished cells with
  a seeded bootstrap interval over cells (tasks x kinds), the same per family, and the
  architecture gap (max - min of the family means) with its bootstrap interval.
- ``control_checks(rows)``: the oracle controls must score 1.0 on every metric that has a 1.0 to
  reach (AUROC, precision/recall, faithfulness, IIA, IIA on changed outputs, overlap; CPR/CMD
  are areas over every circuit size and sit below 1 even for the oracle), and ``random`` must
  sit at chance: its AUROC interval contains 0.5. A failed check means the evaluation is
  broken, and the summary says so first. On ``trained`` cells the oracle is not held to
  circuit faithfulness: a trained model's planted ground truth fixes where each variable lives
  (a site and a subspace), not which heads or units compute it, so keeping only the planted
  sites need not reproduce the model; nor to IIA 1.0, since the planted alignment's IIA is the
  trained model's own, measured on its card (:data:`NOT_PLANTED_IN_TRAINED`). Cells not run
  (``refused``, ``missing``) are counted apart and never fail a check.
"""

from __future__ import annotations

import math

import numpy as np

from .metrics import bootstrap_ci, bootstrap_gap

ORACLE_METRICS = ("auroc", "auroc_signed", "precision_at_k", "recall_at_k", "faithfulness_at_k", "iia", "iia_changed", "overlap", "precision", "recall", "faithfulness",
                  "edge_precision", "edge_recall")
# on trained cells: circuit faithfulness is not planted, and an alignment's IIA is the model's own
# (>= 0.95 when it reached its targets, lower when it missed): see the module doc
NOT_PLANTED_IN_TRAINED = ("faithfulness_at_k", "faithfulness", "iia", "iia_changed")
NOT_RUN = ("refused", "missing")  # a compiler refused the pair / the trained model is not in the store
HEADLINE = {"site_scores": "node AUROC", "alignment": "IIA", "circuit": "faithfulness"}


def _ok(rows):
    return [r for r in rows if r.get("status") == "ok"]


def _vals(rows, key="score"):
    return [r[key] for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]


def summarize(rows, seed: int = 0) -> dict:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    families = list(dict.fromkeys(r["family"] for r in rows))
    out = {"methods": {}, "families": families, "checks": control_checks(rows, seed=seed)}
    for m in methods:
        mr = [r for r in rows if r["method"] == m]
        ok = _ok(mr)
        per_family = {f: bootstrap_ci(_vals([r for r in ok if r["family"] == f]), seed=seed) for f in families}
        gap = bootstrap_gap({f: _vals([r for r in ok if r["family"] == f]) for f in families}, seed=seed)
        kinds = list(dict.fromkeys(r.get("finding") for r in ok if r.get("finding")))
        extra = {}
        for key in ("auroc", "auroc_signed", "edge_auroc", "edge_precision", "edge_recall", "precision_at_k", "faithfulness_at_k", "cpr", "cmd", "iia_changed", "overlap", "precision", "recall"):
            v = _vals(ok, key)
            if v:
                extra[key] = float(np.mean(v))
        out["methods"][m] = {
            "finding": kinds[0] if kinds else None,
            "metric": HEADLINE.get(kinds[0], "score") if kinds else "score",
            "score": bootstrap_ci(_vals(ok), seed=seed),
            "per_family": per_family,
            "gap": gap,
            "cells": len(mr),
            "failed": sum(r.get("status") not in ("ok", *NOT_RUN) for r in mr),
            "refused": sum(r.get("status") == "refused" for r in mr),
            "seconds": float(sum(r.get("seconds", 0.0) for r in mr)),
            "extra": extra,
        }
    return out


def control_checks(rows, seed: int = 0) -> list[dict]:
    """One dict per check: name, passed, detail (see module doc)."""
    checks = []
    for m in sorted({r["method"] for r in rows if r["method"].startswith("oracle")}):
        ok = _ok([r for r in rows if r["method"] == m])
        bad = [(f"{r['task']}/{r['family']}/{r['kind']}", k, r[k]) for r in ok for k in ORACLE_METRICS
               if isinstance(r.get(k), (int, float)) and abs(r[k] - 1.0) > 1e-4 and not (r["kind"] == "trained" and k in NOT_PLANTED_IN_TRAINED)]
        failed = [r for r in rows if r["method"] == m and r.get("status") not in ("ok", *NOT_RUN)]
        passed = not bad and not failed and bool(ok)
        detail = "1.0 on every metric of every cell" if passed else (
            f"{len(bad)} values below 1.0, e.g. {bad[:3]}" if bad else f"{len(failed)} cells failed" if failed else "no finished cells")
        checks.append({"name": f"{m} scores 1.0", "passed": passed, "detail": detail})
    if any(r["method"] == "random" for r in rows):
        vals = _vals(_ok([r for r in rows if r["method"] == "random"]), "auroc")
        point, lo, hi = bootstrap_ci(vals, seed=seed)
        passed = bool(vals) and lo <= 0.5 <= hi
        checks.append({"name": "random sits at chance", "passed": passed,
                       "detail": f"AUROC {point:.3f} [{lo:.3f}, {hi:.3f}] over {len(vals)} cells (must contain 0.5)"})
    return checks


def broken(summary) -> bool:
    return any(not c["passed"] for c in summary["checks"])


def fmt_ci(t) -> str:
    point, lo, hi = t
    if not math.isfinite(point):
        return "n/a"
    return f"{point:.3f} [{lo:.2f}, {hi:.2f}]"


def leaderboard_rows(summary) -> list[list[str]]:
    """Header + one row per method, best headline score first."""
    fams = summary["families"]
    head = ["method", "finding", "metric", "score [95% CI]", *fams, "arch gap [95% CI]", "cells", "failed", "refused", "seconds"]
    items = sorted(summary["methods"].items(), key=lambda kv: -(kv[1]["score"][0] if math.isfinite(kv[1]["score"][0]) else -1))
    rows = [head]
    for m, s in items:
        rows.append([m, s["finding"] or "-", s["metric"], fmt_ci(s["score"]), *[fmt_ci(s["per_family"][f]) for f in fams], fmt_ci(s["gap"]),
                     str(s["cells"]), str(s["failed"]), str(s["refused"]), f"{s['seconds']:.1f}"])
    return rows


def text_table(rows) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_text(summary) -> str:
    lines = []
    if broken(summary):
        lines.append("THE EVALUATION IS BROKEN: a control check failed (see below); do not trust these scores.\n")
    lines.append(text_table(leaderboard_rows(summary)))
    changed = {m: s["extra"]["iia_changed"] for m, s in summary["methods"].items() if "iia_changed" in s["extra"]}
    if changed:  # beside an alignment's headline IIA, which also counts the outputs its patches leave alone
        lines.append("IIA on changed outputs only: " + ", ".join(f"{m} {v:.3f}" for m, v in sorted(changed.items(), key=lambda kv: -kv[1])))
    lines.append("")
    for c in summary["checks"]:
        lines.append(f"[{'ok' if c['passed'] else 'FAILED'}] {c['name']}: {c['detail']}")
    lines.append(NA_NOTE)
    return "\n".join(lines)


NA_NOTE = ("n/a: no defined score; node AUROC is undefined where every site is in the ground-truth circuit (most RNNs: every layer holds a variable), "
           "and the arch gap is taken over the families that have a score. refused: a compiler refused the (task, family) pair; "
           "a trained model not yet in the store is a missing cell (not failed), evaluated by the next run.")
