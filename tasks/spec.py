"""Programs as plain data: a JSON description of a program, built into a :class:`Program` and a task.

Random programs (:func:`tasks.strategies.programs`) are drawn as a :class:`ProgramSpec`, so a
drawn case can be printed, saved beside a model and rebuilt exactly (``zoo falsify`` does).
A spec is a token alphabet, a length limit, an I/O mode and a list of :class:`Node` s. Node 0 is
``tokens``; node ``i >= 1`` is ``spec.nodes[i - 1]`` and reads earlier nodes by index. The last
node is the output. Functions are given as tables, so every node is defined on every input value
at every ``max_len``:

- ``map``: ``table[k]`` with ``s = sum_i coefs[i] * x_i`` and ``k = s mod len(table)`` (``fn="mod"``)
  or ``k = clip(s, 0, len(table) - 1)`` (``fn="clip"``); categorical, or numerical if ``numerical``;
- ``sum``: ``bias + sum_i weights[i] * x_i`` over numerical inputs;
- ``aggregate``: ``Select.all()``, ``Select.offset_by(offset)`` or a comparison
  ``Select.eq/lt/le/gt/ge(key, query)`` (the first two inputs), then ``reduce`` of the value
  (the last input; ``count`` may have none);
- ``scan``: ``s[t] = table[(coefs[0] * s[t-1] + coefs[1] * x[t]) mod len(table)]``, ``s[-1] = init``;
- ``indices``: the position (every ``indices`` node is the same variable).

The task around a spec (:meth:`ProgramSpec.task`) has the vocabulary ``BOS`` (``SEP``) ``a b c
..``, a seeded sampler whose token frequencies vary per sequence (so counts cover their range),
the readout of its mode, and as its ``reference`` *the interpreter itself*: a random program has
no independent plain-Python version, so the reference check of a catalogue task means nothing
for it. Everything that takes a task takes it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields

import numpy as np

from . import interpreter
from .program import COMPARISONS, Aggregate, Indices, Map, Program, Scan, Select, Sum, Tokens, Variable
from .task import BOS, SEQ2SEQ, TRANSDUCTION, Task

OPS = ("map", "sum", "aggregate", "scan", "indices")
SELECTS = ("all", "offset") + tuple(COMPARISONS)  # eq, then the order comparisons lt, le, gt, ge
LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Node:
    """One variable of a :class:`ProgramSpec` (see the module docstring for each op's fields)."""

    op: str
    inputs: tuple[int, ...] = ()
    fn: str = "mod"
    coefs: tuple[int, ...] = ()
    table: tuple[int, ...] = ()
    numerical: bool = False
    weights: tuple[int, ...] = ()
    bias: int = 0
    select: str = "all"
    offset: int = 1
    reduce: str = "count"
    default: int = 0
    init: int = 0

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"node op {self.op!r} must be one of {', '.join(OPS)}")
        for name in ("inputs", "coefs", "table", "weights"):
            object.__setattr__(self, name, tuple(int(x) for x in getattr(self, name)))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={tuple(v) if isinstance(v, list) else v!r}" for k, v in self.to_json().items() if k != "op")
        return f"Node({self.op!r}" + (f", {args})" if args else ")")

    def to_json(self) -> dict:
        """The fields that differ from their defaults (a compact, stable form)."""
        defaults = Node("map")
        out = {"op": self.op}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "op" and value != getattr(defaults, f.name):
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_json(cls, d: dict) -> "Node":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown node field(s) {', '.join(unknown)} in {d}; valid: {', '.join(sorted(known))}")
        return cls(**d)


@dataclass(frozen=True)
class ProgramSpec:
    """A program as data: ``symbols`` body tokens, ``max_len``, ``mode`` and the nodes after tokens."""

    symbols: int
    max_len: int
    mode: str = TRANSDUCTION
    nodes: tuple[Node, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if not 1 <= self.symbols <= len(LETTERS):
            raise ValueError(f"symbols {self.symbols} must be within 1..{len(LETTERS)}")
        if self.mode not in (TRANSDUCTION, SEQ2SEQ):
            raise ValueError(f"mode {self.mode!r} must be {TRANSDUCTION!r} or {SEQ2SEQ!r}")
        object.__setattr__(self, "nodes", tuple(self.nodes))
        for i, node in enumerate(self.nodes, 1):
            if any(not 0 <= j < i for j in node.inputs):
                raise ValueError(f"node {i} ({node.op}) reads {list(node.inputs)}; a node reads earlier nodes only (0..{i - 1})")

    # -- vocabulary -------------------------------------------------------------------------------
    @property
    def vocab(self) -> tuple[str, ...]:
        return ("BOS",) + (("SEP",) if self.mode == SEQ2SEQ else ()) + tuple(LETTERS[: self.symbols])

    @property
    def alphabet(self) -> tuple[int, ...]:
        first = 2 if self.mode == SEQ2SEQ else 1
        return tuple(range(first, first + self.symbols))

    @property
    def name(self) -> str:
        """``random_`` and a hash of the spec: the same spec always has the same name."""
        return "random_" + hashlib.sha1(self.dumps().encode()).hexdigest()[:8]

    # -- the program ------------------------------------------------------------------------------
    def variable_name(self, i: int) -> str:
        if i == 0:
            return "tokens"
        node = self.nodes[i - 1]
        if node.op == "indices":
            return "indices"
        return f"{node.reduce if node.op == 'aggregate' else node.op}{i}"

    def variables(self, max_len: int | None = None) -> list[Variable]:
        """Every node's variable, built in order (node i at index i); a bad node raises a
        ValueError naming it."""
        max_len = self.max_len if max_len is None else int(max_len)
        built: list[Variable] = [Tokens(self.vocab)]
        for i in range(1, len(self.nodes) + 1):
            built.append(self.build_node(i, built, max_len))
        return built

    def build_node(self, i: int, built: list[Variable], max_len: int | None = None) -> Variable:
        """Node ``i``'s variable, given the variables ``built`` of nodes ``0..i-1``; a bad node
        raises a ValueError naming it."""
        try:
            return self._build_node(i, self.nodes[i - 1], built, self.max_len if max_len is None else int(max_len))
        except ValueError as err:
            raise ValueError(f"node {i} ({self.nodes[i - 1].op}): {err}") from None

    def _build_node(self, i: int, node: Node, built: list, max_len: int) -> Variable:
        xs = [built[j] for j in node.inputs]
        name = self.variable_name(i)
        if node.op == "indices":
            shared = [v for v in built if isinstance(v, Indices)]
            return shared[0] if shared else Indices(max_len)
        if node.op == "map":
            f = map_function(node.fn, node.coefs, node.table)
            return Map(f, *xs, name=name, numerical=node.numerical, desc=map_desc(node, [x.name for x in xs]))
        if node.op == "sum":
            return Sum(*xs, weights=node.weights, bias=node.bias, name=name)
        if node.op == "scan":
            f = scan_function(node.coefs, node.table)
            return Scan(f, xs[0], init=node.init, name=name, desc=scan_desc(node))
        if node.select in COMPARISONS:
            select, rest = getattr(Select, node.select)(xs[0], xs[1]), xs[2:]
        elif node.select == "offset":
            select, rest = Select.offset_by(node.offset), xs
        elif node.select == "all":
            select, rest = Select.all(), xs
        else:
            raise ValueError(f"selection {node.select!r} must be one of {', '.join(SELECTS)}")
        value = rest[0] if rest else None
        default = node.default if select.may_be_empty and node.reduce not in ("count", "sum") else None
        return Aggregate(select, value, node.reduce, name=name, default=default, max_len=max_len)

    def build(self, max_len: int | None = None) -> Program:
        """The program (its output is the last node; nodes it does not read are left out). The
        output must read the tokens."""
        return Program(self.variables(max_len)[-1])

    def reads_tokens(self) -> bool:
        """Whether the output depends on the tokens (a program must)."""
        reach = {len(self.nodes)}
        for i in range(len(self.nodes), 0, -1):
            if i in reach:
                reach.update(self.nodes[i - 1].inputs)
        return 0 in reach

    def task(self) -> "SpecTask":
        """A task around the program (see the module docstring)."""
        body = f"{len(self.nodes)} node(s), {self.symbols} symbol(s), max_len {self.max_len}, {self.mode}"
        return SpecTask(self.name, self.vocab, self.max_len, self.build, self.reference, alphabet=self.alphabet, mode=self.mode,
                        generate=varied_inputs, doc=f"A random program ({body}); reference: the interpreter itself.", spec=self)

    def reference(self, seq: list[int]) -> list:
        """The outputs per position (None where not read out), from the interpreter: a random
        program has no independent reference."""
        task = self.task().with_max_len(max(len(seq), self.max_len))
        tokens = np.asarray([seq], dtype=np.int64)
        values = interpreter.run(task.program, tokens)[task.output.name][0]
        mask = task.readout_mask(tokens)[0]
        return [int(v) if m else None for v, m in zip(values, mask)]

    # -- JSON ------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"symbols": self.symbols, "max_len": self.max_len, "mode": self.mode, "nodes": [n.to_json() for n in self.nodes]}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, d: dict) -> "ProgramSpec":
        missing = [k for k in ("symbols", "max_len", "nodes") if k not in d]
        if missing:
            raise ValueError(f"a program spec needs {', '.join(missing)}; got keys {', '.join(d) or 'none'}")
        return cls(int(d["symbols"]), int(d["max_len"]), d.get("mode", TRANSDUCTION), tuple(Node.from_json(n) for n in d["nodes"]))

    @property
    def size(self) -> tuple[int, int, int]:
        """(program variables, symbols, max_len): what shrinking makes smaller."""
        return (len(self.build()), self.symbols, self.max_len)


@dataclass(frozen=True)
class SpecTask(Task):
    """A :class:`Task` built from a :class:`ProgramSpec` (``spec`` holds it)."""

    spec: ProgramSpec | None = None


def spec_of(task: Task) -> ProgramSpec | None:
    """The spec a task was built from, or None for a catalogue task."""
    return getattr(task, "spec", None)


# -- functions given as tables ---------------------------------------------------------------------
def map_function(fn: str, coefs: tuple[int, ...], table: tuple[int, ...]):
    if fn not in ("mod", "clip"):
        raise ValueError(f"map fn {fn!r} must be 'mod' or 'clip'")
    if not table:
        raise ValueError("a map needs a non-empty table")
    m = len(table)

    def f(*xs):
        s = sum(c * int(x) for c, x in zip(coefs, xs))
        return table[s % m] if fn == "mod" else table[min(max(s, 0), m - 1)]

    return f


def scan_function(coefs: tuple[int, ...], table: tuple[int, ...]):
    if len(coefs) != 2 or not table:
        raise ValueError("a scan needs coefs (a, b) and a non-empty table")
    a, b = coefs
    m = len(table)
    return lambda s, x: table[(a * s + b * int(x)) % m]


def _linear(coefs, names) -> str:
    terms = [f"{c}*{n}" if c != 1 else n for c, n in zip(coefs, names)]
    return " + ".join(terms).replace("+ -", "- ")


def map_desc(node: Node, names: list[str]) -> str:
    s = _linear(node.coefs, names)
    index = f"({s}) mod {len(node.table)}" if node.fn == "mod" else f"clip({s}, 0, {len(node.table) - 1})"
    return f"{list(node.table)}[{index}]"


def scan_desc(node: Node) -> str:
    a, b = node.coefs
    return f"{list(node.table)}[({a}*s + {b}*x) mod {len(node.table)}]"


# -- the sampler ---------------------------------------------------------------------------------------
def varied_inputs(rng: np.random.Generator, n: int, length: int, task: Task) -> np.ndarray:
    """Inputs whose token frequencies vary per sequence (a Dirichlet draw per row), so that
    counts and sums cover their whole range; BOS first and, in seq2seq mode, SEP at a uniform
    position in ``2..sep_position(length)`` (as :meth:`Task.random_inputs` places it)."""
    alphabet = np.asarray(task.alphabet)
    probs = rng.dirichlet(np.full(len(alphabet), 0.5), size=n)
    u = rng.random((n, length, 1))
    idx = np.minimum((u > np.cumsum(probs, axis=1)[:, None, :]).sum(axis=2), len(alphabet) - 1)
    tokens = alphabet[idx]
    tokens[:, 0] = BOS
    if task.mode == SEQ2SEQ:
        sep = rng.integers(2, task.sep_position(length) + 1, size=n)
        tokens[np.arange(n), sep] = task.sep
    return tokens

