"""Hypothesis strategies for tasks, usable from any test suite.

>>> from hypothesis import given
>>> from tasks import get, strategies
>>> @given(strategies.inputs(get("parity")))
... def test_something(tokens): ...

- ``inputs(task)``: one input ``[1, L]`` in the task's format, ``L`` in ``min_len..max_len``;
- ``batches(task)``: several inputs of one length, ``[n, L]``;
- ``pairs(task)``: ``(base, source)`` batches of one shape;
- ``interventions(task)``: ``(base, source, variable, position)`` with one position per example.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from .task import BOS, SEQ2SEQ, Task


def _rows(task: Task, length: int, n: int):
    body = st.lists(st.sampled_from(task.alphabet), min_size=length - 1, max_size=length - 1)
    return st.lists(body, min_size=n, max_size=n).map(lambda rows: _assemble(task, rows))


def _assemble(task: Task, rows) -> np.ndarray:
    tokens = np.array([[BOS] + list(r) for r in rows], dtype=np.int64)
    if task.mode == SEQ2SEQ:
        tokens[:, task.sep_position(tokens.shape[1])] = task.sep
    return tokens


def lengths(task: Task, min_len: int | None = None, max_len: int | None = None):
    """Sequence lengths in the task's valid range (max_len itself included)."""
    lo = task.min_len if min_len is None else max(task.min_len, min_len)
    hi = task.max_len if max_len is None else min(task.max_len, max_len)
    return st.integers(lo, hi)


def batches(task: Task, min_size: int = 1, max_size: int = 16, length=None):
    """``[n, L]`` int64 inputs in the task's format; ``length`` an int or a strategy."""
    length_st = lengths(task) if length is None else (st.just(length) if isinstance(length, int) else length)
    return st.tuples(length_st, st.integers(min_size, max_size)).flatmap(lambda ln: _rows(task, ln[0], ln[1]))


def inputs(task: Task, length=None):
    """One input ``[1, L]`` in the task's format."""
    return batches(task, 1, 1, length)


def pairs(task: Task, min_size: int = 1, max_size: int = 16, length=None):
    """``(base, source)``: two batches of the same shape."""
    length_st = lengths(task) if length is None else (st.just(length) if isinstance(length, int) else length)
    return st.tuples(length_st, st.integers(min_size, max_size)).flatmap(
        lambda ln: st.tuples(_rows(task, ln[0], ln[1]), _rows(task, ln[0], ln[1]))
    )


def interventions(task: Task, min_size: int = 1, max_size: int = 16, length=None, variables=None):
    """``(base, source, variable, position)``: a variable of the program and a position per example."""
    names = tuple(variables) if variables is not None else task.program.names

    def with_positions(pair):
        base, source = pair
        n, L = base.shape
        return st.tuples(
            st.just(base),
            st.just(source),
            st.sampled_from(names),
            st.lists(st.integers(0, L - 1), min_size=n, max_size=n).map(lambda p: np.array(p, dtype=np.int64)),
        )

    return pairs(task, min_size, max_size, length).flatmap(with_positions)
