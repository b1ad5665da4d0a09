"""The ``zoo`` command line. Errors print one line and exit non-zero (2), no traceback."""

from __future__ import annotations

import argparse
import sys

import tasks


def cmd_tasks(args) -> None:
    if args.name:
        task = tasks.get(args.name)
        print(f"{task.name}: {task.doc}")
        print(f"vocabulary ({len(task.vocab)}): {' '.join(task.vocab)}   max_len: {task.max_len}   mode: {task.mode}")
        print(f"output classes ({task.n_classes}): {', '.join(map(str, task.classes))}\n")
        print(task.program.describe())
        return
    from zoo import FAMILIES
    from zoo.bounds import length_bound
    from zoo.support import primitive_table, task_table

    by_task = task_table()
    rows = [("task", "vocab", "max_len", "variables", "mode", "classes", *FAMILIES)]
    for name in tasks.names():
        t = tasks.get(name)
        compiled = ["exact" if by_task[(name, f)] is None else f"refused ({by_task[(name, f)]})" for f in FAMILIES]
        rows.append((name, str(len(t.vocab)), str(t.max_len), str(len(t.program)), t.mode, str(t.n_classes), *compiled))
    _table(rows)
    print("\nprimitive x family (exact: every task using it compiles exactly, up to the length bound of the family's")
    print("construction, m = the largest |value| a count or sum adds; refused: a compiler refuses it):\n")
    prims = primitive_table(by_task)
    cell = lambda p, f: f"exact ({length_bound(f, p)})" if prims[p][f] == "exact" else prims[p][f]  # noqa: E731
    _table([("primitive", *FAMILIES)] + [(p, *(cell(p, f) for f in FAMILIES)) for p in sorted(prims)])
    print("\n`zoo tasks NAME` prints a task's program.")


def cmd_compile(args) -> None:
    import time

    import zoo

    task = tasks.get(args.task)
    start = time.perf_counter()
    model = zoo.compile(task, args.arch, max_len=args.max_len, seed=args.seed)
    seconds = time.perf_counter() - start
    params = model.num_parameters()
    print(f"{args.arch} for {task.name} (max_len {model.max_len}): {params:,} parameters, compiled in {seconds * 1000:.1f} ms")
    print("\nsites:")
    for s in model.sites:
        print(f"  {s.name:<18} layer {s.layer}  {s.kind:<10} width {s.width}{'  (recurrent)' if s.recurrent else ''}")
    print("\nwhere each variable lives:")
    for name, loc in model.ground_truth.variables.items():
        print(f"  {name:<14} {loc.site:<18} {loc.dim}-dim subspace")
    for name, loc in model.ground_truth.stages.items():
        print(f"  {name:<14} {loc.site:<18} {loc.dim}-dim subspace  (a stage of {model.ground_truth.stage_of[name]})")
    print(f"\ncircuit: {', '.join(model.ground_truth.circuit)}")
    if args.out:
        model.save(args.out)
        print(f"saved to {args.out}")


def cmd_check(args) -> None:
    from zoo import store, verify

    model = store.load(args.dir)
    task = tasks.get(model.meta["task"], max_len=model.meta.get("max_len"))
    report = verify.check(model, task, n=args.n, seed=args.seed)
    print(f"{args.dir}: {model.family} model for {task.name}")
    for line in report.lines():
        print("  " + line)
    if model.meta.get("kind") == "compiled" and not report.exact:
        raise ValueError(f"compiled model in {args.dir} is not exact (accuracy {report.accuracy:.4f}); re-create it with zoo compile")
    print("OK" if report.exact else "done")


def cmd_demo(args) -> None:
    from zoo.demo import run_demo

    return _broken_exit(run_demo(out=args.out, seed=args.seed))


def cmd_evaluate(args) -> None:
    import torch

    import evaluation
    from evaluation.summary import render_text

    torch.set_num_threads(args.threads)

    if args.budget is not None:
        print("zoo: --budget is now --time-limit (seconds per method call); a method's own budget (inputs) is --method-budget", file=sys.stderr)
    grid = args.kinds or ("" if args.model and not (args.task or args.arch) else "compiled,reparametrized")  # --model alone: only those models
    kinds = tuple(k.strip() for k in grid.split(",") if k.strip())
    rows = evaluation.evaluate(args.method, args.task or None, args.arch or None, kinds=kinds, out=args.out, seed=args.seed, store=args.store,
                               time_limit=args.time_limit if args.time_limit is not None else args.budget, method_budget=args.method_budget,
                               ablation=args.ablation, controls=not args.no_controls, models=args.model or ())
    summary = evaluation.summarize(rows)
    print()
    print(render_text(summary))
    print(f"\nresults: {args.out}/results.jsonl  (`zoo report {args.out}` writes the report)")
    return _broken_exit(summary)


BROKEN_EXIT = 3  # the exit status of a run whose control checks failed


def _broken_exit(summary) -> int:
    from evaluation.summary import broken

    if broken(summary):
        print("zoo: error: the evaluation is broken (a control check failed, see above); its scores are not to be trusted", file=sys.stderr)
        return BROKEN_EXIT
    return 0


def cmd_report(args) -> None:
    from evaluation.report import write_report

    write_report(args.dir, plots=not args.no_plots)
    print(f"wrote {args.dir}/report.md and {args.dir}/report.html")


def _table(rows) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description="A toy-model zoo with ground-truth circuits.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("tasks", help="list the tasks, or print one task's program")
    p.add_argument("name", nargs="?", help="a task name")
    p.set_defaults(func=cmd_tasks)
    p = sub.add_parser("compile", help="compile a task into exact weights for one family")
    p.add_argument("task")
    p.add_argument("--arch", required=True, help="transformer, rnn or ssm")
    p.add_argument("--max-len", type=int, default=None, help="compile for inputs of at most this length")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="directory to save the model to")
    p.set_defaults(func=cmd_compile)
    p = sub.add_parser("check", help="re-verify a saved model: hashes, accuracy, ground-truth IIA")
    p.add_argument("dir")
    p.add_argument("-n", type=int, default=512, help="examples per check")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("demo", help="the whole loop on a laptop CPU in about a minute")
    p.add_argument("--out", default="zoo-demo", help="directory for results and the report (default ./zoo-demo)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("evaluate", help="score methods against the ground truth over a grid of models (resumable)")
    p.add_argument("--method", action="append", required=True, help="a method name or import path pkg.mod:fn (repeatable)")
    p.add_argument("--task", action="append", help="a task (repeatable; default every task)")
    p.add_argument("--arch", action="append", help="transformer, rnn or ssm (repeatable; default all)")
    p.add_argument("--kinds", default=None, help="comma-separated: compiled, reparametrized, trained (default compiled,reparametrized; none with --model alone)")
    p.add_argument("--model", action="append", metavar="DIR", help="a saved model (zoo compile/train --out, model.save) to score, its task, family and kind from its config (repeatable)")
    p.add_argument("--store", default=None, help="the zoo store trained models are read from (default: zoo build's)")
    p.add_argument("--out", required=True, help="directory for results.jsonl (an existing run there resumes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS", help="wall-clock seconds per method call (a slower call is a failed cell)")
    p.add_argument("--method-budget", type=int, default=None, help="the method's own budget: inputs or pairs (methods.run(budget=))")
    p.add_argument("--budget", type=float, default=None, help=argparse.SUPPRESS)  # the old name of --time-limit
    p.add_argument("--ablation", default="resample", help="ablation for faithfulness: zero, mean or resample")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the models are tiny)")
    p.add_argument("--no-controls", action="store_true", help="skip the controls (random, oracles, degenerate baselines) that every run adds")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("report", help="write DIR/report.md and a static DIR/report.html from DIR/results.jsonl")
    p.add_argument("dir")
    p.add_argument("--no-plots", action="store_true")
    p.set_defaults(func=cmd_report)
    from zoo.training.cli import add_train_parser  # argparse only; Lightning loads on `zoo train`

    add_train_parser(sub)
    from evaluation.show_cli import add_show_parser  # argparse only; matplotlib loads on `zoo show`

    add_show_parser(sub)
    from zoo.falsify_cli import add_falsify_parser  # argparse only; the search is evaluation.falsify

    add_falsify_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from zoo.threads import one_blas_thread

    try:
        with one_blas_thread():
            code = args.func(args)
    except (ValueError, KeyError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"zoo: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zoo: interrupted", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
