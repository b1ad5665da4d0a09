"""Rewrites of a program into programs of the same language that implement a primitive in stages.

A transformer or an SSM has a fixed depth and no state machine, so it implements a ``Scan`` by a
**parallel prefix** (Hillis-Steele) over the automaton's transition monoid: the ``Scan``'s
value at t is its transitions ``x_0 .. x_t`` composed and applied to ``init``, and composition is
associative, so ``ceil(log2 L)`` rounds of "combine my segment with the one ending 2^(k-1)
positions earlier" cover every prefix of an input of ``L`` positions. Each round is one
``Aggregate`` (a fixed offset) and one ``Map`` (a lookup in the monoid's multiplication table),
so the rewritten program uses only primitives every family compiles, and its intermediate
variables are the *implementation variables* (stages) whose counterfactuals the interpreter
answers like any other variable's::

    state_lag1  = Aggregate(j == t-1; last x, default=e)       x one position back
    state_prod2 = Map(x, state_lag1)      the product of the transitions x_{t-1}, x_t
    state_lag2  = Aggregate(j == t-2; last state_prod2, default=identity)
    state_prod4 = Map(state_prod2, state_lag2)                  ... of x_{t-3} .. x_t
    ...
    state       = Map(state_prod{2^(K-1)}, state_lag{2^(K-1)})  the product of x_0 .. x_t
                                                                applied to init (the last round
                                                                applies instead of storing it)

``{scan}_prod{n}`` holds (the index of) the monoid element composing the last ``n``
transitions up to t (fewer at t < n - 1), ``{scan}_lag{d}`` the product of the ``d``
transitions ending ``d`` positions earlier (the identity where there are none; ``_lag1`` holds
``x`` itself, one position back, and where there is none a value ``e`` of ``x`` whose transition
is the identity: x's value at BOS when it is one, else any, else ``min(x) - 1``, a value of its
own). Monoid elements are numbered as :class:`tasks.program.Scan` enumerates them (0 is the
identity). The rewritten program equals the original on every input of at most ``max_len``
positions (an exact identity of the semantics, held by the tests), and every variable of the
original keeps its name and value set.

``ceil(log2 L)`` sequence mixers and as many MLPs, two fewer than the textbook form: round 1
reads ``x`` itself (no Map of x to its transition before it: its table folds into round 1's
Map), and the last round applies its product to ``init`` (no Map after it).

The protocol of :mod:`tasks.interpreter` applies to the rewritten program as written: a
``_prod`` stage is a ``Map`` (read at every t >= j after an intervention at j: a later round
reads it at j + 2^k), a ``_lag`` stage an ``Aggregate`` (read at t == j). :func:`staged` gives
the task whose program is the rewritten one, to ask those counterfactuals.

Bound: the multiplication table has ``n^2`` entries for a monoid of ``n`` elements, and the
compilers tabulate it in an MLP per round; a monoid of more than ``MAX_MONOID`` elements is
refused (:class:`MonoidTooLarge`). S3 (``permutation``) has 6 elements, the flip-flop 3.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import NamedTuple

import numpy as np

from .interpreter import run as _run
from .program import MONOID_LIMIT, Aggregate, Map, Program, Scan, Select, Variable

MAX_MONOID = 128  # 128^2 = 16,384 products per round, inside every compiler's Map table limit (20,000)


class MonoidTooLarge(ValueError):
    """A Scan whose transition monoid is too large to tabulate its products."""

    def __init__(self, scan: Scan):
        self.scan, self.size, self.bound = scan.name, scan.monoid_size, MAX_MONOID
        size = f"more than {MONOID_LIMIT}" if scan.monoid is None else str(scan.monoid_size)
        super().__init__(f"Scan {scan.name!r}: its transition monoid has {size} elements; a parallel prefix tabulates the "
                         f"products of every pair in each round, at most {MAX_MONOID} elements ({MAX_MONOID ** 2:,} products); "
                         f"shrink the automaton or compile it for the rnn, which steps through the states")


class Prefixed(NamedTuple):
    program: Program  # the rewritten program: same variables, plus the stages
    stage_of: dict[str, str]  # stage (implementation variable) -> the Scan it implements


def rounds(max_len: int) -> int:
    """How many rounds a parallel prefix needs for inputs of ``max_len`` positions: ceil(log2 L)."""
    return max(0, math.ceil(math.log2(max(1, int(max_len)))))


def parallel_prefix(program: Program, max_len: int) -> Prefixed:
    """``program`` with every ``Scan`` replaced by its parallel prefix (see the module docstring).

    A program without a Scan is returned as it is. Raises :class:`MonoidTooLarge`."""
    if not any(isinstance(v, Scan) for v in program):
        return Prefixed(program, {})
    taken = set(program.names)
    at_bos = _run(program, np.zeros((1, 1), dtype=np.int64))
    new: dict[str, Variable] = {}
    stage_of: dict[str, str] = {}
    for v in program.variables:
        ins = tuple(new[u.name] for u in v.inputs)
        if isinstance(v, Scan):
            node, stages = _prefix(v, ins[0], int(at_bos[v.inputs[0].name][0, 0]), int(max_len), taken)
            stage_of.update({s: v.name for s in stages})
        elif all(a is b for a, b in zip(ins, v.inputs)):
            node = v
        else:
            node = _with_inputs(v, new)
        new[v.name] = node
    # a program may carry extra sinks beside its output (decoys, where the language has them):
    # they are rewritten alike and stay sinks
    extra = tuple(new[d.name] for d in getattr(program, "decoys", ()))
    return Prefixed(Program(new[program.output.name], extra) if extra else Program(new[program.output.name]), stage_of)


def staged(task):
    """``task`` with its program rewritten (:func:`parallel_prefix`): the same outputs on every
    input, and the stages are variables whose counterfactuals it answers."""
    build = task.build
    return dataclasses.replace(task, build=lambda max_len: parallel_prefix(build(max_len), max_len).program)


def _with_inputs(v: Variable, new: dict[str, Variable]) -> Variable:
    """A copy of ``v`` reading the rewritten versions of its inputs (same value sets, so the
    same tables and value set)."""
    node = copy.copy(v)
    node.inputs = tuple(new[u.name] for u in v.inputs)
    if isinstance(v, Aggregate):
        sel = v.select
        node.select = dataclasses.replace(sel, key=new[sel.key.name] if sel.key is not None else None,
                                          query=new[sel.query.name] if sel.query is not None else None)
        node.value = new[v.value.name] if v.value is not None else None
    return node


def _fresh(name: str, taken: set[str]) -> str:
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def _prefix(scan: Scan, x: Variable, at_bos: int, max_len: int, taken: set[str]) -> tuple[Variable, list[str]]:
    """The parallel prefix of ``scan`` over the (rewritten) input ``x``, whose value at BOS (on
    an input of BOS alone) is ``at_bos``: its final Map and the names of its stages."""
    if scan.monoid is None or scan.monoid_size > MAX_MONOID:
        raise MonoidTooLarge(scan)
    elements, n = scan.monoid, scan.monoid_size
    number = {e.tobytes(): i for i, e in enumerate(elements)}
    # product[a, b]: the element "b, then a" (b covers the earlier positions)
    product = np.array([[number[elements[a][elements[b]].tobytes()] for b in range(n)] for a in range(n)], dtype=np.int64)
    of_x = dict(zip(x.value_set.values, scan.transition.tolist()))
    # _lag1 where there is no earlier position: a value of x that acts as the identity, x's own
    # value at BOS if it does (a transformer then needs no default head), else min(x) - 1
    identities = [a for a, e in of_x.items() if e == 0]
    none = at_bos if at_bos in identities else (identities[0] if identities else x.value_set.lo - 1)
    of_x[none] = 0
    start = int(scan.value_set.index(np.array(scan.init)))
    states = scan.value_set.values
    K = rounds(max_len)

    def applied(e: int) -> int:
        return states[int(elements[e][start])]

    stages: list[str] = []
    if K == 0:
        out = Map(lambda a: applied(of_x[a]), x, name=scan.name, desc=f"{scan.desc}, applied to init={scan.init}")
    else:
        lag = Aggregate(Select.offset_by(1), x, "last", name=_fresh(f"{scan.name}_lag1", taken), default=none)
        stages.append(lag.name)
        if K == 1:
            out = Map(lambda a, b: applied(product[of_x[a], of_x[b]]), x, lag, name=scan.name,
                      desc=f"x_t after x_(t-1), applied to init={scan.init}")
        else:
            prod = Map(lambda a, b: int(product[of_x[a], of_x[b]]), x, lag, name=_fresh(f"{scan.name}_prod2", taken),
                       desc="monoid product: x_(t-1), then x_t")
            stages.append(prod.name)
            for k in range(2, K + 1):
                d = 2 ** (k - 1)
                lag = Aggregate(Select.offset_by(d), prod, "last", name=_fresh(f"{scan.name}_lag{d}", taken), default=0)
                stages.append(lag.name)
                if k < K:
                    prod = Map(lambda a, b: int(product[a, b]), prod, lag, name=_fresh(f"{scan.name}_prod{2 * d}", taken),
                               desc=f"monoid product: the {d} earlier, then the {d} latest")
                    stages.append(prod.name)
                else:
                    out = Map(lambda a, b: applied(product[a, b]), prod, lag, name=scan.name,
                              desc=f"monoid product of every transition so far, applied to init={scan.init}")
    out.value_set = scan.value_set  # the states reachable at any length: a superset of the table's values
    out.desc += " (parallel prefix)"
    return out, stages
