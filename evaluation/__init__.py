"""Evaluation: does an interpretability method recover the planted algorithm?

- :mod:`evaluation.metrics`: AUROC, precision/recall, faithfulness, CPR/CMD, IIA and subspace
  overlap, bootstrap intervals (each function states its definition).
- :mod:`evaluation.grid`: ``evaluate(methods, tasks, archs, kinds, out=DIR)``, one JSON line per
  (method, task, family, kind) cell in DIR/results.jsonl, resumable.
- :mod:`evaluation.summary`: per-method scores per family, the architecture gap, control checks.
- :mod:`evaluation.report`: DIR/report.md and a static DIR/report.html with heatmaps.
"""

from .grid import evaluate, evaluate_cell, read_results
from .summary import control_checks, render_text, summarize

__all__ = ["evaluate", "evaluate_cell", "read_results", "summarize", "control_checks", "render_text", "write_report"]


def write_report(out, **kwargs):
    from .report import write_report as _write

    return _write(out, **kwargs)
