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
    rows = [("task", "vocab", "max_len", "variables", "mode", "classes", "primitives")]
    for name in tasks.names():
        t = tasks.get(name)
        prims = sorted({_primitive(v) for v in t.program if v.op not in ("tokens", "indices")})
        rows.append((name, str(len(t.vocab)), str(t.max_len), str(len(t.program)), t.mode, str(t.n_classes), ", ".join(prims)))
    _table(rows)
    print("\n`zoo tasks NAME` prints a task's program.")


def _primitive(v) -> str:
    if v.op == "Aggregate":
        return f"Aggregate[{v.select.kind}/{v.reduce}]"
    return v.op


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
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, KeyError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"zoo: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zoo: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
