"""Progress of long methods: a method reports how far it is, whoever runs it decides what to show.

A method calls :func:`report` (``report(3, 5, "variable depth: step 30/60")``) and prints
nothing itself; without a listener a report costs one lookup. A runner installs a listener for
the length of a call with :func:`listening` (the evaluation grid prints a throttled line per
cell, :func:`evaluation.progress.throttled`). Listeners follow the context (``contextvars``), so
nested or concurrent runs each hear their own method.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Callable, Iterator


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` units of a method's work, and what it is doing now."""

    done: int
    total: int
    what: str = ""

    def __str__(self) -> str:
        return f"{self.done}/{self.total}" + (f" {self.what}" if self.what else "")


Listener = Callable[[Progress], None]
_listener: contextvars.ContextVar[Listener | None] = contextvars.ContextVar("circuit_zoo_method_progress", default=None)


def report(done: int, total: int, what: str = "") -> None:
    """Tell the listener, if any, that ``done`` of ``total`` units are finished."""
    listener = _listener.get()
    if listener is not None:
        listener(Progress(int(done), int(total), what))


@contextlib.contextmanager
def listening(listener: Listener | None) -> Iterator[None]:
    """Send the reports of the methods run inside the block to ``listener`` (None: to nobody)."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)
