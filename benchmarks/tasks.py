"""Interpreter throughput: examples/s for running programs and for counterfactuals, per task.

    python -m benchmarks.tasks [--batch 4096] [--repeats 5]

Every task at its max length, one core (BLAS threads pinned to 1). A counterfactual example is
one (base, source, variable, position) case: both inputs evaluated, the intervention applied,
the outputs and the counted-position mask returned. Target: >= 100,000 counterfactual
examples/s per task.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import tasks  # noqa: E402

TARGET = 100_000


def best_rate(fn, n: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return n / min(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    n = args.batch
    print(f"{'task':<18} {'L':>3} {'vars':>4} {'run ex/s':>12} {'counterfactual ex/s':>20}  target {TARGET:,}")
    worst = float("inf")
    for name in tasks.names():
        task = tasks.get(name)
        base, source, variable, position = task.sample_interventions(n, seed=0)
        variables = task.program.names
        run_rate = best_rate(lambda: task.targets(base), n, args.repeats)

        def all_counterfactuals():  # one call per variable, n examples each
            for v in variables:
                task.counterfactual(base, source, v, position)

        cf_rate = best_rate(all_counterfactuals, n * len(variables), args.repeats)
        worst = min(worst, cf_rate)
        flag = "" if cf_rate >= TARGET else "  BELOW TARGET"
        print(f"{name:<18} {task.max_len:>3} {len(variables):>4} {run_rate:>12,.0f} {cf_rate:>20,.0f}{flag}")
    print(f"slowest task: {worst:,.0f} counterfactual examples/s ({worst / TARGET:.1f}x the target)")
    return 0 if worst >= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
