"""Building blocks of the SSM compiler: residual layout, mixer channels, MLP tables, float32 constants.

See :mod:`zoo.compilers.ssm` for the construction as a whole. This module holds the pieces:

- :class:`Layout`: which residual dimensions hold which variable (categorical: one-hot dims in
  value order; numerical: one dim holding the magnitude) and linear *forms* over the stream
  (``({dim: coef}, bias)``) for indicators ``[var == v]``, ``[var >= v]`` and magnitudes;
- :class:`Channel` / :class:`MixerSpec`: one d_inner channel of a mixer (its in_proj row, conv
  lag, delta mode, D, gate row and out_proj column), and a block's list of them;
- :func:`map_units`: the MLP hidden units and output weights of a ``Map`` or ``Sum``.

Float32 facts the construction rests on (checked in tests/test_family_ssm.py)::

    softplus(128) == 128, softplus(-128) == 0                (torch returns x above 20; exp(-128) == 0)
    exp(-128 * exp(-40)) == 1.0                               (a "count" channel keeps exactly)
    exp(-128 * exp(0))   == 0.0,  exp(-0 * exp(0)) == 1.0     (a "write" channel overwrites / keeps)
    (128 * c) * (1/128) == c                                   (powers of two: the write is exact)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from tasks.program import Variable

STEP = 128.0  # delta of a step that writes (softplus(128) == 128 exactly)
Z_ON, Z_OFF = 128.0, -128.0  # delta pre-activations: softplus -> 128 and -> exactly 0
A_LOG_COUNT = -40.0  # decay exp(-128 * exp(-40)) == 1.0 in float32: an exact accumulator
A_LOG_WRITE = 0.0  # decay exp(-128) == 0.0: overwrite; exp(0) == 1.0: keep
B_WRITE = 1.0 / STEP  # B_t: (delta * c) * B == c exactly
C_READ = 1.0


Form = tuple  # ({dim: coef}, bias): a linear function of the residual stream


def form(coefs=None, bias=0.0) -> Form:
    return (dict(coefs or {}), float(bias))


def add_forms(*terms) -> Form:
    """Sum of ``(scale, form)`` pairs."""
    out: dict[int, float] = {}
    bias = 0.0
    for scale, (coefs, b) in terms:
        for d, c in coefs.items():
            out[d] = out.get(d, 0.0) + scale * c
        bias += scale * b
    return out, bias


ONE = form({}, 1.0)
ZERO = form({}, 0.0)


class Layout:
    """Residual-stream dimensions of every variable (and of compiler intermediates)."""

    def __init__(self):
        self.dims: dict[str, list[int]] = {}
        self.vars: dict[str, Variable] = {}
        self.width = 0

    def allocate(self, name: str, n: int, var: Variable | None = None) -> list[int]:
        self.dims[name] = list(range(self.width, self.width + n))
        self.width += n
        if var is not None:
            self.vars[name] = var
        return self.dims[name]

    def add_variable(self, v: Variable) -> list[int]:
        return self.allocate(v.name, 1 if v.value_set.is_numerical else v.value_set.size, v)

    def basis(self, name: str, width: int) -> np.ndarray:
        b = np.zeros((len(self.dims[name]), width))
        b[np.arange(len(self.dims[name])), self.dims[name]] = 1.0
        return b

    # -- forms -----------------------------------------------------------------------------------
    def indicator(self, v: Variable, value: int) -> Form:
        """``[v == value]`` (categorical variables: the one-hot dim)."""
        vals = v.value_set.values
        if value not in vals:
            return ZERO
        return form({self.dims[v.name][vals.index(value)]: 1.0})

    def at_least(self, v: Variable, value: int) -> Form:
        vals = v.value_set.values
        return form({self.dims[v.name][i]: 1.0 for i, x in enumerate(vals) if x >= value})

    def at_most(self, v: Variable, value: int) -> Form:
        vals = v.value_set.values
        return form({self.dims[v.name][i]: 1.0 for i, x in enumerate(vals) if x <= value})

    def magnitude(self, v: Variable) -> Form:
        return form({self.dims[v.name][0]: 1.0})

    def code(self, v: Variable) -> Form:
        """The index of v's value in its value set, 0..size-1 (linear for both encodings)."""
        if v.value_set.is_numerical:
            return form({self.dims[v.name][0]: 1.0}, -v.value_set.lo)
        return form({d: float(i) for i, d in enumerate(self.dims[v.name])})

    def write_value(self, v: Variable, value: int) -> dict[int, float]:
        """Output coefficients that write ``value`` of variable ``v`` into its dims."""
        if v.value_set.is_numerical:
            return {self.dims[v.name][0]: float(value)}
        return {self.dims[v.name][v.value_set.values.index(value)]: 1.0}


@dataclass
class Channel:
    """One d_inner channel: u = form, c = relu(u_{t-lag}); delta mode; y = h + D c; out += coef * y * gate."""

    u: Form
    lag: int = 0
    mode: str = "off"  # "off": delta 0 (no state); "count": delta 128, decay 1; "write": delta 128 when sel == 1
    sel: list = field(default_factory=list)  # [(channel index, coef)]: the 0/1 write flag, for mode "write"
    D: float = 0.0
    gate: Form = ONE
    out: dict = field(default_factory=dict)  # resid dim -> coef


@dataclass
class MixerSpec:
    channels: list = field(default_factory=list)
    out_bias: dict = field(default_factory=dict)

    def add(self, ch: Channel) -> int:
        self.channels.append(ch)
        return len(self.channels) - 1

    def bias(self, dim: int, value: float):
        self.out_bias[dim] = self.out_bias.get(dim, 0.0) + value


def accumulate(target: dict, coefs: dict, scale: float = 1.0):
    for d, c in coefs.items():
        target[d] = target.get(d, 0.0) + scale * c


# -- MLP: Map and Sum ------------------------------------------------------------------------------
def map_units(layout: Layout, v) -> tuple[list[Form], np.ndarray, dict[int, float]]:
    """Hidden units (forms), output weights [units, resid dims as dict] and output bias of a Map/Sum.

    Returns ``(units, out, bias)`` with ``out`` a list (per unit) of ``{dim: coef}``.

    - ``Sum``: two units relu(s), relu(-s) with s = bias + sum w_i x_i; out = relu(s) - relu(-s).
    - ``Map`` over categorical inputs only: one AND unit per input combination,
      relu(sum_i [x_i == v_i] - (k-1)), exactly 1 on that combination and 0 elsewhere; it
      writes f(v_1..v_k) (a one-hot dim or a magnitude).
    - ``Map`` with a numerical input: the inputs' value indices form a mixed-radix code
      s = sum_i r_i * index_i in 0..P-1 (linear in one-hots and magnitudes alike), and each
      output dim g(s) is the piecewise-linear interpolation g(0) + sum_{i<P-1} (g'_i - g'_{i-1})
      relu(s - i), exact on the integers (all weights and values are small integers in float32).
    """
    from tasks.program import Sum

    out_var = v
    units: list[Form] = []
    outs: list[dict] = []
    bias: dict[int, float] = {}
    if isinstance(v, Sum):
        s = add_forms(*((float(w), layout.magnitude(x)) for w, x in zip(v.weights, v.inputs)), (1.0, form({}, v.bias)))
        d = layout.dims[v.name][0]
        units += [s, add_forms((-1.0, s))]
        outs += [{d: 1.0}, {d: -1.0}]
        return units, outs, bias
    xs = v.inputs
    sizes = [x.value_set.size for x in xs]
    table = v.table  # mixed-radix over value indices, first input most significant
    if all(not x.value_set.is_numerical for x in xs):
        for combo_index, combo in enumerate(itertools.product(*(x.value_set.values for x in xs))):
            unit = add_forms(*((1.0, layout.indicator(x, val)) for x, val in zip(xs, combo)), (1.0, form({}, -(len(xs) - 1))))
            units.append(unit)
            outs.append(layout.write_value(out_var, int(table[combo_index])))
        return units, outs, bias
    radix = [int(np.prod(sizes[i + 1:])) for i in range(len(xs))]
    s = add_forms(*((float(r), layout.code(x)) for r, x in zip(radix, xs)))
    P = int(np.prod(sizes))
    dims = layout.dims[out_var.name]
    if out_var.value_set.is_numerical:
        g = table.astype(np.float64)[None, :]  # [1, P]
    else:
        g = (table[None, :] == np.asarray(out_var.value_set.values)[:, None]).astype(np.float64)  # [n_dims, P]
    slope = np.diff(g, axis=1)  # [n, P-1]: g(i+1) - g(i)
    kink = slope - np.concatenate([np.zeros((g.shape[0], 1)), slope[:, :-1]], axis=1)
    worst = float((np.abs(kink) * (P - 1 - np.arange(P - 1))[None, :]).sum(axis=1).max(initial=0.0)) + float(np.abs(g[:, 0]).max())
    if worst >= 2**23:
        from ..compile import CompileError

        raise CompileError("ssm", "Map", f"{v.name!r}: the piecewise-linear table over {P} input codes could reach partial sums of {worst:.0f}, beyond float32's exact integers; split the Map or shrink its inputs' ranges")
    for k, d in enumerate(dims):
        if g[k, 0]:
            bias[d] = bias.get(d, 0.0) + float(g[k, 0])
    for i in range(P - 1):
        coefs = {d: float(kink[k, i]) for k, d in enumerate(dims) if kink[k, i]}
        if not coefs:
            continue
        units.append(add_forms((1.0, s), (1.0, form({}, -i))))
        outs.append(coefs)
    return units, outs, bias
