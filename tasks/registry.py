"""The task registry: ``get(name)`` and ``names()``."""

from __future__ import annotations

import difflib

from .catalog import TASKS
from .task import Task

_REGISTRY: dict[str, Task] = {t.name: t for t in TASKS}


class UnknownTaskError(KeyError, ValueError):
    """An unknown task name; the message lists close matches and the valid names."""

    def __str__(self) -> str:
        return str(self.args[0])


def names() -> tuple[str, ...]:
    """Names of the registered tasks, in registry order."""
    return tuple(_REGISTRY)


def get(name: str, max_len: int | None = None) -> Task:
    """The task called ``name`` (optionally at another ``max_len``)."""
    try:
        task = _REGISTRY[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), names(), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownTaskError(f"unknown task {name!r}; {hint}valid tasks: {', '.join(names())}") from None
    return task if max_len is None else task.with_max_len(max_len)
