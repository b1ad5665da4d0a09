"""How many random programs the exactness properties compile and check per family, and in what time.

    python -m benchmarks.random_programs            # the default suite's example counts
    python -m benchmarks.random_programs --slow     # the `pytest -m slow` counts

Runs tests/test_random_programs.py's ``exactness`` (the same derandomized draws the tests make)
for every family and kind and prints, per (family, kind): models drawn and checked, programs
the family refused (by primitive), wall-clock and CPU seconds. A failure raises, as in the
tests. Run from the repository root (it imports the tests package).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import torch

import zoo


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", action="store_true", help="the slow suite's example counts")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from tests.test_random_programs import EXAMPLES, SLOW_EXAMPLES, exactness

    counts = SLOW_EXAMPLES if args.slow else EXAMPLES
    print(f"{'family':<12} {'kind':<15} {'checked':>8} {'refused':>8} {'wall s':>8} {'cpu s':>7}  refused primitives")
    total_wall = total_cpu = 0.0
    for kind in ("compiled", "reparametrized"):
        for family in zoo.FAMILIES:
            stats: Counter = Counter()
            wall, cpu = time.perf_counter(), time.process_time()
            exactness(family, kind, counts[kind], stats)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            total_wall, total_cpu = total_wall + wall, total_cpu + cpu
            why = ", ".join(f"{k[2]} {v}" for k, v in sorted(stats.items()) if len(k) == 3)
            print(f"{family:<12} {kind:<15} {stats[family, 'checked']:>8} {stats[family, 'refused']:>8} {wall:>8.1f} {cpu:>7.1f}  {why}")
    print(f"all: {total_wall:.1f} s wall, {total_cpu:.1f} s CPU; no counterexample (a failure would have raised)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
