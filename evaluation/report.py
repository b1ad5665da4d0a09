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
from .summary import NA_NOTE, broken, fixed, leaderboard_rows, summarize


def _fmt(v) -> str:
    if isinstance(v, float):
        return fixed(v) if math.isfinite(v) else "n/a"
    return "n/a" if v is None else str(v)


NO_CONTROLS = "No controls ran, so nothing checks the evaluator: add --method random --method oracle (or their _alignment / _circuit kin)."
HEATMAP_NOTE = ("|score| per site and position, one panel per SiteScores method, beside the ground-truth circuit. Each panel has its own "
                "log scale, from 1/1000 of its maximum up to it (its colour bar says the values): methods score in different units.")
UNFINISHED_COLUMNS = ("method", "task", "family", "kind", "status", "error")
CELL_COLUMNS = ("method", "task", "family", "kind", "status", "score", "auroc", "auroc_signed", "precision_at_k", "faithfulness_at_k", "cpr", "cmd",
                "iia", "iia_changed", "overlap", "faithfulness", "seconds")


FONT = 10  # points: figure text read at the PNG's own size (100 dpi)
LOG_FLOOR = 1e-3  # heatmaps colour |score| on a log scale from max * LOG_FLOOR to max
PANELS_PER_ROW = 4


def heatmap_png(model_rows) -> bytes:
    """One figure: a heatmap of |score| per SiteScores method (site x position) beside the
    ground-truth circuit. Each method's panel has its own scale, said in its colour bar: methods
    score in different units (a logit difference, a probability, a random number), so one scale
    would hide all but one of them. The scale is logarithmic, from 1/1000 of the panel's maximum
    up to it (zero and anything below is the bottom colour): node AUROC ranks the scores, and on a
    linear scale a site scoring 1/15 of the maximum looks like one scoring nothing. A method whose
    panel would repeat the ground truth (the oracle) is named in the ground truth's title instead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap, LogNorm

    sites = model_rows[0]["sites"]
    panels, gt, same_as_truth = heatmap_panels(model_rows)
    T = gt.shape[1]
    n = len(panels) + 1
    cols = min(n, PANELS_PER_ROW)
    rows = -(-n // cols)
    width = max(3.0, 0.2 * T + 1.6)
    fig, grid = plt.subplots(rows, cols, figsize=(1.6 + width * cols, rows * (1.2 + 0.3 * len(sites)) + 0.4), squeeze=False)
    for ax in grid.flat[n:]:
        ax.set_visible(False)
    axes = list(grid.flat[: n - 1]) + [grid.flat[n - 1]]
    for ax, (title, mat) in zip(axes, panels):
        top = mat.max()
        norm = LogNorm(vmin=top * LOG_FLOOR, vmax=top, clip=True) if top > 0 else None
        shown = np.where(mat > 0, mat, top * LOG_FLOOR) if top > 0 else mat
        im = ax.imshow(shown, aspect="auto", cmap="viridis", norm=norm, interpolation="nearest")
        bar = fig.colorbar(im, ax=ax, fraction=0.08, pad=0.03)
        bar.ax.tick_params(labelsize=FONT - 2)
        bar.set_label("|score| (log; this panel)", fontsize=FONT - 1)
        ax.set_title(title, fontsize=FONT + 1)
    ax = axes[-1]
    im = ax.imshow(gt, aspect="auto", cmap=ListedColormap(["#ffffff", "#e0e0e0", "#d95f02"]), vmin=-1.5, vmax=1.5, interpolation="nearest")
    bar = fig.colorbar(im, ax=ax, fraction=0.08, pad=0.03, ticks=[-1, 0, 1])
    bar.ax.set_yticklabels(["neither", "outside", "circuit"], fontsize=FONT - 1)
    ax.set_title("ground truth" + (f" (= {', '.join(same_as_truth)})" if same_as_truth else ""), fontsize=FONT + 1)
    for ax in axes:
        ax.set_xlabel("position", fontsize=FONT)
        ax.set_xticks(range(0, T, max(1, T // 8)))
        ax.tick_params(labelsize=FONT - 1)
    for k, ax in enumerate(axes):
        ax.set_yticks(range(len(sites)))
        ax.set_yticklabels(sites if k % cols == 0 else [], fontsize=FONT - 1)
    r0 = model_rows[0]
    fig.suptitle(f"{r0['task']} / {r0['family']} / {r0['kind']}", fontsize=FONT + 2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def heatmap_panels(model_rows) -> tuple[list[tuple[str, np.ndarray]], np.ndarray, list[str]]:
    """What :func:`heatmap_png` draws: ``(method, |score| [sites, T])`` per method whose panel
    differs from the ground truth, the ground truth (1 circuit, 0 outside, -1 neither, per row and
    position, from the cell's ``truth_cells``; else 1 on circuit sites), and the methods whose
    panel would only repeat it (scaled to their maximum, the same matrix: the oracle)."""
    sites = model_rows[0]["sites"]
    T = len(next(iter(model_rows[0]["site_scores"].values())))
    cells = model_rows[0].get("truth_cells")
    if cells:  # per (component, position): 1 circuit, 0 outside, -1 neither
        gt = np.asarray([list(cells.get(s, [0] * T))[:T] + [0] * max(0, T - len(cells.get(s, []))) for s in sites], float)
    else:
        truth = set(model_rows[0]["truth_sites"])
        gt = np.asarray([[1.0 if s in truth else 0.0] * T for s in sites])
    panels, same_as_truth = [], []
    for r in model_rows:
        m = np.asarray([np.abs(r["site_scores"].get(s, [0.0] * T)) for s in sites], float)
        if m.max() > 0 and np.array_equal(m / m.max(), (gt == 1).astype(float)):
            same_as_truth.append(r["method"])
        else:
            panels.append((r["method"], m))
    return panels, gt, same_as_truth


def _check_label(check) -> str:
    return "not run" if check["passed"] is None else "ok" if check["passed"] else "FAILED"


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
                vals.append(fixed(float(np.mean(v))) if v else "n/a")
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
    ran = [c for c in checks if c["passed"] is not None]  # passed None: that control did not run
    banner = ("THE EVALUATION IS BROKEN: a control check failed; do not trust these scores." if broken(summary) else
              NO_CONTROLS if not ran else "Control checks passed." if len(ran) == len(checks) else
              f"Control checks passed ({len(ran)} of {len(checks)}; the others did not run).")
    unfinished = [list(UNFINISHED_COLUMNS)] + [[_fmt(r.get(c)) for c in UNFINISHED_COLUMNS] for r in rows if r.get("status") != "ok"]
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
    md += [f"- [{_check_label(c)}] {c['name']}: {c['detail']}" for c in checks] or [f"- {NO_CONTROLS}"]
    md += ["", "## Run", "", meta] + [f"- note: {n}" for n in notes]
    md += ["", "## Cells that did not finish", "", _md_table([[c.replace("|", "\\|").replace("\n", " ") for c in r] for r in unfinished])] if len(unfinished) > 1 else []
    md += ["", "## Cells", "", _md_table(cells), "", "## Heatmaps", "", HEATMAP_NOTE, ""]
    md += [f"![{t}](plots/{n})" for t, n, _ in figures]
    (out / "report.md").write_text("\n".join(md) + "\n")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;font-size:14px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}.bad{color:#b00;font-weight:bold}.good{color:#070}")
    h = [f"<!doctype html><html><head><meta charset='utf-8'><title>Evaluation report</title><style>{style}</style></head><body>",
         f"<h1>Evaluation report</h1><p class='{'bad' if broken(summary) else 'good'}'>{html.escape(banner)}</p><p>{html.escape(intro)}</p>",
         "<h2>Leaderboard</h2>", _html_table(lb), "<h2>Per family and kind</h2>", _html_table(fk), "<h2>Control checks</h2><ul>"]
    h += [f"<li class='{'good' if c['passed'] else 'bad' if c['passed'] is False else ''}'>[{_check_label(c)}] {html.escape(c['name'])}: {html.escape(c['detail'])}</li>"
          for c in checks] or [f"<li>{html.escape(NO_CONTROLS)}</li>"]
    h += ["</ul><h2>Run</h2><p>", html.escape(meta), "</p>"] + [f"<p>note: {html.escape(n)}</p>" for n in notes]
    h += ["<h2>Cells that did not finish</h2>", _html_table(unfinished)] if len(unfinished) > 1 else []
    h += ["<h2>Heatmaps</h2><p>" + html.escape(HEATMAP_NOTE) + "</p>"]
    h += [f"<figure><img alt='{html.escape(t)}' src='data:image/png;base64,{b}'/></figure>" for t, _, b in figures]
    h += ["<h2>Cells</h2>", _html_table(cells), "</body></html>"]
    (out / "report.html").write_text("".join(h))
    return summary
