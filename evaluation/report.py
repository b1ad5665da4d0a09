"""``zoo report DIR``: DIR/report.md and a static DIR/report.html from DIR/results.jsonl.

The page has no server, no script and no CDN: the leaderboard, the per-family table, the control
checks, the cells, and for each model (task, family, kind) one figure with every SiteScores
method's |score| heatmap (sites x positions) beside the ground-truth circuit, embedded as base64
PNG (matplotlib, Agg backend). The Markdown file links the same PNGs written to DIR/plots/.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np

from .grid import read_results
from .summary import NA_NOTE, broken, leaderboard_rows, summarize


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if math.isfinite(v) else "n/a"
    return "n/a" if v is None else str(v)


CELL_COLUMNS = ("method", "task", "family", "kind", "status", "score", "auroc", "auroc_signed", "precision_at_k", "faithfulness_at_k", "cpr", "cmd",
                "iia", "iia_changed", "overlap", "faithfulness", "seconds")


def heatmap_png(model_rows) -> bytes:
    """One figure: a heatmap per SiteScores method (|score|, each scaled to its max) and the
    ground truth (1 on circuit sites at every position)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sites = model_rows[0]["sites"]
    T = len(next(iter(model_rows[0]["site_scores"].values())))
    panels = []
    for r in model_rows:
        m = np.asarray([np.abs(r["site_scores"].get(s, [0.0] * T)) for s in sites], float)
        panels.append((r["method"], m / m.max() if m.max() > 0 else m))
    truth = set(model_rows[0]["truth_sites"])
    panels.append(("ground truth", np.asarray([[1.0 if s in truth else 0.0] * T for s in sites])))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.0 + 1.6 * len(panels), 0.6 + 0.22 * len(sites)), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, (title, mat) in zip(axes, panels):
        ax.imshow(mat, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=7)
        ax.set_xlabel("position", fontsize=6)
        ax.tick_params(labelsize=5)
    axes[0].set_yticks(range(len(sites)))
    axes[0].set_yticklabels(sites, fontsize=5)
    r0 = model_rows[0]
    fig.suptitle(f"{r0['task']} / {r0['family']} / {r0['kind']}", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def _models(rows):
    groups: dict = {}
    for r in rows:
        if r.get("status") == "ok" and r.get("site_scores"):
            groups.setdefault((r["task"], r["family"], r["kind"]), []).append(r)
    return groups


def family_kind_rows(rows, summary):
    fams = summary["families"]
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    head = ["method", "kind", *fams]
    out = [head]
    for m in summary["methods"]:
        for k in kinds:
            vals = []
            for f in fams:
                v = [r["score"] for r in rows if r["method"] == m and r["kind"] == k and r["family"] == f and r.get("status") == "ok"
                     and isinstance(r.get("score"), (int, float))]
                vals.append(f"{np.mean(v):.3f}" if v else "n/a")
            out.append([m, k, *vals])
    return out


def _md_table(rows) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def _html_table(rows) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(out, plots: bool = True, max_plots: int = 60) -> dict:
    """Write ``out/report.md`` and ``out/report.html``; returns the summary."""
    out = Path(out)
    rows = read_results(out)
    if not rows:
        raise FileNotFoundError(f"no results in {out / 'results.jsonl'}; run `zoo evaluate --method M --out {out}` (or `zoo demo`) first")
    summary = summarize(rows)
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines() if line.strip()] if (out / "runs.jsonl").exists() else []
    lb, fk = leaderboard_rows(summary), family_kind_rows(rows, summary)
    cells = [list(CELL_COLUMNS)] + [[_fmt(r.get(c)) for c in CELL_COLUMNS] for r in rows]
    checks = summary["checks"]
    banner = "THE EVALUATION IS BROKEN: a control check failed; do not trust these scores." if broken(summary) else "Control checks passed."
    notes = sorted({n for run in runs for n in run.get("notes", [])})
    last = runs[-1] if runs else {}
    figures = []
    if plots:
        (out / "plots").mkdir(exist_ok=True)
        for (task, fam, kind), mrows in list(_models(rows).items())[:max_plots]:
            png = heatmap_png(mrows)
            name = f"{task}-{fam}-{kind}.png"
            (out / "plots" / name).write_bytes(png)
            figures.append((f"{task} / {fam} / {kind}", name, base64.b64encode(png).decode()))
    intro = ("Headline score per method: node AUROC of SiteScores against the ground-truth circuit (components: sites that are not "
             "residual streams or embeddings), IIA of an Alignment on held-out pairs, faithfulness of a Circuit. Intervals: 95% "
             "bootstrap over cells (tasks x kinds); arch gap = max - min of the family means. " + NA_NOTE)
    meta = f"versions {last.get('versions')}, machine {last.get('machine')}, seed {last.get('seed')}, ablation {last.get('ablation')}"
    md = [f"# Evaluation report: {out}", "", f"**{banner}**", "", intro, "", "## Leaderboard", "", _md_table(lb), "", "## Per family and kind", "",
          _md_table(fk), "", "## Control checks", ""]
    md += [f"- [{'ok' if c['passed'] else 'FAILED'}] {c['name']}: {c['detail']}" for c in checks]
    md += ["", "## Run", "", meta] + [f"- note: {n}" for n in notes] + ["", "## Cells", "", _md_table(cells), "", "## Heatmaps (|score| per site and position, beside the ground truth)", ""]
    md += [f"![{t}](plots/{n})" for t, n, _ in figures]
    (out / "report.md").write_text("\n".join(md) + "\n")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;font-size:14px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}.bad{color:#b00;font-weight:bold}.good{color:#070}")
    h = [f"<!doctype html><html><head><meta charset='utf-8'><title>Evaluation report</title><style>{style}</style></head><body>",
         f"<h1>Evaluation report</h1><p class='{'bad' if broken(summary) else 'good'}'>{html.escape(banner)}</p><p>{html.escape(intro)}</p>",
         "<h2>Leaderboard</h2>", _html_table(lb), "<h2>Per family and kind</h2>", _html_table(fk), "<h2>Control checks</h2><ul>"]
    h += [f"<li class='{'good' if c['passed'] else 'bad'}'>{html.escape(c['name'])}: {html.escape(c['detail'])}</li>" for c in checks]
    h += ["</ul><h2>Run</h2><p>", html.escape(meta), "</p>"] + [f"<p>note: {html.escape(n)}</p>" for n in notes]
    h += ["<h2>Heatmaps</h2><p>|score| per site and position (each method scaled to its max), beside the ground-truth circuit.</p>"]
    h += [f"<figure><img alt='{html.escape(t)}' src='data:image/png;base64,{b}'/></figure>" for t, _, b in figures]
    h += ["<h2>Cells</h2>", _html_table(cells), "</body></html>"]
    (out / "report.html").write_text("".join(h))
    return summary
