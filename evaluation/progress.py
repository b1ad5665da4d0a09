"""Printing a long method's progress reports (:mod:`methods.progress`) from the evaluation grid."""

from __future__ import annotations

import time
from typing import Callable

from methods.progress import Listener, Progress


def throttled(print_fn: Callable[[str], None], label: str, every: float = 10.0, clock=time.monotonic) -> Listener:
    """A listener printing ``label: done/total what (N s)`` through ``print_fn``, at most once every
    ``every`` seconds and never in a method's first ``every`` seconds (a quick cell prints only
    its result line)."""
    start = clock()
    last = [start]

    def listen(progress: Progress) -> None:
        now = clock()
        if now - last[0] >= every:
            last[0] = now
            print_fn(f"{label}: {progress} ({now - start:.0f} s)")

    return listen
