"""Site-interface overhead: ``run`` caching every site against the plain forward, per family.

    python -m benchmarks.sites [--batch 256] [--repeats 20]

Measured side by side in one run on a compiled model per (task, family): the plain
``model(tokens)`` (the fast path), ``model.run(tokens)`` (the tapped path, nothing cached) and
``model.run(tokens, cache=every site)``. Target: caching every site costs at most 1.3x the plain
forward.
"""

from __future__ import annotations

import argparse
import time

import torch

import tasks
import zoo

TASKS = ("parity", "induction", "sort")


def best(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{'task':<12} {'family':<12} {'forward ms':>11} {'run ms':>8} {'run+cache ms':>13} {'cache/forward':>14}")
    worst = 0.0
    with torch.no_grad():
        for name in TASKS:
            task = tasks.get(name)
            tokens = torch.as_tensor(task.sample(args.batch, seed=0).tokens)
            for family in zoo.FAMILIES:
                try:
                    model = zoo.compile(task, family)
                except zoo.CompileError:
                    continue
                every = [s.name for s in model.sites]
                plain = best(lambda: model(tokens), args.repeats)
                tapped = best(lambda: model.run(tokens), args.repeats)
                cached = best(lambda: model.run(tokens, cache=every), args.repeats)
                worst = max(worst, cached / plain)
                print(f"{name:<12} {family:<12} {plain * 1e3:>11.2f} {tapped * 1e3:>8.2f} {cached * 1e3:>13.2f} {cached / plain:>13.2f}x")
    print(f"worst overhead of caching every site: {worst:.2f}x the plain forward (target <= 1.3x)")
    return 0 if worst <= 1.3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
