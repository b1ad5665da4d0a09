"""Which primitives each family implements exactly: the table ``zoo tasks`` prints.

Measured, not declared: every task is compiled for every family. A primitive is *exact* in a
family when every task using it compiles there (and compiled models are held exact by the test
suite), *refused* when a compiler raised a CompileError naming it, and unknown ("?") when it
appears only in tasks that were refused for another primitive.
"""

from __future__ import annotations

import tasks

from .compile import FAMILIES, CompileError, compile


def primitive_of(variable) -> str:
    if variable.op == "Aggregate":
        return f"Aggregate[{variable.select.kind}/{variable.reduce}]"
    return variable.op


def primitives_of(task) -> list[str]:
    return sorted({primitive_of(v) for v in task.program if v.op not in ("tokens", "indices")})


def task_table() -> dict[tuple[str, str], str | None]:
    """(task, family) -> None if it compiles, else the refused primitive."""
    out: dict[tuple[str, str], str | None] = {}
    for name in tasks.names():
        for family in FAMILIES:
            try:
                compile(name, family)
                out[(name, family)] = None
            except CompileError as err:
                out[(name, family)] = err.primitive
    return out


def primitive_table(by_task: dict[tuple[str, str], str | None] | None = None) -> dict[str, dict[str, str]]:
    """primitive -> family -> 'exact' | 'refused' | '?' (see the module docstring)."""
    by_task = task_table() if by_task is None else by_task
    table: dict[str, dict[str, str]] = {}
    for name in tasks.names():
        for prim in primitives_of(tasks.get(name)):
            row = table.setdefault(prim, {f: "?" for f in FAMILIES})
            for family in FAMILIES:
                refused = by_task[(name, family)]
                if refused == prim:
                    row[family] = "refused"
                elif refused is None and row[family] == "?":
                    row[family] = "exact"
    return table
