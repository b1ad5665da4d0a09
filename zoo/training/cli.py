"""The ``zoo train`` and ``zoo build`` subcommands; ``zoo/cli.py`` wires them in with
``add_train_parser(sub)`` (both subparsers) and dispatches to ``cmd_train`` / ``cmd_build``."""

from __future__ import annotations

import argparse


def add_train_parser(sub) -> None:
    """Add ``train`` and ``build`` to an ``argparse`` subparsers object."""
    from zoo.compile import FAMILIES

    p = sub.add_parser("train", help="train a model on a task with Lightning (algorithm planted by IIT + strict SIIT)")
    p.add_argument("task")
    p.add_argument("--arch", required=True, choices=FAMILIES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--give-up-minutes", type=float, default=None, help="stop here if held-out accuracy has not reached 90%% yet")
    p.add_argument("--max-steps", type=int, default=None, help="default: none with --max-minutes, else zoo.training.train.DEFAULT_MAX_STEPS")
    p.add_argument("--lr", type=float, default=None, help="AdamW's learning rate (default: zoo.training.train.default_lr, the family's unless the pair has its own)")
    p.add_argument("--no-plant", action="store_true", help="train on behaviour only (no ground truth beyond behaviour)")
    p.add_argument("--devices", default="1", help="Lightning devices (an int, or 'auto')")
    p.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp")
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--out", default=None, help="directory to save the model in")
    p.set_defaults(func=cmd_train)

    b = sub.add_parser("build", help="compile and train the task x family grid into a store directory (skips finished models, resumes)")
    b.add_argument("--tasks", nargs="+", default=None)
    b.add_argument("--archs", nargs="+", default=None, choices=FAMILIES)
    b.add_argument("--store", default=None, help="store directory (default: $CIRCUIT_ZOO_STORE or ~/.cache/circuit-zoo)")
    b.add_argument("--shard", default=None, help="i/n: this worker's share of the grid (0 <= i < n)")
    b.add_argument("--workers", type=int, default=1, help="jobs run at once on this machine (separate processes, one torch thread each; the largest models first)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--max-minutes", type=float, default=None, help="per trained model (default 12)")
    b.add_argument("--give-up-minutes", type=float, default=None, help="a trained model whose held-out accuracy has not reached 90%% stops here (default 6)")
    b.add_argument("--max-steps", type=int, default=None, help="per trained model (default: none, --max-minutes limits it)")
    b.add_argument("--no-plant", action="store_true")
    b.add_argument("--retry-missed", action="store_true", help="retrain trained models whose card says they missed their targets")
    b.set_defaults(func=cmd_build)


def _devices(text):
    return text if text == "auto" else int(text)


def cmd_train(args) -> None:
    from .card import format_card
    from .train import train

    model = train(args.task, args.arch, plant=not args.no_plant, seed=args.seed, max_steps=args.max_steps, max_minutes=args.max_minutes,
                  give_up_minutes=args.give_up_minutes, lr=args.lr, devices=_devices(args.devices), strategy=args.strategy, accelerator=args.accelerator, progress_bar=True)
    print(format_card(model.meta))
    if args.out:
        model.save(args.out)
        print(f"saved to {args.out}")


def cmd_build(args) -> None:
    from .build import build, default_store, parse_shard

    root = args.store or default_store()
    limits = {k: v for k, v in (("max_minutes", args.max_minutes), ("give_up_minutes", args.give_up_minutes)) if v is not None}
    records = build(args.tasks, args.archs, root=root, shard=parse_shard(args.shard), seed=args.seed, plant=not args.no_plant,
                    max_steps=args.max_steps, retry_missed=args.retry_missed, workers=args.workers, **limits)
    missed = [r for r in records if r.get("kind") == "trained" and r.get("status") == "ok" and not r.get("reached")]
    built = sum(r["status"] == "ok" for r in records)
    refused = sum(r["status"] == "refused" for r in records)
    print(f"store {root}: {built} models built this run, {refused} pairs refused by a compiler" + (f"; {len(missed)} trained models missed their targets: " + ", ".join(f"{r['task']}/{r['family']}" for r in missed) if missed else ""))


def main(argv=None) -> None:
    """Stand-alone entry (``python -m zoo.training.cli``) until ``zoo/cli.py`` wires these in."""
    parser = argparse.ArgumentParser(prog="zoo")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
