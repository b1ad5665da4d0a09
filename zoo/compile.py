"""``compile(task, arch)``: a task's program turned into exact weights for one family.

Each family's compiler lives in ``zoo/compilers/<family>.py`` and exposes
``compile_program(task, seed) -> ZooModel`` with ``model.ground_truth`` filled in by
construction. A (selection, reduction) pair or primitive that a family cannot implement
exactly raises :class:`CompileError` naming the primitive and the family; a construction exact
only up to some length refuses longer ``max_len`` the same way.
"""

from __future__ import annotations

import importlib

from tasks import Task
from tasks import get as get_task

FAMILIES = ("transformer", "rnn", "ssm")


class CompileError(ValueError):
    """A program uses a primitive the family cannot implement exactly."""

    def __init__(self, family: str, primitive: str, reason: str):
        self.family, self.primitive, self.reason = family, primitive, reason
        super().__init__(f"the {family} compiler cannot implement {primitive} exactly: {reason}")


def check_family(arch: str) -> str:
    if arch not in FAMILIES:
        import difflib

        close = difflib.get_close_matches(str(arch), FAMILIES, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ValueError(f"unknown architecture {arch!r}; {hint}valid: {', '.join(FAMILIES)}")
    return arch


def compile(task: Task | str, arch: str, max_len: int | None = None, seed: int = 0, decoys: bool = False):
    """Exact weights for ``task`` in family ``arch`` (``transformer``, ``rnn`` or ``ssm``).

    ``decoys=True`` compiles the program's decoy clone beside it (:mod:`tasks.decoys`): the same
    function, with components that compute real, varying things no output reads (the ground
    truth marks them); the evaluator scores models with decoys.
    """
    task = get_task(task) if isinstance(task, str) else task
    if max_len is not None:
        task = task.with_max_len(max_len)
    task = task.with_decoys(decoys)
    module = importlib.import_module(f"zoo.compilers.{check_family(arch)}")
    model = module.compile_program(task, seed=seed)
    model.meta.update({"task": task.name, "max_len": task.max_len, "kind": "compiled", "seed": seed, "family": arch, "decoys": bool(decoys)})
    return model
