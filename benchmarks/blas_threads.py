"""Seconds of the zoo's typical numpy linear algebra (a 260-wide ridge solve, as a probe does)
with the BLAS's default threads and with one (``zoo.threads.one_blas_thread``), side by side.

    python -m benchmarks.blas_threads [--width 260] [--repeats 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from zoo.threads import one_blas_thread


def _solve_seconds(width: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((15 * 64, width))
    A, B = X.T @ X + np.eye(width), rng.standard_normal((width, 5))
    start = time.perf_counter()
    for _ in range(repeats):
        np.linalg.solve(A, B)
    return (time.perf_counter() - start) / repeats


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.blas_threads")
    parser.add_argument("--width", type=int, default=260)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    default = _solve_seconds(args.width, args.repeats)
    with one_blas_thread():
        one = _solve_seconds(args.width, args.repeats)
    print(f"{args.width}-wide solve: default threads {default * 1000:.2f} ms, one thread {one * 1000:.2f} ms, ratio {default / one:.1f}x")


if __name__ == "__main__":
    main()
