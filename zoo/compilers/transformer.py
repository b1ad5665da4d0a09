"""The transformer compiler: a program turned into exact weights for :class:`zoo.families.transformer.Transformer`.

Tracr-style, but our own construction. Everything below is float32 with ``attn_scale = 1``.

Residual stream (all subspaces are blocks of standard basis vectors, so ground-truth bases are
rows of the identity):

- a position one-hot ``P_t`` (``max_len`` dims, from ``pos_embed``). It is the ``indices``
  variable when the program reads ``Indices``, hidden (input-independent) otherwise. Every
  positional feature is linear in it: the constant ``one = sum_t P_t``, the BOS marker
  ``bos = P_0``, ``t`` itself, ``log(C - t)``, ``[t < k]``. Being input-independent, it is
  identical in a base and a source run of the same length, so patching it changes nothing;
- a token one-hot (``vocab`` dims, from ``embed``): the ``tokens`` variable;
- one block per program variable: one-hot over its value set (categorical) or a single
  direction holding the value as a magnitude (numerical);
- scratch dims for the few attention outputs that an MLP must decode (the per-key counts of a
  key==query ``count``). The decoding MLP writes ``-scratch`` back, so scratch is exactly zero in
  every ``L{l}.resid``; a ``resid_mid`` that holds scratch is in the circuit but not in
  ``site_variables``.

Layers are scheduled by dependency depth (as soon as possible): a ``Map``/``Sum`` whose inputs
are in ``L{l}.resid_mid`` is computed by MLP l and lives in ``L{l+1}.resid``; an ``Aggregate``
whose inputs are in ``L{l}.resid`` is computed by heads of attention layer l and lives in
``L{l}.resid_mid`` (in ``L{l+1}.resid`` when it needs a decoding MLP). ``tokens`` and
``indices`` live in ``L0.resid``. A variable's location is the first site that holds it, so every
reader comes after it; it stays, in the same basis, in every later residual site. Unused heads
and MLP units are zero.

Attention constructions (score gap ``G = 120``: a key whose score is at least G below the
maximum gets weight ``exp(-120) < 2^-149``, which underflows to exactly 0 in float32, so a unique
winner gets weight exactly 1 and the head copies its value vector exactly):

- *select-all count/sum, the exact-mean head*: the BOS key scores ``log(C - t)`` (C = max_len),
  every other key 0, so the softmax denominator is ``(C - t) + t = C`` and every position
  ``1 <= j <= t`` gets weight ``1/C`` whatever t is. The value reads the summand with its BOS
  value subtracted (so BOS contributes 0) and W_O multiplies by C: the head writes
  ``sum_{1<=j<=t} value_j`` directly, no division by t+1 and no decoding MLP (unlike Tracr's
  mean + numerical MLP, which is exact only up to length ~6). The constant BOS term is added by
  a *constant head* (all weight on BOS, value = the constant). Error: each weight is
  ``(1 + eta)/C`` with ``|eta| <= 8 * 2^-24`` (rounding of log, exp, the sum and the division),
  so the written sum is off by at most ``5e-7 * sum_j |value_j| <= 5e-7 * max_len * max|value|``
  (``< 1e-3`` for every catalogue task; the compiler refuses lengths where the bound would exceed
  ``0.02``), far inside the +-0.5 margins of every reader below;
- *select-all max/min*: key score ``+-G * value_j`` (the value's index for categorical values):
  the maximum wins by at least G; ties hold the same value, so their average is that value;
- *select-all last/first*: attend to the position itself / to BOS;
- *offset k*: score ``G * [j == t - k]`` from the position one-hots; for ``t < k`` the query
  scores ``G`` on BOS instead. When the default differs from the (constant) value at BOS, a
  *default head* puts all its weight on BOS when ``t < k`` (score ``+G``) and none otherwise
  (score ``-G``: exactly 0 weight), its value ``bos * (rep(default) - rep(value at BOS))``;
- *key == query last/first/max/min*: score ``H * [key_j == query_t] + P(j)`` with the preference
  ``P`` = ``G * j`` (last), ``G * (max_len - 1 - j)`` (first) or ``+-G * value index`` (max/min),
  ``H = Pmax - Pmin + 2G``: a match beats every non-match by at least G, and the preferred match
  beats the others by G. The BOS key's score is rewritten through the BOS marker (a function of
  the query alone, since BOS's key is a constant ``k0``): ``H + P(0)`` when ``query_t == k0`` (a
  real match), else the sink score ``Pmax + G``, between every non-match and every match. An
  empty selection therefore selects BOS; a default head (``+2G`` on matches, ``G`` on a
  non-matching BOS, ``-2G`` on a matching BOS, value on BOS only) then adds
  ``rep(default) - rep(value at BOS)`` exactly when nothing matches;
- *key <op> query* (``lt``, ``le``, ``gt``, ``ge``: ``Select.lt(key, query)`` and its kin,
  categorical key and query ordered by value): the same heads with ``[key_j == u]`` replaced
  by the key functional ``sum_{w <op> u} [key_j == w]`` of each query value u (still 0/1,
  since the key is one-hot), so ``H * [key_j <op> query_t]`` separates selected from not; BOS
  is a real match for the query values u with ``k0 <op> u``;
- *key <op> query count (no value)*, ``==`` included: the exact-mean head with a one-hot value
  counts, per query value u, the keys it selects into a scratch dim,
  ``c_u = #{1 <= j <= t: key_j <op> u}``; the MLP picks the query's count,
  ``ReLU(c_u + [k0 <op> u] + M [query_t == u] - M)`` with ``M = max_len + 2``, and cleans scratch;
- a *position-0 fix head* (self attention, value ``bos``) is added whenever the heads above
  would write something other than the program's value at position 0 (all position-0 values are
  constants, since every input starts with BOS).

MLP constructions:

- ``Map`` of categorical inputs: one unit per input combination (whose output differs from the
  most common output), ``ReLU(sum_i onehot_i - (k-1))``, exactly 1 on its combination and 0
  elsewhere; it writes ``rep(f(combo)) - rep(base)``, the bias writes ``rep(base)``;
- ``Map`` with numerical inputs: a mixed-radix index ``z = sum_i K_i (x_i - lo_i)`` of the
  numerical inputs is an integer; categorical inputs gate a unit by adding
  ``M (sum of their one-hots - k)`` with ``M`` above z's range (0 when all match, <= -M else).
  Two exact tabulations of f along z, the cheaper one used: *hats*
  ``ReLU(z - z0 + 1) - 2 ReLU(z - z0) + ReLU(z - z0 - 1)``, 1 at ``z0`` and 0 at every other integer
  (3 units per combination whose output differs from the base; an input off by ``dz`` moves the
  output by at most ``2|dz|``), or *steps* ``ReLU(z - i + 1) - ReLU(z - i)``, 0 for ``z <= i - 1``
  and 1 for ``z >= i`` (2 units per change of f along z, per gate: a threshold such as
  ``count <= rank`` costs 2 units per gate instead of 3 per combination). Steps are used only
  while their rounding (``8 * 2^-24 * |pre-activation|`` per active pair) sums to at most 0.05;
- ``Sum``: ``ReLU(x)`` and ``ReLU(-x)`` units (one suffices when x has one sign) times the weights.

Why the whole model is exact (float32, every length up to max_len): attention scores are sums
of a few products of integers and multiples of G below ``G (2 max_len + 4)`` (rounding < 1e-3,
against gaps of G = 120), so every selecting head puts weight exactly 1 on its winner (or splits
it over positions holding the same value) and 0 elsewhere; one-hot variables are therefore
0/1 up to ~1e-7, and the only non-integer errors are the exact-mean head's (< 1e-3, bound
above), carried through copies and Sums. Every reader tolerates far more: an AND unit or a gate
sees an error of at most ``k`` times its inputs', a hat or a step moves by at most ``2|dz|``, the
unembedding's margin is ``1 - 2|error|``. The tests check this at every length up to max_len,
under interchange interventions, and after reparametrisation (a rotation adds ~1e-6 relative).

Unembedding: a categorical output's logits are its one-hot; a numerical output x gives
``logit_c = 2 c x - c^2`` (``-(x - c)^2`` up to a term shared by all classes), whose argmax is the
nearest class, with margin ``1 - 2|x - value|``.

``Scan``: a fixed-depth transformer cannot step through an automaton, so the compiler compiles
the program rewritten by :func:`tasks.rewrite.parallel_prefix`, exact up to ``max_len``: round
k (layer k-1) is an offset head reading the partial product 2^(k-1) positions back (the
token itself in round 1) and an MLP tabulating the transition monoid's products (an AND unit
per pair of elements whose product differs from the most common one), ``ceil(log2 max_len)``
layers in all. The stages are ground-truth ``stages`` (``zoo.compilers.stages``): ``_lag`` at
``L{k-1}.resid_mid``, ``_prod`` at ``L{k}.resid``; the Scan's own variable at
``L{K}.resid``, its components every head and MLP of the prefix.

Refusals: a ``Scan`` whose transition monoid has more than ``tasks.rewrite.MAX_MONOID``
elements (``CompileError("transformer", "Scan", ...)`` naming the size), key <op> query
selections on numerical variables, key <op> query count/sum of a value (an AND of two
one-hots, which an attention value cannot form), Maps over more than 20000 input
combinations, and lengths above the error bound of the exact-mean head.
The ``seed`` is accepted for interface symmetry; compiled weights are deterministic.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict

import numpy as np
import torch

from tasks import interpreter
from tasks.program import Aggregate, Indices, Map, Sum, Tokens, Variable
from tasks.rewrite import MonoidTooLarge, parallel_prefix

from ..compile import CompileError
from ..families.transformer import Transformer, TransformerConfig
from ..cells import Block, attach
from ..ground_truth import GroundTruth, Location, Readout
from .stages import with_stages

FAMILY = "transformer"
G = 120.0  # score gap: exp(-G) underflows to exactly 0 in float32
MAX_MAP_TABLE = 20_000
MEAN_HEAD_ERROR_LIMIT = 0.02


def _axpy(acc: dict, vec: dict, scale: float = 1.0) -> dict:
    for k, v in vec.items():
        acc[k] = acc.get(k, 0.0) + scale * v
    return acc


def _scaled(vec: dict, scale: float) -> dict:
    return {k: scale * v for k, v in vec.items()}


class _Head:
    def __init__(self, qk, vo, reads, label):
        self.qk, self.vo, self.reads, self.label = qk, vo, tuple(reads), label


class _Compiler:
    def __init__(self, task):
        self.task = task
        self.L = int(task.max_len)
        try:  # a Scan becomes its parallel prefix: offsets and Maps (tasks.rewrite)
            self.prog, self.stage_of = parallel_prefix(task.program, self.L)
        except MonoidTooLarge as err:
            raise CompileError(FAMILY, "Scan", str(err)) from None
        self.p0 = {k: int(a[0, 0]) for k, a in interpreter.run(self.prog, np.zeros((1, 1), dtype=np.int64)).items()}
        self.d = 0
        self.dims: dict[str, list[int]] = {}
        indices = [v for v in self.prog.variables if isinstance(v, Indices)]
        self.pos = self._alloc(indices[0].name if indices else "_position", self.L)
        if indices and indices[0].max_len != self.L:
            raise CompileError(FAMILY, "Indices", f"Indices max_len {indices[0].max_len} differs from the task's max_len {self.L}")
        for v in self.prog.variables:
            if v.name not in self.dims:
                self._alloc(v.name, 1 if v.value_set.is_numerical else v.value_set.size)
        self.one = {d: 1.0 for d in self.pos}
        self.bos = {self.pos[0]: 1.0}
        self.heads: dict[int, list[_Head]] = defaultdict(list)
        self.units: dict[int, list[tuple[dict, float, dict]]] = defaultdict(list)
        self.b_out: dict[int, dict] = defaultdict(dict)
        self.mlp_reads: dict[int, set] = defaultdict(set)
        self.mlp_edges: set = set()
        self.dirty_mid: set[int] = set()
        self.time: dict[str, int] = {}
        self.site: dict[str, str] = {}
        self.writers: dict[str, tuple[str, ...]] = {}
        self.components: dict[str, tuple[str, ...]] = {}
        self.blocks: list[Block] = []  # what each head and MLP block computes (zoo.cells)
        self.current = ""  # the variable being compiled

    # -- residual vectors ------------------------------------------------------------------------
    def _alloc(self, key: str, n: int) -> list[int]:
        idx = list(range(self.d, self.d + n))
        self.d += n
        self.dims[key] = idx
        return idx

    def dim(self, v: Variable, value: int) -> int:
        return self.dims[v.name][v.value_set.values.index(int(value))]

    def rep(self, v: Variable, value: int) -> dict:
        """The residual vector holding ``v == value``."""
        if v.value_set.is_numerical:
            return {self.dims[v.name][0]: float(value)} if value else {}
        return {self.dim(v, value): 1.0}

    def magnitude(self, v: Variable) -> dict:
        """A functional reading v's value (numerical) or its value index (categorical)."""
        if v.value_set.is_numerical:
            return {self.dims[v.name][0]: 1.0}
        return {d: float(i) for i, d in enumerate(self.dims[v.name])}

    def posfun(self, f) -> dict:
        return {self.pos[t]: float(f(t)) for t in range(self.L)}

    def copy_vo(self, value: Variable, out: Variable) -> list:
        if value.value_set.is_numerical:
            return [({self.dims[value.name][0]: 1.0}, {self.dims[out.name][0]: 1.0})]
        if out.value_set.is_numerical:
            return [({self.dim(value, u): 1.0}, self.rep(out, u)) for u in value.value_set.values if u]
        return [({self.dim(value, u): 1.0}, {self.dim(out, u): 1.0}) for u in value.value_set.values]

    # -- scheduling --------------------------------------------------------------------------------
    def _tin(self, v: Variable) -> int:
        return max((self.time[u.name] for u in v.inputs), default=0)

    def add_head(self, l: int, qk, vo, reads, label, mode: str = "pos") -> str:
        """A head in layer l computing the variable being compiled (``mode``: see zoo.cells)."""
        self.heads[l].append(_Head(qk, vo, reads, label))
        name = f"L{l}.attn.head{len(self.heads[l]) - 1}"
        self.blocks.append(Block(name, (), [(self.current, mode)]))
        return name

    # -- compile -----------------------------------------------------------------------------------
    def build(self) -> Transformer:
        for v in self.prog.variables:
            self.current = v.name
            before = {l: len(u) for l, u in self.units.items()}
            self._build_variable(v)
            for l, units in self.units.items():  # the MLP units this variable added
                if len(units) > before.get(l, 0):
                    self.blocks.append(Block(f"L{l}.mlp.hidden", range(before.get(l, 0), len(units)), [(v.name, "pos")]))
        return self._materialize()

    def _build_variable(self, v: Variable) -> None:
        if isinstance(v, (Tokens, Indices)):
            self.time[v.name], self.site[v.name], self.writers[v.name], self.components[v.name] = 0, "L0.resid", ("embed",), ()
        elif isinstance(v, (Map, Sum)):
            l = max(0, math.ceil((self._tin(v) - 1) / 2))
            (self._map if isinstance(v, Map) else self._sum)(v, l)
            name = f"L{l}.mlp"
            self.mlp_reads[l].update(u.name for u in v.inputs)
            self.time[v.name], self.site[v.name], self.writers[v.name], self.components[v.name] = 2 * l + 2, f"L{l + 1}.resid", (name,), (name,)
        elif isinstance(v, Aggregate):
            l = math.ceil(self._tin(v) / 2)
            heads, decoded = self._aggregate(v, l)
            if decoded:
                comps = tuple(heads) + (f"L{l}.mlp",)
                self.time[v.name], self.site[v.name], self.writers[v.name] = 2 * l + 2, f"L{l + 1}.resid", (f"L{l}.mlp",)
            else:
                comps = tuple(heads)
                self.time[v.name], self.site[v.name], self.writers[v.name] = 2 * l + 1, f"L{l}.resid_mid", tuple(heads)
            self.components[v.name] = comps
        else:
            raise CompileError(FAMILY, type(v).__name__, f"unknown primitive for variable {v.name!r}")

    # -- Map and Sum -------------------------------------------------------------------------------
    def _map(self, v: Map, l: int) -> None:
        ins = v.inputs
        sizes = [x.value_set.size for x in ins]
        n = int(np.prod(sizes))
        if n > MAX_MAP_TABLE:
            raise CompileError(FAMILY, "Map", f"{v.name!r} tabulates {n} input combinations, above this compiler's limit {MAX_MAP_TABLE}; split it into smaller Maps")
        table = v.table.reshape(sizes)
        base = Counter(v.table.tolist()).most_common(1)[0][0]
        base_rep = self.rep(v, base)
        _axpy(self.b_out[l], base_rep)
        nums = [i for i, x in enumerate(ins) if x.value_set.is_numerical]
        cats = [i for i, x in enumerate(ins) if not x.value_set.is_numerical]
        radix = {}
        k = 1
        for i in reversed(nums):
            radix[i] = k
            k *= sizes[i]
        zmax = k - 1
        M = float(zmax + 3)
        units = self.units[l]
        z_vec, z_bias = {}, 0.0
        for i in nums:
            x = ins[i]
            _axpy(z_vec, {self.dims[x.name][0]: float(radix[i])})
            z_bias -= radix[i] * x.value_set.lo
        # two exact constructions over the integer index z: hats (3 units per combination whose
        # output differs from the base) or steps (2 units per change of f along z, per gate);
        # the cheaper one is used, steps only while their rounding error stays below 0.05.
        cat_combos = list(itertools.product(*(range(sizes[i]) for i in cats)))
        num_combos = list(itertools.product(*(range(sizes[i]) for i in nums)))

        def full(cc, nc):
            combo = [0] * len(ins)
            for i, c in zip(cats, cc):
                combo[i] = c
            for i, c in zip(nums, nc):
                combo[i] = c
            return tuple(combo)

        n_hat = int(np.sum(v.table != base))
        steps = []  # (gate, z, delta)
        for cc in cat_combos:
            prev = base
            for z, nc in enumerate(num_combos):
                cur = int(table[full(cc, nc)])
                if cur != prev:
                    steps.append((cc, z, _axpy(dict(self.rep(v, cur)), self.rep(v, prev), -1.0)))
                prev = cur
        per_gate = max(Counter(cc for cc, _, _ in steps).values(), default=0)
        step_error = per_gate * 8 * 2.0**-24 * (zmax + 2 + M * len(cats))  # rounding of the active step pairs
        use_steps = bool(nums) and 2 * len(steps) < 3 * n_hat and step_error <= 0.05

        def gate_vec(cc):
            gate = {}
            for i, c in zip(cats, cc):
                _axpy(gate, {self.dims[ins[i].name][c]: M})
            return gate

        if use_steps:
            for cc, z0, delta in steps:
                vec = _axpy(dict(z_vec), gate_vec(cc))
                units.append((vec, z_bias - z0 + 1.0 - M * len(cats), delta))
                units.append((vec, z_bias - z0 - M * len(cats), _scaled(delta, -1.0)))
            return
        for combo in itertools.product(*(range(s) for s in sizes)):
            out = int(table[combo])
            if out == base:
                continue
            delta = _axpy(dict(self.rep(v, out)), base_rep, -1.0)
            if not nums:
                vec = {}
                for i in cats:
                    _axpy(vec, {self.dims[ins[i].name][combo[i]]: 1.0})
                units.append((vec, -(len(cats) - 1.0), delta))
                continue
            z0 = sum(radix[i] * combo[i] for i in nums)
            vec = _axpy(dict(z_vec), gate_vec(tuple(combo[i] for i in cats)))
            for c, w in ((1.0, 1.0), (0.0, -2.0), (-1.0, 1.0)):
                units.append((vec, z_bias - z0 + c - M * len(cats), _scaled(delta, w)))

    def _sum(self, v: Sum, l: int) -> None:
        out = self.dims[v.name][0]
        if v.bias:
            _axpy(self.b_out[l], {out: float(v.bias)})
        for w, x in zip(v.weights, v.inputs):
            d = self.dims[x.name][0]
            if x.value_set.hi > 0:
                self.units[l].append(({d: 1.0}, 0.0, {out: float(w)}))
            if x.value_set.lo < 0:
                self.units[l].append(({d: -1.0}, 0.0, {out: -float(w)}))

    # -- Aggregate ---------------------------------------------------------------------------------
    def _bos_value(self, vec: dict) -> float:
        """``vec . x_0``: the functional evaluated on the (input-independent) residual at BOS."""
        x0 = {}
        for v in self.prog.variables:
            if v.name in self.time:
                _axpy(x0, self.rep(v, self.p0[v.name]))
        if "_position" in self.dims:
            x0[self.pos[0]] = 1.0
        return sum(c * x0.get(d, 0.0) for d, c in vec.items())

    def _summand(self, v: Aggregate) -> tuple[dict, float]:
        """The value functional of a count/sum and its (constant) value at BOS."""
        x = v.value
        if x is None:
            return dict(self.one), 1.0
        if v.reduce == "count":
            if x.value_set.is_numerical:
                return {self.dims[x.name][0]: 1.0}, float(self.p0[x.name] == 1)
            return ({self.dim(x, 1): 1.0} if 1 in x.value_set.values else {}), float(self.p0[x.name] == 1)
        return {self.dims[x.name][0]: 1.0}, float(self.p0[x.name])

    def _mean_head_check(self, v: Aggregate, bound_per_position: float) -> None:
        err = 5e-7 * self.L * bound_per_position
        if err > MEAN_HEAD_ERROR_LIMIT:
            raise CompileError(FAMILY, f"Aggregate({v.select.kind}, {v.reduce})", f"the exact-mean head's float32 error bound {err:.3g} at max_len {self.L} exceeds {MEAN_HEAD_ERROR_LIMIT}; compile for a shorter max_len")

    def _aggregate(self, v: Aggregate, l: int):
        sel, red, L = v.select, v.reduce, self.L
        out_dims = self.dims[v.name]
        reads = [u.name for u in v.inputs]
        heads: list[str] = []
        at0: dict = {}  # what the heads write at position 0
        decoded = False
        logC = self.posfun(lambda t: math.log(L - t))
        if sel.kind == "all" and red in ("count", "sum"):
            f, a0 = self._summand(v)
            x = v.value
            self._mean_head_check(v, 1.0 if x is None else max(abs(x.value_set.lo), abs(x.value_set.hi)))
            vv = _axpy(dict(f), self.bos, -a0)
            heads.append(self.add_head(l, [(logC, self.bos)], [(vv, {out_dims[0]: float(L)})], reads, "mean"))
            if a0:
                heads.append(self.add_head(l, [(_scaled(self.one, G), self.bos)], [(self.bos, {out_dims[0]: a0})], reads, "constant", "const"))
            _axpy(at0, {out_dims[0]: a0})
        elif sel.kind == "all":
            x = v.value
            vo = self.copy_vo(x, v)
            if red in ("max", "min"):
                qk = [(_scaled(self.one, G if red == "max" else -G), self.magnitude(x))]
            elif red == "last":
                qk = [({self.pos[t]: G}, {self.pos[t]: 1.0}) for t in range(L)]
            else:  # first
                qk = [(_scaled(self.one, G), self.bos)]
            heads.append(self.add_head(l, qk, vo, reads, red))
            _axpy(at0, self.rep(v, self.p0[x.name]))
        elif sel.kind == "offset":
            k = sel.offset
            x = v.value
            if red in ("count", "sum"):
                f, a0 = self._summand(v)
                vo = [(f, {out_dims[0]: 1.0})]
                a0_rep = {out_dims[0]: a0}
            else:
                vo = self.copy_vo(x, v)
                a0_rep = self.rep(v, self.p0[x.name])
            qk = [({self.pos[t]: G}, {self.pos[t - k]: 1.0}) for t in range(k, L)]
            qk.append(({self.pos[t]: G for t in range(min(k, L))}, self.bos))
            heads.append(self.add_head(l, qk, vo, reads, f"offset{k}"))
            _axpy(at0, a0_rep)
            d_rep = self.rep(v, v.default) if red not in ("count", "sum") else {}
            corr = _axpy(dict(d_rep), a0_rep, -1.0)
            if any(abs(c) > 0 for c in corr.values()):
                q = self.posfun(lambda t: G if t < k else -G)
                heads.append(self.add_head(l, [(q, self.bos)], [(self.bos, corr)], reads, "default", "const"))
                _axpy(at0, corr)
        else:  # key[j] <op> query[t]: eq, lt, le, gt, ge
            K, Q, x = sel.key, sel.query, v.value
            for u in (K, Q):
                if u.value_set.is_numerical:
                    raise CompileError(FAMILY, f"Aggregate({sel.kind})", f"{v.name!r} selects on the numerical variable {u.name!r}; this compiler matches keys and queries as one-hot categorical variables (Map it to a categorical variable)")
            # one query value u at a time: the keys it selects, sum_{w: w <op> u} onehot_w
            common = [u for u in Q.value_set.values if any(sel.matches(w, u) for w in K.value_set.values)]
            keys = {u: {self.dim(K, w): 1.0 for w in K.value_set.values if sel.matches(w, u)} for u in common}
            k0 = self.p0[K.name]
            bos_matches = [u for u in Q.value_set.values if sel.matches(k0, u)]  # queries the BOS key matches
            if red in ("count", "sum"):
                if x is not None:
                    raise CompileError(FAMILY, f"Aggregate({sel.kind}, {red})", f"{v.name!r} reduces a value over a key {sel.kind} query selection; only counting the selected positions (value=None) is implemented exactly (Map the key and the value into one key first)")
                self._mean_head_check(v, 1.0)
                vo = []
                scratch = self._alloc(f"_scratch_{v.name}", len(common))
                for u, s in zip(common, scratch):
                    vv = dict(keys[u])
                    if u in bos_matches:
                        _axpy(vv, self.bos, -1.0)
                    vo.append((vv, {s: float(L)}))
                h = self.add_head(l, [(logC, self.bos)], vo, [K.name], "count_by_key")
                heads.append(h)
                M = float(L + 2)
                out = out_dims[0]
                for u, s in zip(common, scratch):
                    self.units[l].append(({s: 1.0, self.dim(Q, u): M}, float(u in bos_matches) - M, {out: 1.0}))
                    self.units[l].append(({s: 1.0}, 0.0, {s: -1.0}))
                self.mlp_reads[l].add(Q.name)
                self.mlp_edges.add((h, f"L{l}.mlp"))
                self.dirty_mid.add(l)
                decoded = True
                return heads, decoded
            if red in ("last", "first"):
                P = self.posfun(lambda t: G * t if red == "last" else G * (L - 1 - t))
                pmin, pmax = 0.0, G * (L - 1)
            else:
                sign = 1.0 if red == "max" else -1.0
                P = _scaled(self.magnitude(x), sign * G)
                lo, hi = (x.value_set.lo, x.value_set.hi) if x.value_set.is_numerical else (0, x.value_set.size - 1)
                pmin, pmax = sorted((sign * G * lo, sign * G * hi))
            H = pmax - pmin + 2 * G
            sink = pmax + G
            p_bos = self._bos_value(P)
            qk = [({self.dim(Q, u): H}, keys[u]) for u in common]
            qk.append((dict(self.one), P))
            phi = _scaled(self.one, sink - p_bos)
            for u in bos_matches:
                _axpy(phi, {self.dim(Q, u): 1.0}, -(sink - p_bos))
            qk.append((phi, dict(self.bos)))
            vo = self.copy_vo(x, v)
            heads.append(self.add_head(l, qk, vo, reads, f"{sel.kind}_{red}"))
            a0_rep = self.rep(v, self.p0[x.name])
            _axpy(at0, a0_rep)
            # the default is a value only when the selection may be empty (key is not query)
            corr = _axpy(dict(self.rep(v, v.default)), a0_rep, -1.0) if sel.may_be_empty else {}
            if any(abs(c) > 0 for c in corr.values()):
                qkB = [({self.dim(Q, u): 2 * G}, keys[u]) for u in common]
                phiB = _scaled(self.one, G)
                for u in bos_matches:  # then u is in common: natural 2G, wanted -2G
                    _axpy(phiB, {self.dim(Q, u): 1.0}, -5 * G)
                qkB.append((phiB, dict(self.bos)))
                heads.append(self.add_head(l, qkB, [(self.bos, corr)], reads, "default"))
                _axpy(at0, corr)
        # position-0 fix: every value at position 0 is a constant
        want = self.rep(v, self.p0[v.name])
        fix = _axpy(dict(want), at0, -1.0)
        if any(abs(c) > 1e-9 for c in fix.values()):
            qk = [({self.pos[t]: G}, {self.pos[t]: 1.0}) for t in range(1, L)]
            heads.append(self.add_head(l, qk, [(self.bos, fix)], reads, "position0", "const"))
        return heads, decoded

    # -- weights and ground truth ---------------------------------------------------------------
    def _materialize(self) -> Transformer:
        task, prog, L, D = self.task, self.prog, self.L, self.d
        last_time = max(self.time.values())
        nl = max(1, (last_time + 1) // 2)
        n_heads = max([1] + [len(h) for h in self.heads.values()])
        d_head = max([1] + [max(len(h.qk), len(h.vo)) for hs in self.heads.values() for h in hs])
        d_mlp = max([1] + [len(u) for u in self.units.values()])
        out = prog.output
        config = TransformerConfig(vocab_size=len(task.vocab), n_classes=task.n_classes, max_len=L, d_model=D, n_layers=nl,
                                   n_heads=n_heads, d_head=d_head, d_mlp=d_mlp, layer_norm=False)
        embed = np.zeros((config.vocab_size, D))
        tok = self.dims[prog.tokens.name]
        for i in range(config.vocab_size):
            embed[i, tok[i]] = 1.0
        pos_embed = np.zeros((L, D))
        pos_embed[np.arange(L), self.pos] = 1.0
        W_Q, W_K, W_V = (np.zeros((nl, n_heads, D, d_head)) for _ in range(3))
        W_O = np.zeros((nl, n_heads, d_head, D))
        W_in, b_in = np.zeros((nl, D, d_mlp)), np.zeros((nl, d_mlp))
        W_out, b_out = np.zeros((nl, d_mlp, D)), np.zeros((nl, D))
        for l, hs in self.heads.items():
            for h, head in enumerate(hs):
                for r, (q, k) in enumerate(head.qk):
                    for d, c in q.items():
                        W_Q[l, h, d, r] += c
                    for d, c in k.items():
                        W_K[l, h, d, r] += c
                for r, (vv, o) in enumerate(head.vo):
                    for d, c in vv.items():
                        W_V[l, h, d, r] += c
                    for d, c in o.items():
                        W_O[l, h, r, d] += c
        for l, units in self.units.items():
            for i, (vec, bias, o) in enumerate(units):
                for d, c in vec.items():
                    W_in[l, d, i] += c
                b_in[l, i] = bias
                for d, c in o.items():
                    W_out[l, i, d] += c
        for l, vec in self.b_out.items():
            for d, c in vec.items():
                b_out[l, d] += c
        W_U, b_U = np.zeros((D, config.n_classes)), np.zeros(config.n_classes)
        for i, c in enumerate(task.classes):
            if out.value_set.is_numerical:
                W_U[self.dims[out.name][0], i] = 2.0 * c
                b_U[i] = -float(c) ** 2
            else:
                W_U[self.dim(out, c), i] = 1.0
        model = Transformer(config)
        f32 = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
        state = dict(embed=embed, pos_embed=pos_embed, W_Q=W_Q, W_K=W_K, W_V=W_V, W_O=W_O, W_in=W_in, b_in=b_in,
                     W_out=W_out, b_out=b_out, W_U=W_U, b_U=b_U, attn_scale=np.ones(nl))
        model.load_state_dict({k: f32(v) for k, v in state.items()})
        model.ground_truth = self._ground_truth(nl)
        attach(model, task, model.ground_truth, self.blocks, program=self.prog)
        model.ground_truth.readouts = {d.name: self._readout(d, nl) for d in prog.decoys}
        model.meta.update({"construction": "tracr-style exact compilation (zoo.compilers.transformer)"})
        return model

    def _readout(self, v: Variable, nl: int) -> Readout:
        """Decode ``v`` at the last residual site, as the unembedding decodes the output."""
        vals = v.value_set.values
        W, b = np.zeros((len(vals), self.d)), np.zeros(len(vals))
        for i, c in enumerate(vals):
            if v.value_set.is_numerical:
                W[i, self.dims[v.name][0]], b[i] = 2.0 * c, -float(c) ** 2
            else:
                W[i, self.dim(v, c)] = 1.0
        return Readout(f"L{nl}.resid", W, b, vals)

    def _ground_truth(self, nl: int) -> GroundTruth:
        eye = np.eye(self.d)
        variables = {v.name: Location(self.site[v.name], eye[self.dims[v.name]]) for v in self.prog.variables}
        site_variables = {}
        for l in range(nl + 1):
            site_variables[f"L{l}.resid"] = tuple(n for n in self.prog.names if self.time[n] <= 2 * l)
            if l < nl and l not in self.dirty_mid:
                site_variables[f"L{l}.resid_mid"] = tuple(n for n in self.prog.names if self.time[n] <= 2 * l + 1)
        circuit = []
        edges = set()
        for l in range(nl):
            circuit.append(f"L{l}.resid")
            for h, head in enumerate(self.heads.get(l, [])):
                name = f"L{l}.attn.head{h}"
                circuit.append(name)
                edges.add(("embed", name))
                for r in head.reads:
                    edges.update((w, name) for w in self.writers[r])
            circuit.append(f"L{l}.resid_mid")
            if self.units.get(l) or self.b_out.get(l):
                circuit += [f"L{l}.mlp.hidden", f"L{l}.mlp"]
                for r in self.mlp_reads.get(l, ()):
                    edges.update((w, f"L{l}.mlp") for w in self.writers[r])
        circuit.append(f"L{nl}.resid")
        edges |= self.mlp_edges
        edges.update((w, "logits") for w in self.writers[self.prog.output.name])
        return with_stages(GroundTruth(variables=variables, components=dict(self.components), circuit=tuple(circuit),
                                       edges=tuple(sorted(edges)), site_variables=site_variables), self.stage_of)


def compile_program(task, seed: int = 0) -> Transformer:
    """Exact transformer weights for ``task``'s program, with ground truth (see the module docstring)."""
    return _Compiler(task).build()
