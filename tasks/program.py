"""The program language: causal, RASP-like programs whose nodes are named high-level variables.

A program is a DAG of *variables*. Every variable has a value at every position t of the
input, and the value at t depends only on positions <= t (causality). Each variable is either

- **categorical**: a finite set of integer values (encoded one-hot by compilers), or
- **numerical**: a bounded integer range ``lo..hi`` (encoded as a magnitude by compilers).

Value sets are inferred when the node is built, from the value sets of its inputs, so that a
compiler knows how large to make every subspace. Primitives (meaning at position t):

=========================================  ====================================================
``Tokens(vocab)``                          the input token id at t
``Indices(max_len)``                       t itself
``Map(f, *xs, name=)``                     ``f(x1[t], x2[t], ...)``, tabulated over the inputs'
                                           value sets
``Sum(*xs, weights=, bias=, name=)``       ``bias + sum_i weights[i] * xs[i][t]`` (numerical)
``Aggregate(select, value, reduce, ...)``  ``reduce`` of ``value[j]`` over the positions
                                           ``j <= t`` picked by ``select``
``Scan(f, x, init=, name=)``               ``s[t] = f(s[t-1], x[t])``, ``s[-1] = init`` (its
                                           transition monoid is enumerated too: a transformer
                                           or SSM composes it as a parallel prefix,
                                           :mod:`tasks.rewrite`)
=========================================  ====================================================

Selections (:class:`Select`): ``Select.all()`` (every ``j <= t``), ``Select.eq(key, query)``
(``key[j] == query[t]``), the comparisons ``Select.lt/le/gt/ge(key, query)`` (``key[j] < query[t]``,
``<=``, ``>``, ``>=``: values compared as integers, so a categorical variable is ordered by its
values; rank-based algorithms count the smaller elements with them), ``Select.offset_by(k)``
(``j == t - k``). Reductions: ``count`` (how
many selected ``j`` have ``value[j] == 1``; ``value=None`` counts the selected positions),
``sum``, ``max``, ``min``, ``last`` (the value at the largest selected ``j``), ``first`` (at the
smallest). An empty selection yields ``default``.

Names are given by the author of a program, never generated from a counter, so building the
same program twice gives the same names. Nodes compare by identity; a :class:`Program` checks
that no two distinct nodes share a name.
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

CATEGORICAL = "categorical"
NUMERICAL = "numerical"
REDUCTIONS = ("count", "sum", "max", "min", "last", "first")
MAX_TABLE_SIZE = 1_000_000
# key[j] <op> query[t]: the selections that compare a key with a query (operator functions work on
# ints and, elementwise, on numpy arrays alike)
COMPARISONS = {"eq": operator.eq, "lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}
_SYMBOLS = {"eq": "==", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
MONOID_LIMIT = 1024  # a Scan's transition monoid is enumerated up to this many elements


@dataclass(frozen=True)
class ValueSet:
    """The values a variable can take: a sorted tuple of ints, categorical or numerical."""

    kind: str
    values: tuple[int, ...]

    def __post_init__(self):
        if self.kind not in (CATEGORICAL, NUMERICAL):
            raise ValueError(f"value-set kind {self.kind!r} must be {CATEGORICAL!r} or {NUMERICAL!r}")
        if not self.values:
            raise ValueError("a value set must not be empty")
        if list(self.values) != sorted(set(self.values)):
            raise ValueError(f"values must be sorted and distinct, got {self.values}")

    @classmethod
    def categorical(cls, values: Iterable[int]) -> "ValueSet":
        return cls(CATEGORICAL, tuple(sorted({int(v) for v in values})))

    @classmethod
    def numerical(cls, lo: int, hi: int) -> "ValueSet":
        return cls(NUMERICAL, tuple(range(int(lo), int(hi) + 1)))

    @property
    def lo(self) -> int:
        return self.values[0]

    @property
    def hi(self) -> int:
        return self.values[-1]

    @property
    def size(self) -> int:
        return len(self.values)

    @property
    def is_numerical(self) -> bool:
        return self.kind == NUMERICAL

    def index(self, values: np.ndarray) -> np.ndarray:
        """Position of each value in ``self.values`` (vectorised); values must belong to the set."""
        if self.hi - self.lo + 1 == self.size:  # contiguous: a subtraction
            return values - self.lo
        return np.searchsorted(np.asarray(self.values), values)

    def __str__(self) -> str:
        if self.kind == NUMERICAL:
            return f"numerical {self.lo}..{self.hi}"
        shown = ", ".join(map(str, self.values[:8])) + (", ..." if self.size > 8 else "")
        return f"categorical {{{shown}}}"


class Variable:
    """A node of a program: a named variable with a value at every position."""

    op: str = "variable"
    name: str
    value_set: ValueSet
    inputs: tuple["Variable", ...] = ()

    @property
    def kind(self) -> str:
        return self.value_set.kind

    @property
    def per_position(self) -> bool:
        """True when the value at t is a function of other variables at t alone.

        Per-position variables (tokens, indices, Map, Sum) are read at every t >= j after an
        intervention at j; sequence-mixing ones (Aggregate, Scan) only at t == j. See
        :mod:`tasks.interpreter`.
        """
        return True

    def describe(self) -> str:
        return self.op

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.value_set})"


def _check_name(name) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"variable name {name!r} must be a Python identifier, e.g. 'is_one'")
    return name


class Tokens(Variable):
    """The input tokens; ``vocab`` names the token ids 0..len(vocab)-1."""

    op = "tokens"

    def __init__(self, vocab: Sequence[str], name: str = "tokens"):
        self.name = _check_name(name)
        self.vocab = tuple(vocab)
        self.value_set = ValueSet.categorical(range(len(self.vocab)))

    def describe(self) -> str:
        return "tokens  [" + " ".join(self.vocab) + "]"


class Indices(Variable):
    """The position t, for inputs of at most ``max_len`` positions."""

    op = "indices"

    def __init__(self, max_len: int, name: str = "indices"):
        self.name = _check_name(name)
        self.max_len = int(max_len)
        self.value_set = ValueSet.categorical(range(self.max_len))

    def describe(self) -> str:
        return "indices"


class Map(Variable):
    """``f`` applied position-wise; tabulated over the product of the inputs' value sets."""

    op = "Map"

    def __init__(self, f: Callable[..., int], *xs: Variable, name: str, numerical: bool = False, desc: str | None = None):
        if not xs:
            raise ValueError(f"Map {name!r} needs at least one input variable")
        self.name = _check_name(name)
        self.f = f
        self.inputs = tuple(xs)
        self.desc = desc or getattr(f, "__name__", "f")
        size = int(np.prod([x.value_set.size for x in xs]))
        if size > MAX_TABLE_SIZE:
            raise ValueError(f"Map {name!r} would tabulate {size} input combinations (limit {MAX_TABLE_SIZE}); split it into smaller Maps")
        combos = list(itertools.product(*(x.value_set.values for x in xs)))
        table = np.array([int(f(*c)) for c in combos], dtype=np.int64)
        self.table = table  # indexed by the mixed-radix index of the inputs' value indices
        vals = sorted(set(table.tolist()))
        self.value_set = ValueSet.numerical(vals[0], vals[-1]) if numerical else ValueSet.categorical(vals)

    def describe(self) -> str:
        return f"Map({', '.join(x.name for x in self.inputs)})  [{self.desc}]"


class Sum(Variable):
    """A linear combination ``bias + sum_i weights[i] * xs[i]`` of numerical variables."""

    op = "Sum"

    def __init__(self, *xs: Variable, weights: Sequence[int] | None = None, bias: int = 0, name: str):
        self.name = _check_name(name)
        self.inputs = tuple(xs)
        self.weights = tuple(int(w) for w in (weights if weights is not None else [1] * len(xs)))
        self.bias = int(bias)
        if len(self.weights) != len(xs) or not xs:
            raise ValueError(f"Sum {name!r}: {len(xs)} inputs but {len(self.weights)} weights")
        for x in xs:
            if not x.value_set.is_numerical:
                raise ValueError(f"Sum {name!r}: input {x.name!r} is categorical; Sum takes numerical variables (Map it with numerical=True)")
        lo = self.bias + sum(min(w * x.value_set.lo, w * x.value_set.hi) for w, x in zip(self.weights, xs))
        hi = self.bias + sum(max(w * x.value_set.lo, w * x.value_set.hi) for w, x in zip(self.weights, xs))
        self.value_set = ValueSet.numerical(lo, hi)

    def describe(self) -> str:
        terms = [f"{w}*{x.name}" for w, x in zip(self.weights, self.inputs)]
        return "Sum(" + " + ".join(terms) + (f" + {self.bias}" if self.bias else "") + ")"


@dataclass(frozen=True, eq=False)
class Select:
    """Which positions ``j <= t`` an :class:`Aggregate` at ``t`` reduces over."""

    kind: str  # "all" | "offset" | one of COMPARISONS: "eq", "lt", "le", "gt", "ge"
    key: Variable | None = None
    query: Variable | None = None
    offset: int = 0

    @classmethod
    def all(cls) -> "Select":
        return cls("all")

    @classmethod
    def eq(cls, key: Variable, query: Variable) -> "Select":
        return cls("eq", key=key, query=query)

    @classmethod
    def lt(cls, key: Variable, query: Variable) -> "Select":
        """``key[j] < query[t]``."""
        return cls("lt", key=key, query=query)

    @classmethod
    def le(cls, key: Variable, query: Variable) -> "Select":
        """``key[j] <= query[t]``."""
        return cls("le", key=key, query=query)

    @classmethod
    def gt(cls, key: Variable, query: Variable) -> "Select":
        """``key[j] > query[t]``."""
        return cls("gt", key=key, query=query)

    @classmethod
    def ge(cls, key: Variable, query: Variable) -> "Select":
        """``key[j] >= query[t]``."""
        return cls("ge", key=key, query=query)

    @property
    def compares(self) -> bool:
        """Whether this selection compares a key with a query (``eq`` or an order comparison)."""
        return self.kind in COMPARISONS

    def matches(self, key, query):
        """``key <op> query`` for a comparing selection: ints, or numpy arrays elementwise."""
        return COMPARISONS[self.kind](key, query)

    @classmethod
    def offset_by(cls, k: int) -> "Select":
        if int(k) < 1:
            raise ValueError(f"offset {k} must be >= 1 (offset 0 is the position itself: use a Map)")
        return cls("offset", offset=int(k))

    @property
    def variables(self) -> tuple[Variable, ...]:
        return tuple(v for v in (self.key, self.query) if v is not None)

    @property
    def may_be_empty(self) -> bool:
        """Whether no position may be selected (``key[t] <op> query[t]`` holds for key is query
        when the comparison is reflexive: eq, le, ge)."""
        if self.kind in ("lt", "gt"):
            return True
        return self.kind == "offset" or (self.kind in COMPARISONS and self.key is not self.query)

    def __str__(self) -> str:
        if self.kind in COMPARISONS:
            return f"{self.key.name}[j] {_SYMBOLS[self.kind]} {self.query.name}[t]"
        if self.kind == "offset":
            return f"j == t-{self.offset}"
        return "all j <= t"


class Aggregate(Variable):
    """``reduce`` of ``value[j]`` over the selected positions ``j <= t``; ``default`` if none."""

    op = "Aggregate"

    def __init__(self, select: Select, value: Variable | None, reduce: str, *, name: str, default: int | None = None, max_len: int | None = None):
        self.name = _check_name(name)
        if reduce not in REDUCTIONS:
            raise ValueError(f"Aggregate {name!r}: unknown reduction {reduce!r}; valid: {', '.join(REDUCTIONS)}")
        if value is None and reduce != "count":
            raise ValueError(f"Aggregate {name!r}: reduction {reduce!r} needs a value variable")
        self.select, self.value, self.reduce = select, value, reduce
        self.max_len = max_len
        self.inputs = select.variables + ((value,) if value is not None else ())
        if reduce in ("count", "sum"):  # how many positions can be selected bounds the result
            n = 1 if select.kind == "offset" else (max_len if max_len is not None else _max_len_of(self.inputs))
        if reduce == "count":
            if value is not None and not set(value.value_set.values) <= {0, 1}:
                raise ValueError(f"Aggregate {name!r}: 'count' needs a 0/1 value, {value.name!r} is {value.value_set}")
            lo = 0 if select.may_be_empty or value is not None else 1
            self.value_set = ValueSet.numerical(lo, n)
            default = 0
        elif reduce == "sum":
            vs = value.value_set
            if not vs.is_numerical:
                raise ValueError(f"Aggregate {name!r}: 'sum' needs a numerical value, {value.name!r} is categorical (use 'count' for 0/1 flags)")
            self.value_set = ValueSet.numerical(min(0, n * vs.lo), max(0, n * vs.hi))
            default = 0
        else:
            vals = set(value.value_set.values)
            if select.may_be_empty:
                if default is None:
                    raise ValueError(f"Aggregate {name!r}: selection '{select}' may be empty, so reduction {reduce!r} needs default=")
                vals.add(int(default))
            vs = value.value_set
            self.value_set = ValueSet.numerical(min(vals), max(vals)) if vs.is_numerical else ValueSet.categorical(vals)
        self.default = int(default) if default is not None else 0

    @property
    def per_position(self) -> bool:
        return False

    def describe(self) -> str:
        value = self.value.name if self.value is not None else "1"
        extra = f", default={self.default}" if self.select.may_be_empty and self.reduce not in ("count", "sum") else ""
        return f"Aggregate({self.select}; {self.reduce} {value}{extra})"


class Scan(Variable):
    """A finite-state recurrence ``s[t] = f(s[t-1], x[t])`` with ``s[-1] = init``.

    The state set is the closure of ``{init}`` under ``f`` over the values of ``x``. The
    *transition monoid* is enumerated too: the functions states -> states that words of inputs
    induce (``x`` acts by ``s -> f(s, x)``), closed under composition, identity included. It is
    what a parallel prefix composes (:mod:`tasks.rewrite`): ``monoid`` is an int array
    ``[n, states]`` (element e maps the state of index i to the state of index ``e[i]``;
    element 0 is the identity), ``transition[i]`` the element of ``x``'s i-th value; both are
    None when the monoid has more than ``MONOID_LIMIT`` elements (``monoid_size`` is then
    ``MONOID_LIMIT + 1``).
    """

    op = "Scan"

    def __init__(self, f: Callable[[int, int], int], x: Variable, *, init: int, name: str, desc: str | None = None):
        self.name = _check_name(name)
        self.f, self.init, self.inputs = f, int(init), (x,)
        self.desc = desc or getattr(f, "__name__", "f")
        states, frontier = {self.init}, [self.init]
        while frontier:
            s = frontier.pop()
            for v in x.value_set.values:
                nxt = int(f(s, v))
                if nxt not in states:
                    states.add(nxt)
                    frontier.append(nxt)
                    if len(states) > 10_000:
                        raise ValueError(f"Scan {name!r} has more than 10000 reachable states")
        self.value_set = ValueSet.categorical(states)
        self.table = np.array([[int(f(s, v)) for v in x.value_set.values] for s in self.value_set.values], dtype=np.int64)
        self.monoid, self.transition = _transition_monoid(self.value_set.index(self.table))
        self.monoid_size = MONOID_LIMIT + 1 if self.monoid is None else len(self.monoid)

    @property
    def per_position(self) -> bool:
        return False

    def describe(self) -> str:
        return f"Scan({self.inputs[0].name}, init={self.init})  [{self.desc}]"


def _transition_monoid(next_index: np.ndarray):
    """The monoid generated by the columns of ``next_index`` ``[states, inputs]`` (state index ->
    next state index per input): ``(elements [n, states], transition [inputs])``, identity first,
    then in breadth-first order of words; ``(None, None)`` past ``MONOID_LIMIT`` elements."""
    generators = [np.ascontiguousarray(next_index[:, a]) for a in range(next_index.shape[1])]
    identity = np.arange(next_index.shape[0], dtype=np.int64)
    index = {identity.tobytes(): 0}
    elements = [identity]
    for e in elements:  # grows while it is walked: every word, one generator applied after another
        for g in generators:
            product = g[e]  # e first, then the generator
            key = product.tobytes()
            if key not in index:
                if len(elements) == MONOID_LIMIT:
                    return None, None
                index[key] = len(elements)
                elements.append(product)
    transition = np.array([index[g.tobytes()] for g in generators], dtype=np.int64)
    return np.stack(elements), transition


def _max_len_of(variables: Iterable[Variable]) -> int:
    for v in _ancestors(variables):
        if isinstance(v, Indices):
            return v.max_len
    raise ValueError("an Aggregate needs max_len= when no Indices variable is among its ancestors")


def _ancestors(roots: Iterable[Variable]) -> list[Variable]:
    """All variables reachable from ``roots``, inputs before their users, in a fixed order."""
    order: list[Variable] = []
    seen: set[int] = set()

    def visit(v: Variable):
        if id(v) in seen:
            return
        seen.add(id(v))
        for u in v.inputs:
            visit(u)
        order.append(v)

    for r in roots:
        visit(r)
    return order


class Program:
    """A program: its output variable and every variable it depends on, in dependency order.

    ``decoys``: extra sink variables computed beside the output from the same inputs and read by
    nothing the output uses (see :mod:`tasks.decoys`). A program with decoys is still one
    program: the interpreter evaluates and intervenes on every variable; ``output_names`` are
    the variables the output depends on, ``decoy_names`` the rest.
    """

    def __init__(self, output: Variable, decoys: Sequence[Variable] = ()):
        self.output = output
        self.decoys: tuple[Variable, ...] = tuple(decoys)
        self.variables: tuple[Variable, ...] = tuple(_ancestors([output, *self.decoys]))
        self.output_names: frozenset[str] = frozenset(v.name for v in _ancestors([output]))
        self.decoy_names: tuple[str, ...] = tuple(v.name for v in self.variables if v.name not in self.output_names)
        by_name: dict[str, Variable] = {}
        for v in self.variables:
            if v.name in by_name:
                raise ValueError(f"two different variables are named {v.name!r}; give each node a unique name")
            by_name[v.name] = v
        self.by_name = by_name
        tokens = [v for v in self.variables if isinstance(v, Tokens)]
        if len(tokens) != 1:
            raise ValueError(f"a program reads exactly one Tokens variable, found {len(tokens)}")
        self.tokens: Tokens = tokens[0]

    def __getitem__(self, name: str) -> Variable:
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"no variable {name!r} in this program; variables: {', '.join(self.by_name)}") from None

    def __iter__(self):
        return iter(self.variables)

    def __len__(self) -> int:
        return len(self.variables)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variables)

    def depends_on(self, name: str) -> bool:
        """Whether the output reads variable ``name`` (every variable but the decoys)."""
        return name in self.output_names

    def layers(self) -> dict[str, int]:
        """Depth of each variable: inputs 0, a sequence-mixing node one past its deepest input."""
        depth: dict[str, int] = {}
        for v in self.variables:
            below = [depth[u.name] for u in v.inputs]
            depth[v.name] = (max(below) if below else 0) + (0 if v.per_position else 1)
        return depth

    def describe(self) -> str:
        """The program in readable form, one variable a line."""
        width = max(len(v.name) for v in self.variables)
        lines = []
        for v in self.variables:
            mark = "   <- output" if v is self.output else ("   <- decoy output" if v in self.decoys else "")
            lines.append(f"{v.name:<{width}} = {v.describe():<48} : {v.value_set}{mark}")
        return "\n".join(lines)
