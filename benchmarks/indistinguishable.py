"""Which program variables the output protocol cannot tell apart, and whether decodability can.

    python -m benchmarks.indistinguishable [--tasks ...] [--archs ...] [--n 128]

For every compiled model (with decoys) and every pair (V, W) of program variables, V is aligned
to W's ground-truth location; the pair is listed when that scores IIA on changed outputs of at
least 0.99 (``evaluation.alignment_scores.indistinguishable``): under the same-position readout
a variable and a function of it read at that position (a count and its parity) reproduce the
same counterfactuals. The last column is V's decodability from W's location (a
nearest-class-mean decoder on the projection): below 1, the location does not determine V, and
the evaluator's ``decodes`` score tells them apart; at 1, nothing does (the variables carry the
same information there).
"""

from __future__ import annotations

import argparse

import torch


def main(argv=None) -> None:
    import tasks
    import zoo
    from evaluation.alignment_scores import indistinguishable

    parser = argparse.ArgumentParser(prog="python -m benchmarks.indistinguishable")
    parser.add_argument("--tasks", nargs="*", default=None)
    parser.add_argument("--archs", nargs="*", default=None)
    parser.add_argument("--n", type=int, default=128)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{'task':<18} {'family':<12} {'variable':<14} {'at the location of':<20} {'IIA changed':>11} {'decodes':>8}")
    for name in args.tasks or tasks.names():
        task = tasks.get(name).with_decoys()
        for family in args.archs or zoo.FAMILIES:
            try:
                model = zoo.compile(name, family, decoys=True)
            except zoo.CompileError:
                continue
            for row in indistinguishable(model, task, model.ground_truth, n=args.n):
                tell = "" if row["decodes"] < 0.99 else "  (not separable)"
                print(f"{name:<18} {family:<12} {row['variable']:<14} {row['at']:<20} {row['iia_changed']:>11.3f} {row['decodes']:>8.3f}{tell}")


if __name__ == "__main__":
    main()
