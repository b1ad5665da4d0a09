"""Hypothesis strategies for tasks, usable from any test suite.

>>> from hypothesis import given
>>> from tasks import get, strategies
>>> @given(strategies.inputs(get("parity")))
... def test_something(tokens): ...

- ``inputs(task)``: one input ``[1, L]`` in the task's format, ``L`` in ``min_len..max_len``;
- ``batches(task)``: several inputs of one length, ``[n, L]``;
- ``pairs(task)``: ``(base, source)`` batches of one shape;
- ``interventions(task)``: ``(base, source, variable, position)`` with one position per example;
- ``programs()``: random well-formed programs, each wrapped in a task (``program_specs()``: the
  same as :class:`tasks.spec.ProgramSpec` data). Shrinking goes toward fewer nodes, nodes that
  read the tokens, fewer symbols, shorter ``max_len`` and transduction before seq2seq.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from .program import COMPARISONS, REDUCTIONS
from .spec import SELECTS, Node, ProgramSpec
from .task import BOS, SEQ2SEQ, TRANSDUCTION, Task


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


# -- random programs ---------------------------------------------------------------------------------
AGGREGATES = tuple(f"Aggregate[{s}/{r}]" for s in SELECTS for r in REDUCTIONS)
PRIMITIVES = ("Map", "Sum", "Indices", "Scan") + AGGREGATES
MAX_VALUES = 24  # values one drawn variable may take (a bigger node is replaced by a small Map)
MAX_ABS = 64  # largest |value| of a drawn variable
MAX_MAP_COMBOS = 512  # input combinations one drawn Map may tabulate


def _expand(primitives) -> tuple[str, ...]:
    """``primitives`` as names of :data:`PRIMITIVES`: ``Aggregate`` is every aggregate,
    ``Aggregate[eq]`` every reduction of one selection."""
    if primitives is None:
        return PRIMITIVES
    if isinstance(primitives, str):
        primitives = (primitives,)
    out: list[str] = []
    for p in primitives:
        if p in PRIMITIVES:
            out.append(p)
        elif p == "Aggregate":
            out += AGGREGATES
        elif p.startswith("Aggregate[") and p[10:-1] in SELECTS and p.endswith("]"):
            out += [a for a in AGGREGATES if a.startswith(f"Aggregate[{p[10:-1]}/")]
        else:
            raise ValueError(f"unknown primitive {p!r}; valid: Map, Sum, Indices, Scan, Aggregate, Aggregate[SELECT] or Aggregate[SELECT/REDUCE] with SELECT in {', '.join(SELECTS)} and REDUCE in {', '.join(REDUCTIONS)}")
    if not any(p in ("Map", "Sum", "Scan") or p.startswith("Aggregate") for p in out):
        raise ValueError(f"primitives {list(primitives)} leave nothing to compute; add Map, Sum, Scan or an Aggregate")
    return tuple(dict.fromkeys(out))


def program_specs(max_nodes: int = 5, primitives=None, modes=(TRANSDUCTION, SEQ2SEQ), max_symbols: int = 3, max_len: int = 8,
                  min_nodes: int = 0):
    """Random :class:`tasks.spec.ProgramSpec` s: ``min_nodes..max_nodes`` nodes after ``tokens``
    drawn from ``primitives`` (names of :data:`PRIMITIVES`, ``Aggregate`` or ``Aggregate[eq]``;
    default all), every value set bounded (at most :data:`MAX_VALUES` values, ``|value| <=``
    :data:`MAX_ABS`), ``1..max_symbols`` body tokens, ``max_len`` from the mode's minimum to
    ``max_len``, a mode from ``modes``."""
    allowed = _expand(primitives)
    combos = [tuple(a[10:-1].split("/")) for a in AGGREGATES if a in allowed]
    ops = [op for op, on in (("map", "Map" in allowed), ("aggregate", bool(combos)), ("sum", "Sum" in allowed), ("aggregate", bool(combos)),
                             ("indices", "Indices" in allowed), ("scan", "Scan" in allowed)) if on]
    modes = tuple(modes)
    for m in modes:
        if m not in (TRANSDUCTION, SEQ2SEQ):
            raise ValueError(f"mode {m!r} must be {TRANSDUCTION!r} or {SEQ2SEQ!r}")
    if not 0 <= min_nodes <= max_nodes:
        raise ValueError(f"min_nodes {min_nodes} must be within 0..max_nodes ({max_nodes})")
    if max_len < (3 if modes == (SEQ2SEQ,) else 2):
        raise ValueError(f"max_len {max_len} is below the shortest input of modes {modes} (2 for transduction, 3 for seq2seq)")

    @st.composite
    def draw_spec(draw):
        mode = draw(st.sampled_from([m for m in modes if max_len >= (3 if m == SEQ2SEQ else 2)]))
        symbols = draw(st.integers(1, max_symbols))
        length = draw(st.integers(3 if mode == SEQ2SEQ else 2, max_len))
        n = draw(st.integers(min_nodes, max_nodes))
        spec = ProgramSpec(symbols, length, mode)
        built = spec.variables()
        for i in range(1, n + 1):
            spec = _append(spec, built, _draw_node(draw, built, ops, combos))
        if not spec.reads_tokens():  # an output computed from positions alone: make it read the tokens
            spec = _append(spec, built, Node("map", (len(spec.nodes), 0), coefs=(1, 1), table=(0, 1)))
        return spec

    return draw_spec()


def programs(max_nodes: int = 5, primitives=None, modes=(TRANSDUCTION, SEQ2SEQ), max_symbols: int = 3, max_len: int = 8, min_nodes: int = 0):
    """Random well-formed programs, each wrapped in a task (:meth:`tasks.spec.ProgramSpec.task`:
    vocabulary, seeded sampler, readout; the reference is the interpreter itself). Arguments as
    :func:`program_specs`; ``task.spec`` holds the drawn spec."""
    return program_specs(max_nodes, primitives, modes, max_symbols, max_len, min_nodes).map(lambda spec: spec.task())


def _append(spec: ProgramSpec, built: list, node: Node) -> ProgramSpec:
    """``spec`` with ``node`` appended (its variable appended to ``built``), or with a small Map
    of the node's first input when the node is ill-formed or its values are out of bounds."""
    i = len(spec.nodes) + 1
    try:
        grown = ProgramSpec(spec.symbols, spec.max_len, spec.mode, spec.nodes + (node,))
        v = grown.build_node(i, built)
        if _bounded(v):
            built.append(v)
            return grown
    except ValueError:
        pass
    fallback = Node("map", inputs=node.inputs[:1] or (0,), coefs=(1,), table=(0, 1))
    grown = ProgramSpec(spec.symbols, spec.max_len, spec.mode, spec.nodes + (fallback,))
    built.append(grown.build_node(i, built))
    return grown


def _bounded(v) -> bool:
    vs = v.value_set
    return vs.size <= MAX_VALUES and max(abs(vs.lo), abs(vs.hi)) <= MAX_ABS


COEFS = st.sampled_from((1, 2, -1, 3))
WEIGHTS = st.sampled_from((1, -1, 2))
SCAN_COEFS = st.sampled_from((1, 2))
MAP_FNS = st.sampled_from(("mod", "clip"))


def _draw_node(draw, built, ops, combos) -> Node:
    """One node reading the variables ``built`` so far (index 0 is tokens)."""
    i = len(built)
    any_input = st.integers(0, i - 1)  # shrinks toward 0: the tokens
    recent = st.integers(0, i - 1).map(lambda back: i - 1 - back)  # shrinks toward the previous node: deeper programs
    numerical = [j for j, v in enumerate(built) if v.value_set.is_numerical]
    binary = [j for j, v in enumerate(built) if set(v.value_set.values) <= {0, 1}]

    def pick(pool):
        return pool[draw(st.integers(0, len(pool) - 1))]

    op = draw(st.sampled_from(ops))  # aggregates listed twice: where the constructions differ most
    if op == "sum" and not numerical:
        op = "map" if "map" in ops else ops[0]
    if op == "map" or op == "sum" and not numerical:
        k = draw(st.integers(1, 3))
        inputs = [draw(recent)] + [draw(any_input) for _ in range(k - 1)]
        combos_n = 1
        for j, x in enumerate(inputs):
            combos_n *= built[x].value_set.size
            if combos_n > MAX_MAP_COMBOS:
                inputs = inputs[: max(1, j)]
                break
        coefs = [draw(COEFS) for _ in inputs]
        lo, hi = draw(st.integers(-2, 0)), draw(st.integers(1, 3))
        table = draw(st.lists(st.integers(lo, hi), min_size=2, max_size=5))
        return Node("map", tuple(inputs), fn=draw(MAP_FNS), coefs=tuple(coefs), table=tuple(table),
                    numerical=draw(st.booleans()))
    if op == "sum":
        inputs = [pick(numerical) for _ in range(draw(st.integers(1, 2)))]
        weights = [draw(WEIGHTS) for _ in inputs]
        return Node("sum", tuple(inputs), weights=tuple(weights), bias=draw(st.integers(-2, 2)))
    if op == "indices":
        return Node("indices")
    if op == "scan":
        m = draw(st.integers(2, 4))
        table = draw(st.lists(st.integers(0, m - 1), min_size=m, max_size=m))
        coefs = (draw(SCAN_COEFS), draw(SCAN_COEFS))
        return Node("scan", (draw(recent),), coefs=coefs, table=tuple(table), init=draw(st.integers(0, m - 1)))
    select, reduce = draw(st.sampled_from(combos))
    keys = (draw(recent), draw(any_input)) if select in COMPARISONS else ()
    if reduce == "sum" and not numerical:
        reduce = "count"
    if reduce == "count":
        value = (pick(binary),) if binary and draw(st.booleans()) else ()
    elif reduce == "sum":
        value = (pick(numerical),)
    else:
        value = (draw(any_input if keys else recent),)
    offset = draw(st.integers(1, 3)) if select == "offset" else 1
    default = draw(st.integers(-1, 3)) if select != "all" and reduce not in ("count", "sum") else 0
    return Node("aggregate", keys + value, select=select, offset=offset, reduce=reduce, default=default)
