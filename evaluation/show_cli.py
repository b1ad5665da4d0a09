"""``zoo show MODEL_OR_TASK --arch A [--method M]``: a PNG of a model's ground truth (and a
method's finding), drawn by :func:`evaluation.show.draw`. ``zoo/cli.py`` wires it in with
``add_show_parser(sub)``; this module imports nothing heavy until the command runs."""

from __future__ import annotations

import re
import sys
from pathlib import Path

KINDS = ("compiled", "reparametrized", "trained")


def add_show_parser(sub) -> None:
    p = sub.add_parser("show", help="draw a model's sites by layer and position with its ground truth (and a method's finding) into a PNG")
    p.add_argument("model", metavar="MODEL_OR_TASK", help="a saved model's directory, or a task name (with --arch)")
    p.add_argument("--arch", help="transformer, rnn or ssm (needed with a task name)")
    p.add_argument("--kind", default="compiled", choices=KINDS, help="with a task name: compiled (default), reparametrized, or trained (from the store)")
    p.add_argument("--store", default=None, help="the store trained models are read from (default: zoo build's)")
    p.add_argument("--method", help="a method name or import path pkg.mod:fn: its finding is drawn beside the ground truth")
    p.add_argument("--method-budget", type=int, default=None, help="the method's own budget: inputs or pairs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="the PNG to write (default zoo-show/TASK-ARCH-KIND[-METHOD].png)")
    p.set_defaults(func=cmd_show)


def resolve(args):
    """``(model, task, kind)`` for the command's MODEL_OR_TASK (a one-line ValueError otherwise)."""
    import tasks

    path = Path(args.model)
    if (path / "config.json").exists() or "/" in args.model or (path.is_dir() and args.model not in tasks.names()):
        from .models import load_saved, saved_model

        saved = saved_model(path)
        if args.arch and args.arch != saved.family:
            raise ValueError(f"the model in {path} is a {saved.family} model, not {args.arch}; drop --arch or point at a {args.arch} model")
        model, task = load_saved(saved)
        return model, task, saved.kind
    from zoo.compile import check_family

    from .grid import MissingModel, _model, scoring_task

    task = tasks.get(args.model)
    if not args.arch:
        raise ValueError(f"zoo show {args.model} needs --arch transformer, rnn or ssm (or give a saved model's directory)")
    check_family(args.arch)
    try:
        model = _model(task, args.arch, args.kind, args.seed, args.store)
    except MissingModel as err:
        raise ValueError(str(err)) from None
    return model, scoring_task(task, model), args.kind


def default_out(task: str, family: str, kind: str, method: str | None) -> Path:
    name = f"{task}-{family}-{kind}" + (f"-{re.sub(r'[^A-Za-z0-9_.-]+', '_', method)}" if method else "")
    return Path("zoo-show") / f"{name}.png"


def cmd_show(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from .show import draw, overlay_of, picture_of

    model, task, kind = resolve(args)
    picture = picture_of(model, task)
    overlay = None
    if args.method:
        import methods
        from methods.progress import listening

        from .grid import cell_seed
        from .progress import throttled

        with listening(throttled(print, f"{args.method} on {task.name}/{model.family}")):
            finding = methods.run(args.method, model, task, seed=cell_seed(args.seed, task.name, model.family, kind), budget=args.method_budget)
        overlay = overlay_of(picture, finding)
    out = Path(args.out) if args.out else default_out(task.name, model.family, kind, args.method)
    out.parent.mkdir(parents=True, exist_ok=True)
    draw(picture, overlay).savefig(out)
    print(f"wrote {out}", file=sys.stdout)
