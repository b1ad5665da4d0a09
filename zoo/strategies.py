"""Hypothesis strategies for models: a random program compiled into a random family.

>>> from hypothesis import given
>>> from zoo.strategies import models
>>> @given(models())
... def test_my_method(case):
...     finding = my_method(case.model, case.task)

``models(programs=..., archs=..., kinds=...)`` draws a task (default
:func:`tasks.strategies.programs`), a family and a kind, and compiles the task's program into
that family (``compiled``), or compiles it and moves its bases (``reparametrized``, a drawn
seed), ground truth included. A program the family refuses (a ``CompileError``) is skipped
with hypothesis' ``assume``: it counts as an invalid example, labelled by ``event`` (shown by
``pytest --hypothesis-show-statistics``) and, when ``stats`` is a ``collections.Counter``,
counted there by ``(family, "compiled")`` and ``(family, "refused", primitive)``. Needs
hypothesis (a test dependency).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hypothesis import assume, event, note
from hypothesis import strategies as st

from tasks import Task
from tasks.spec import ProgramSpec, spec_of

from .compile import FAMILIES, CompileError, check_family, compile
from .model import ZooModel
from .reparametrize import reparametrize

KINDS = ("compiled", "reparametrized")


@dataclass
class DrawnModel:
    """A drawn case: the task, the family, the kind and the model (with ``model.ground_truth``)."""

    task: Task
    arch: str
    kind: str
    model: ZooModel
    reparam_seed: int | None = None

    @property
    def spec(self) -> ProgramSpec | None:
        return spec_of(self.task)

    def __repr__(self) -> str:
        seed = f", seed {self.reparam_seed}" if self.reparam_seed is not None else ""
        return f"DrawnModel({self.task.name}: {self.arch}, {self.kind}{seed})"


def build(task: Task, arch: str, kind: str = "compiled", reparam_seed: int | None = None, stats: Counter | None = None,
          decoys: bool = False) -> ZooModel:
    """The model a draw stands for (a ``CompileError`` propagates; ``stats`` counts the outcome);
    ``decoys``: compiled with the program's decoy clone beside it, as the evaluator compiles."""
    try:
        model = compile(task, arch, decoys=decoys)
    except CompileError as err:
        if stats is not None:
            stats[arch, "refused"] += 1
            stats[arch, "refused", err.primitive] += 1
        raise
    if stats is not None:
        stats[arch, "compiled"] += 1
    if kind == "reparametrized":
        model = reparametrize(model, seed=int(reparam_seed or 0))
    return model.eval()


def models(programs=None, archs=FAMILIES, kinds=KINDS, stats: Counter | None = None, decoys: bool | None = False):
    """Draw :class:`DrawnModel` s (see the module docstring). ``programs``: a strategy of tasks
    (default ``tasks.strategies.programs()``); ``archs``: families to draw from; ``kinds``:
    ``compiled`` and/or ``reparametrized``; ``decoys``: compile the program's decoy clone beside
    it (``task`` is then the task with decoys), True, False, or None to draw it."""
    from tasks import strategies as task_strategies

    archs, kinds = tuple(archs), tuple(kinds)
    if not archs:
        raise ValueError("archs is empty; give at least one of " + ", ".join(FAMILIES))
    for a in archs:
        check_family(a)
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown kind {k!r}; valid: {', '.join(KINDS)}")
    if not kinds:
        raise ValueError("kinds is empty; give compiled and/or reparametrized")
    programs = task_strategies.programs() if programs is None else programs

    @st.composite
    def draw_model(draw):
        task = draw(programs)
        arch = draw(st.sampled_from(archs))
        kind = draw(st.sampled_from(kinds))
        seed = draw(st.integers(0, 2**16)) if kind == "reparametrized" else None
        with_decoys = draw(st.booleans()) if decoys is None else bool(decoys)
        task = task.with_decoys(with_decoys)
        note(f"program {task.name} ({arch}, {kind}{', with decoys' if with_decoys else ''}):\n{task.program.describe()}")
        try:
            model = build(task, arch, kind, seed, stats, decoys=with_decoys)
        except CompileError as err:
            event(f"{arch} refused {err.primitive}")
            assume(False)
        event(f"{arch} compiled")
        return DrawnModel(task, arch, kind, model, seed)

    return draw_model()
