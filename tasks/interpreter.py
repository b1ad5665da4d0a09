"""A vectorised interpreter for programs, and interchange interventions on them.

``run(program, tokens)`` evaluates every variable on a batch ``[n, L]`` of token ids and returns
``{name: int64 array [n, L]}``. The work is numpy over the whole batch; the only Python loops are
over the program's variables and, inside a ``Scan``, over time steps.

Interchange interventions and the readout protocol
--------------------------------------------------
``counterfactual(program, base, source, [(variable, position), ...])`` runs ``base`` with each
listed variable's value at ``position`` replaced by its value on ``source`` at that position;
every other value is recomputed from the base input. Which output positions *count* is fixed by
a protocol that every model family (transformer, RNN, SSM) can be held to:

- an intervention on a **per-position** variable (``tokens``, ``indices``, ``Map``, ``Sum``) at
  position j is read at every readout position t >= j. A later ``Aggregate`` at t reads the
  patched value at j, through attention in a transformer and through the state written at j in
  an RNN or SSM: the same effect in every family.
- an intervention on a **sequence-mixing** variable (``Aggregate``, ``Scan``) at position j is
  read at t == j only. A transformer recomputes the aggregate at j+1 from its inputs, an RNN
  carries the patched state into j+1; both implement the same algorithm and only the
  same-position readout agrees on them. The interpreter replaces the value at j alone.

With several interventions, a readout position t counts when it is at or after the earliest
intervened position and it is not after any intervened sequence-mixing position. Positions
before every intervention are left out: causality makes them trivially equal to the base.
Every interchange-intervention accuracy (IIA) in the project uses this protocol.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np

from .program import Aggregate, Indices, Map, Program, Scan, Sum, Tokens, Variable

Position = Union[int, np.ndarray]
Intervention = tuple[Union[str, Variable], Position]


def run(program: Program, tokens: np.ndarray) -> dict[str, np.ndarray]:
    """Values of every variable of ``program`` on ``tokens`` ``[n, L]`` (int64 arrays ``[n, L]``)."""
    return _evaluate(program, np.asarray(tokens, dtype=np.int64), {})


def counterfactual(program: Program, base: np.ndarray, source: np.ndarray, interventions: Sequence[Intervention]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Values of every variable on ``base`` under interchange interventions from ``source``.

    ``interventions`` is a list of ``(variable, position)``; a position is an int or an int
    array ``[n]`` (one position per example). Returns ``(values, counts)`` where ``counts`` is the
    boolean ``[n, L]`` mask of positions that count under the protocol above (not yet restricted
    to the task's readout positions).
    """
    base = np.asarray(base, dtype=np.int64)
    source = np.asarray(source, dtype=np.int64)
    if base.shape != source.shape:
        raise ValueError(f"base {base.shape} and source {source.shape} must have the same shape")
    n, L = base.shape
    resolved = _resolve(program, interventions, n, L)
    needed = _ancestor_names(program, resolved)
    source_values = _evaluate(program, source, {}, only=needed) if resolved else {}
    patches = {name: (pos, source_values[name][np.arange(n), pos]) for name, pos in resolved.items()}
    values = _evaluate(program, base, patches)
    return values, counted_positions(program, resolved, n, L)


def replaced(program: Program, base: np.ndarray, source: np.ndarray, variable: Union[str, Variable], where: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Values of every variable on ``base`` when the per-position ``variable`` takes its value
    from ``source`` at every position where the boolean mask ``where`` ``[n, L]`` is set (an
    interchange intervention at many positions at once). Returns ``(values, counts)``: a readout
    position counts from the first replaced position on, as for one intervention there."""
    name = variable if isinstance(variable, str) else variable.name
    if not program[name].per_position:
        raise ValueError(f"{name!r} mixes positions (Aggregate/Scan): intervene on it one position at a time with counterfactual()")
    base, source = np.asarray(base, dtype=np.int64), np.asarray(source, dtype=np.int64)
    where = np.asarray(where, dtype=bool)
    if base.shape != source.shape or where.shape != base.shape:
        raise ValueError(f"base {base.shape}, source {source.shape} and where {where.shape} must have the same shape")
    new = _evaluate(program, source, {}, only=_ancestor_names(program, [name]))[name]
    values = _evaluate(program, base, {name: (where, new)})
    t = np.arange(base.shape[1])[None, :]
    counts = where.any(axis=1, keepdims=True) & (t >= where.argmax(axis=1)[:, None])
    return values, counts


def counted_positions(program: Program, resolved: dict[str, np.ndarray], n: int, L: int) -> np.ndarray:
    """The ``[n, L]`` mask of positions an intervention's effect is read at (see module doc)."""
    t = np.arange(L)[None, :]
    if not resolved:
        return np.ones((n, L), dtype=bool)
    earliest = np.min(np.stack(list(resolved.values())), axis=0)[:, None]
    mask = t >= earliest
    for name, pos in resolved.items():
        if not program[name].per_position:
            mask &= t <= pos[:, None]
    return mask


def _resolve(program: Program, interventions: Sequence[Intervention], n: int, L: int) -> dict[str, np.ndarray]:
    resolved: dict[str, np.ndarray] = {}
    for variable, position in interventions:
        name = variable if isinstance(variable, str) else variable.name
        program[name]  # raises a KeyError naming the valid variables
        if name in resolved:
            raise ValueError(f"variable {name!r} is intervened twice; intervene on several positions of one variable with one call per position")
        pos = np.broadcast_to(np.asarray(position, dtype=np.int64), (n,)).copy()
        if pos.size and (pos.min() < 0 or pos.max() >= L):
            bad = pos[(pos < 0) | (pos >= L)][0]
            raise ValueError(f"intervention position {bad} is outside the sequence (length {L}); use 0..{L - 1}")
        resolved[name] = pos
    return resolved


def _ancestor_names(program: Program, names) -> set[str]:
    """The named variables and everything they are computed from."""
    keep: set[str] = set(names)
    for v in reversed(program.variables):
        if v.name in keep:
            keep.update(u.name for u in v.inputs)
    return keep


def _evaluate(program: Program, tokens: np.ndarray, patches: dict[str, tuple[np.ndarray, np.ndarray]], only: set[str] | None = None) -> dict[str, np.ndarray]:
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be a 2-d array [n, L], got shape {tokens.shape}")
    n, L = tokens.shape
    rows = np.arange(n)
    values: dict[str, np.ndarray] = {}
    for v in program.variables:
        if only is not None and v.name not in only:
            continue
        x = _compute(v, values, tokens)
        if v.name in patches:
            pos, new = patches[v.name]
            if pos.ndim == 2:  # a boolean [n, L] mask of positions, new [n, L]
                x = np.where(pos, new, x)
            else:
                x = x.copy()
                x[rows, pos] = new
        values[v.name] = x
    return values


def _compute(v: Variable, values: dict[str, np.ndarray], tokens: np.ndarray) -> np.ndarray:
    n, L = tokens.shape
    if isinstance(v, Tokens):
        return tokens
    if isinstance(v, Indices):
        return np.broadcast_to(np.arange(L, dtype=np.int64), (n, L))
    if isinstance(v, Map):
        index = np.zeros((n, L), dtype=np.int64)
        for x in v.inputs:
            index = index * x.value_set.size + x.value_set.index(values[x.name])
        return v.table[index]
    if isinstance(v, Sum):
        out = np.full((n, L), v.bias, dtype=np.int64)
        for w, x in zip(v.weights, v.inputs):
            out += w * values[x.name]
        return out
    if isinstance(v, Aggregate):
        return _aggregate(v, values, n, L)
    if isinstance(v, Scan):
        x = v.inputs[0]
        xi = x.value_set.index(values[x.name])
        out = np.empty((n, L), dtype=np.int64)
        state = np.full(n, v.value_set.index(np.array(v.init)), dtype=np.int64)
        table_index = v.value_set.index(v.table)  # next-state indices
        for t in range(L):
            state = table_index[state, xi[:, t]]
            out[:, t] = state
        return np.asarray(v.value_set.values, dtype=np.int64)[out]
    raise TypeError(f"unknown variable type {type(v).__name__}")


def _aggregate(v: Aggregate, values: dict[str, np.ndarray], n: int, L: int) -> np.ndarray:
    sel, reduce = v.select, v.reduce
    value = values[v.value.name] if v.value is not None else np.ones((n, L), dtype=np.int64)
    if sel.kind == "offset":
        k = sel.offset
        out = np.full((n, L), v.default, dtype=np.int64)
        if reduce in ("count", "sum"):
            out[:] = 0
        if k < L:
            out[:, k:] = value[:, : L - k]
        return out
    if sel.kind == "all":
        if reduce in ("count", "sum"):
            return np.cumsum(value, axis=1)
        if reduce == "max":
            return np.maximum.accumulate(value, axis=1)
        if reduce == "min":
            return np.minimum.accumulate(value, axis=1)
        if reduce == "last":
            return value.copy()
        return np.repeat(value[:, :1], L, axis=1)  # first
    # key[j] <op> query[t] (==, <, <=, >, >=): a [n, t, j] selection matrix restricted to j <= t
    key, query = values[sel.key.name], values[sel.query.name]
    causal = np.tri(L, dtype=bool)
    S = sel.matches(key[:, None, :], query[:, :, None]) & causal
    any_selected = S.any(axis=2)
    if reduce in ("count", "sum"):
        return np.einsum("ntj,nj->nt", S.astype(np.int64), value)
    if reduce in ("max", "min"):
        fill = np.iinfo(np.int64).min if reduce == "max" else np.iinfo(np.int64).max
        masked = np.where(S, value[:, None, :], fill)
        out = masked.max(axis=2) if reduce == "max" else masked.min(axis=2)
    else:
        j = np.arange(L)
        if reduce == "last":
            idx = np.where(S, j, -1).max(axis=2)
        else:
            idx = np.where(S, j, L).min(axis=2)
        out = np.take_along_axis(value, np.clip(idx, 0, L - 1), axis=1)
    return np.where(any_selected, out, v.default)
