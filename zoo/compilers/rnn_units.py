"""Building blocks of the RNN compiler (see :mod:`zoo.compilers.rnn` for the constructions).

- :class:`Aff`: a sparse affine functional ``w . h + c`` of one layer's units;
- :class:`Acc`: how a variable is read at a layer (one-hot functionals per value, or a value);
- :class:`UnitBuilder`: per-layer unit lists with their input/recurrent weights and biases, the
  clock (``clk`` constant 1, ``[t == 0] = 1 - clk_{t-1}``, a delay line ``b^i_t = [t == i]``),
  copies of a variable into higher layers (identity units, per position) and the decoding of a
  magnitude into one-hot functionals by ramps ``relu(c - k)``.
"""

from __future__ import annotations

from collections import defaultdict

from tasks import Task
from tasks.program import Variable

from ..compile import CompileError

FAMILY = "rnn"
EXACT_LIMIT = 2**22  # integers the construction writes stay below this (float32 is exact to 2^24)
MAX_UNITS = 20_000


class Aff:
    """An affine functional ``w . h + c`` of one layer's units (sparse)."""

    __slots__ = ("w", "c")

    def __init__(self, w: dict | None = None, c: float = 0.0):
        self.w = {k: float(v) for k, v in (w or {}).items() if v != 0}
        self.c = float(c)

    def __add__(self, other):
        if isinstance(other, (int, float)):
            return Aff(self.w, self.c + other)
        w = dict(self.w)
        for k, v in other.w.items():
            w[k] = w.get(k, 0.0) + v
        return Aff(w, self.c + other.c)

    __radd__ = __add__

    def __sub__(self, other):
        return self + (-1.0) * other

    def __rsub__(self, other):
        return (-1.0) * self + other

    def __mul__(self, s: float):
        return Aff({k: v * s for k, v in self.w.items()}, self.c * s)

    __rmul__ = __mul__

    def __neg__(self):
        return self * -1.0

    @property
    def is_const(self) -> bool:
        return not self.w


def unit_aff(u: int) -> Aff:
    return Aff({u: 1.0})


class Acc:
    """How a variable is read at one layer: one-hot functionals per value and/or its value."""

    def __init__(self, layer: int, onehot: dict | None = None, value: Aff | None = None):
        self.layer, self.onehot, self._value = layer, onehot, value

    @property
    def value(self) -> Aff:
        if self._value is not None:
            return self._value
        return sum((float(v) * f for v, f in self.onehot.items()), Aff())

    def functionals(self) -> list[Aff]:
        return list(self.onehot.values()) if self.onehot is not None else [self._value]


class Layer:
    def __init__(self):
        self.roles: list[str] = []
        self.w_in: list[dict] = []
        self.w_rec: list[dict] = []
        self.bias: list[float] = []

    def __len__(self):
        return len(self.roles)


VAR, TIME, INTERNAL = "var", "time", "internal"


class UnitBuilder:
    """Units of every layer, the clock, copies and decodings; the primitives live in a subclass."""

    def __init__(self, task: Task):
        self.task = task
        self.program = task.program
        self.max_len = task.max_len
        self.vocab = len(task.vocab)
        self.layers: list[Layer] = []
        self.home: dict[str, Acc] = {}
        self.cache: dict = {}
        self.clocks: dict[int, int] = {}
        self.chains: dict[int, list[int]] = {}
        self.components: dict[str, list[int]] = defaultdict(list)
        self.current = ""  # the variable being built: what new units hold (see unit())
        self.roles: dict[tuple[int, int], tuple[str, str]] = {}  # (layer, unit) -> (variable, mode): zoo.cells

    # -- units -------------------------------------------------------------------------------
    def layer(self, k: int) -> Layer:
        while len(self.layers) <= k:
            self.layers.append(Layer())
        return self.layers[k]

    def unit(self, k: int, role: str, inp: Aff | None = None, rec: Aff | None = None, bias: float = 0.0, *, mode: str = "pos", owner: str | None = None) -> int:
        """A new unit of layer k. ``mode`` and ``owner`` say what it holds (zoo.cells): the
        variable being built (or ``owner``), at its position (``pos``) or carried forward in
        time (``state``); clock units are ``const``."""
        if k < 0:
            raise AssertionError("units live in layers >= 0")
        L = self.layer(k)
        L.roles.append(role)
        L.w_in.append({})
        L.w_rec.append({})
        L.bias.append(0.0)
        u = len(L) - 1
        self.roles[k, u] = (owner or self.current, "const" if role == TIME else mode)
        self.connect(k, u, inp, rec, bias)
        if len(L) > MAX_UNITS:
            raise CompileError(FAMILY, "width", f"layer {k} would need more than {MAX_UNITS} units for task {self.task.name!r} at max_len {self.max_len}")
        return u

    def connect(self, k: int, u: int, inp: Aff | None = None, rec: Aff | None = None, bias: float = 0.0):
        L = self.layer(k)
        for src, part in ((inp, L.w_in[u]), (rec, L.w_rec[u])):
            if src is None:
                continue
            for j, w in src.w.items():
                part[j] = part.get(j, 0.0) + w
            L.bias[u] += src.c
        L.bias[u] += bias

    def first(self, k: int) -> Aff:
        """A recurrent functional equal to ``[t == 0]`` in layer k (through the clock unit)."""
        if k not in self.clocks:
            self.clocks[k] = self.unit(k, TIME, bias=1.0)
        return Aff({self.clocks[k]: -1.0}, 1.0)

    def chain(self, k: int, n: int) -> list[int]:
        """Units ``b^i_t = [t == i]`` for i < n in layer k (input-independent)."""
        units = self.chains.setdefault(k, [])
        while len(units) < n:
            rec = self.first(k) if not units else unit_aff(units[-1])
            units.append(self.unit(k, TIME, rec=rec))
        return units[:n]  # the chain is shared: a longer one (Indices') may exist already

    def early(self, k: int, n: int) -> Aff:
        """A recurrent functional equal to ``[t < n]`` in layer k."""
        out = self.first(k)
        if n >= 2:
            out = out + sum((unit_aff(b) for b in self.chain(k, n - 1)), Aff())
        return out

    # -- reading variables ---------------------------------------------------------------------
    def avail(self, v: Variable, onehot: bool) -> int:
        """The lowest layer where ``v`` can be read (one-hot if asked)."""
        home = self.home[v.name]
        return home.layer + 1 if onehot and home.onehot is None else home.layer

    def acc(self, v: Variable, m: int, onehot: bool) -> Acc:
        """How to read ``v`` at layer m, creating copies (and a decoding) as needed."""
        home = self.home[v.name]
        cur = self.decoded(v) if onehot and home.onehot is None else home
        if cur.layer > m:
            raise AssertionError(f"{v.name} is not available at layer {m}")
        kind = "oh" if cur.onehot is not None else "val"
        for k in range(cur.layer + 1, m + 1):
            key = (v.name, kind, k)
            if key not in self.cache:
                self.cache[key] = self.copy(v, cur, k, INTERNAL)
            cur = self.cache[key]
        return cur

    def copy(self, v: Variable, cur: Acc, k: int, role: str) -> Acc:
        if cur.onehot is not None:
            out = {}
            for value, f in cur.onehot.items():
                out[value] = f if f.is_const else unit_aff(self.unit(k, role, inp=f, owner=v.name))
            return Acc(k, onehot=out)
        lo = v.value_set.lo
        return Acc(k, value=Aff({self.unit(k, role, inp=cur.value - lo, owner=v.name): 1.0}, lo))

    def decoded(self, v: Variable) -> Acc:
        """One-hot functionals of a magnitude, one layer above it (ramps ``relu(c - k)``)."""
        key = (v.name, "decoded")
        if key not in self.cache:
            home = self.home[v.name]
            lo, hi = v.value_set.lo, v.value_set.hi
            k = home.layer + 1
            if hi - lo + 1 > MAX_UNITS:
                raise CompileError(FAMILY, "decoding", f"decoding {v.name!r} ({lo}..{hi}) would need more than {MAX_UNITS} units in layer {k} (max_len {self.max_len})")
            ramps = {j: unit_aff(self.unit(k, INTERNAL, inp=home.value - j, owner=v.name)) for j in range(lo - 1, hi)}
            R = lambda j: ramps.get(j, Aff())  # noqa: E731  (r_j = 0 for j >= hi)
            self.cache[key] = Acc(k, onehot={val: R(val - 1) - 2 * R(val) + R(val + 1) for val in v.value_set.values})
        return self.cache[key]
