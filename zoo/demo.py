"""``zoo demo``: the whole loop on a laptop CPU in well under a minute.

Compile three tasks into all three families (and a reparametrised twin of each: rotated and
permuted bases, ground truth moved along), run two methods (activation patching, linear probes)
plus the controls (random and oracle, for site scores and for alignments), score every finding
against the planted ground truth, print the leaderboard and the control checks, and write
``report.md`` / ``report.html`` to ``out`` (default ``./zoo-demo``). Rerunning into the same
directory resumes: finished cells are read back, not recomputed.
"""

from __future__ import annotations

import time

DEMO_TASKS = ("parity", "induction", "dyck1")
DEMO_METHODS = ("activation_patching", "probes")  # plus every control: random, the oracles, the degenerate baselines


def run_demo(out="zoo-demo", task_names=DEMO_TASKS, method_names=DEMO_METHODS, seed: int = 0, print_fn=print, quiet: bool = False) -> dict:
    import torch

    import evaluation  # lazily: nothing in zoo imports evaluation at import time

    torch.set_num_threads(1)  # the models are tiny: extra threads only add overhead on shared cores
    from evaluation.report import write_report
    from evaluation.summary import render_text

    start = time.perf_counter()
    from methods.registry import CONTROLS

    print_fn(f"zoo demo: {len(task_names)} tasks x 3 families x (compiled, reparametrized), methods {', '.join(method_names)} and the controls")
    evaluation.evaluate(list(method_names), list(task_names), None, kinds=("compiled", "reparametrized"), out=out, seed=seed, time_limit=120,
                        n_pairs=128, progress=(lambda s: None) if quiet else print_fn)
    summary = write_report(out)
    rows = evaluation.read_results(out)
    wanted = [r for r in rows if (r["method"] in method_names or r["method"] in CONTROLS) and r["task"] in task_names]
    summary = evaluation.summarize(wanted)
    print_fn("")
    print_fn(render_text(summary))
    print_fn(f"\nreport: {out}/report.html and {out}/report.md  ({time.perf_counter() - start:.1f} s)")
    return summary
