"""The SSM compiler: a task's program turned into exact weights of :class:`zoo.families.ssm.SSM`.

Layout. The residual stream holds every variable in its own dims: a categorical variable one-hot
(dims in value order), a numerical one as its magnitude. ``tokens`` are written by the token
embedding and ``indices`` by a positional embedding (``pos_embed=True`` only when the program
reads ``Indices``; Mamba has none). Sublayers are scheduled by stage (mixer of block b = 2b+1,
its MLP = 2b+2): a ``Map``/``Sum`` goes to the first MLP after its inputs, an ``Aggregate`` to
the first mixer after them. All activations are ``relu`` (conv and gate), ``d_state = 1`` with
constant ``B = 1/128`` and ``C = 1``.

Mixer channels (each d_inner channel c is relu of a linear form of the stream, at a conv lag):

- **delta modes** (float32 facts in :mod:`zoo.compilers.ssm_parts`, tested): "count" channels have
  delta = softplus(128) = 128 and A_log = -40, so the decay exp(-128 e^-40) is exactly 1.0 and
  the write (128 c)(1/128) exactly c: **an exact accumulator**; "write" channels have A_log = 0
  and delta = softplus(256 sel - 128), i.e. 128 (decay exactly 0: **overwrite** with c) when the
  0/1 flag ``sel`` (a sum of other channels' c) is 1, and exactly 0 (decay 1, write 0: keep)
  when it is 0; "off" channels (delta 0) keep no state and pass D * c (the convolution alone).
- **selections**: ``Select.all`` uses one slot; ``Select.eq(key, query)`` one slot per key value
  k: a channel's form ANDs ``[key_t == k]`` into it (relu(key_k + x - 1), or
  relu(x + M key_k - M) for a magnitude), and the slot is read through the multiplicative gate
  ``relu(W_z x_t)`` = ``[query_t == k]``, so only the query's slot reaches the output.
  ``Select.offset_by(k)``: the convolution's lag-k tap (D = 1, no state), a ``[t >= k]`` channel
  (a constant at lag k, zero-padded) supplying the default.
- **reductions**: ``count``/``sum``: count channels of the selected value (a magnitude split in
  relu(+x), relu(-x) halves). ``last``: write channels (one per value of a one-hot, or the two
  halves of a magnitude) overwritten when the slot's key is seen, plus a self-written "any"
  flag; ``default`` = bias - flag. ``max``/``min``: per-threshold "seen" flags (a write channel
  per threshold v, overwritten to 1 when a selected value >= v, resp. <= v; for a magnitude the
  0/1 step [x >= v] is the difference of relu(x-v+1) and relu(x-v), two channels written
  together); the one-hot output is a difference of consecutive flags, a magnitude their
  weighted sum. ``first``: a write channel cannot know whether its slot is empty, so an extra
  mixer in an earlier block computes the intermediate ``seen_before`` (key k at lag 1,
  self-written flags, read at the key's own slot through the gate) into the stream; the first
  occurrence is written by count channels ANDed with ``1 - seen_before`` (written once).
- **comparisons** ``Select.lt/le/gt/ge(key, query)``: one slot per query value u, its key form
  ``sum_{w <op> u} [key == w]`` (0/1: the key is one-hot), read through the gate
  ``[query_t == u]``; every reduction as for ``eq`` except ``first`` (refused: a slot written
  once needs "nothing selected before", which differs from slot to slot).
- ``Scan``: a diagonal SSM with positive decays composes its updates commutatively and cannot
  step through a non-abelian automaton, so the compiler compiles the program rewritten by
  :func:`tasks.rewrite.parallel_prefix` (exact up to ``max_len``): round k is block k-1, its
  mixer the lag-2^(k-1) convolution tap (``d_conv = 2^(K-1) + 1`` for ``K = ceil(log2
  max_len)`` blocks: 9 at length 16, a tap per lag in every block's channels, ``d_inner *
  d_conv`` weights a block) and its MLP the transition monoid's products (an AND unit per
  pair of elements). Stages (``zoo.compilers.stages``): ``_lag`` at ``L{k-1}.mixer``,
  ``_prod`` at ``L{k}.resid``. A monoid of more than ``tasks.rewrite.MAX_MONOID`` elements is
  refused naming its size; a selection on a numerical key or query is refused.

MLP sublayers (ReLU) compute ``Map`` (AND units over one-hots, one per input combination, or a
piecewise-linear table over the mixed-radix code when an input is numerical) and ``Sum`` (relu(s)
- relu(-s)); see :func:`zoo.compilers.ssm_parts.map_units`. The unembedding reads a one-hot
output directly and a magnitude x by logit_k = v_k x - v_k^2 / 2 (argmax = x, margin 1/2).

Everything is integer arithmetic in float32 (values well below 2^24), so the model is exact at
every length; no construction depends on the length beyond the value ranges the program declares.

Ground truth. tokens, indices: ``L0.resid``. A Map/Sum computed in block b's MLP: ``L{b+1}.resid``
(its dims). An Aggregate computed in block b's mixer: ``L{b}.mixer`` (its dims of the mixer's
output), because block b's MLP reads it before the next residual site. Components: the mixer or
MLP computing each variable (plus the ``seen_before`` mixer for ``first``); the circuit: every
residual site and the conv/state/mixer and MLP sites of the sublayers in use; edges: writer ->
reader of each variable through the stream ("embed" first, "logits" last). ``site_variables``
lists the residual, mixer and MLP sites whose other dims are zero (every site not carrying a
``seen_before`` intermediate).
"""

from __future__ import annotations

import numpy as np
import torch

from tasks.program import Aggregate, Indices, Map, Sum, Tokens
from tasks.rewrite import MonoidTooLarge, parallel_prefix
from tasks.task import Task

from ..compile import CompileError
from ..families.ssm import SSM, SSMConfig
from ..cells import Block, attach
from ..ground_truth import GroundTruth, Location, Readout
from .stages import with_stages
from .ssm_parts import (
    A_LOG_COUNT, A_LOG_WRITE, B_WRITE, C_READ, ONE, ZERO, Z_OFF, Z_ON, Channel, Form, Layout, MixerSpec,
    accumulate, add_forms, form, map_units,
)

FAMILY = "ssm"


EXACT_LIMIT = 2**20  # integer magnitudes stay exact in float32 sums well below 2^24
OUTPUT_LIMIT = 1024  # a magnitude output decoded by logit_k = v_k x - v_k^2/2 keeps margin 1/2 exactly


def _check(program):
    out = program.output.value_set
    if out.is_numerical and max(abs(out.lo), abs(out.hi)) > OUTPUT_LIMIT:
        raise CompileError(FAMILY, "numerical output", f"{program.output.name!r} ranges over {out.lo}..{out.hi}; the quadratic unembedding is exact in float32 only up to |value| <= {OUTPUT_LIMIT} (a shorter max_len or a Map to a categorical output fixes it)")
    for v in program.variables:
        if v.value_set.is_numerical and max(abs(v.value_set.lo), abs(v.value_set.hi)) > EXACT_LIMIT:
            raise CompileError(FAMILY, f"{v.op} (numerical range)", f"{v.name!r} ranges over {v.value_set.lo}..{v.value_set.hi}; float32 accumulators are exact only up to {EXACT_LIMIT}; use a shorter max_len or smaller values")
        if isinstance(v, Aggregate) and v.select.compares:
            for role, x in (("key", v.select.key), ("query", v.select.query)):
                if x.value_set.is_numerical:
                    raise CompileError(FAMILY, f"Select.{v.select.kind}", f"Aggregate {v.name!r}: the {role} {x.name!r} is numerical; per-key slots need a categorical key and query (Map it to a categorical variable)")
            if v.select.kind != "eq" and v.reduce == "first":
                raise CompileError(FAMILY, f"Aggregate({v.select.kind}, first)", f"Aggregate {v.name!r}: a slot written once needs 'no selected key before', which a comparison makes different for every slot; only eq selections reduce 'first' (use 'last' or 'min' over the positions)")


def _schedule(program):
    """Stages: embed 0, mixer of block b = 2b+1, MLP of block b = 2b+2; aux stages for 'first'."""
    stage, aux = {}, {}
    for v in program.variables:
        below = max((stage[u.name] for u in v.inputs), default=0)
        if isinstance(v, (Tokens, Indices)):
            stage[v.name] = 0
        elif isinstance(v, (Map, Sum)):
            stage[v.name] = max(2, below + 1 if below % 2 else below + 2)  # the next MLP (even stage)
        else:  # Aggregate
            if v.reduce == "first" and v.select.kind != "offset":
                key_stage = stage[v.select.key.name] if v.select.kind == "eq" else 0
                aux[v.name] = key_stage + 1 if key_stage % 2 == 0 else key_stage + 2
                below = max(below, aux[v.name])
            stage[v.name] = below + 1 if below % 2 == 0 else below + 2
    return stage, aux


def _slots(layout: Layout, v: Aggregate):
    """(key form, gate form) per slot: one for Select.all, one per key value for Select.eq, one
    per query value u for a comparison (key form ``sum_{w <op> u} [key == w]``, 0/1 since the key
    is one-hot)."""
    sel = v.select
    if sel.kind == "all":
        return [(ONE, ONE)]
    if sel.kind == "eq":
        return [(layout.indicator(sel.key, k), layout.indicator(sel.query, k)) for k in sel.key.value_set.values]
    slots = []
    for u in sel.query.value_set.values:
        matching = [w for w in sel.key.value_set.values if sel.matches(w, u)]
        if matching:
            slots.append((add_forms(*((1.0, layout.indicator(sel.key, w)) for w in matching)), layout.indicator(sel.query, u)))
    return slots or [(ZERO, ONE)]  # nothing ever selected: one slot that is never written (the default)


def _value_halves(layout: Layout, x):
    """(sign, form) halves of a magnitude: relu(+x) and relu(-x) where they can be nonzero."""
    vs = x.value_set
    out = []
    if vs.hi > 0:
        out.append((1.0, layout.magnitude(x)))
    if vs.lo < 0:
        out.append((-1.0, add_forms((-1.0, layout.magnitude(x)))))
    return out


def _and(key: Form, value: Form, M: float = 1.0) -> Form:
    """relu of this is value * [key] for 0 <= value <= M and key 0/1."""
    return add_forms((1.0, value), (M, key), (1.0, form({}, -M)))


def _default_terms(layout, v, mixer, flag_channels, dims, bias=True):
    """Write ``default * (1 - flag)`` into the output: a bias (once per aggregate), and -default
    on each slot's flag read (the gate lets one slot's flag through)."""
    if v.value_set.is_numerical:
        if v.default:
            if bias:
                mixer.bias(dims[0], float(v.default))
            for ch, coef in flag_channels:
                accumulate(mixer.channels[ch].out, {dims[0]: -float(v.default) * coef})
    elif v.default in v.value_set.values:
        d = dims[v.value_set.values.index(v.default)]
        if bias:
            mixer.bias(d, 1.0)
        for ch, coef in flag_channels:
            accumulate(mixer.channels[ch].out, {d: -coef})


def _compile_offset(layout, v: Aggregate, mixer: MixerSpec):
    k, x, dims = v.select.offset, v.value, layout.dims[v.name]
    flag = mixer.add(Channel(u=ONE, lag=k, D=1.0))
    if v.reduce == "count" and x is None:
        accumulate(mixer.channels[flag].out, {dims[0]: 1.0})
        return
    if v.reduce == "count" and not x.value_set.is_numerical:
        mixer.add(Channel(u=layout.indicator(x, 1), lag=k, D=1.0, out={dims[0]: 1.0}))
        return
    if x.value_set.is_numerical:
        for sign, f in _value_halves(layout, x):
            mixer.add(Channel(u=f, lag=k, D=1.0, out={dims[0]: sign}))
    else:
        for val in x.value_set.values:
            mixer.add(Channel(u=layout.indicator(x, val), lag=k, D=1.0, out=layout.write_value(v, val)))
    if v.reduce not in ("count", "sum"):
        _default_terms(layout, v, mixer, [(flag, 1.0)], dims)


def _compile_slotted(layout, v: Aggregate, mixer: MixerSpec, seen_before=None):
    x, dims, reduce = v.value, layout.dims[v.name], v.reduce
    for slot, (key, gate) in enumerate(_slots(layout, v)):
        if reduce == "count":
            value = ONE if x is None else (layout.magnitude(x) if x.value_set.is_numerical else layout.indicator(x, 1))
            mixer.add(Channel(u=_and(key, value), mode="count", gate=gate, out={dims[0]: 1.0}))
        elif reduce == "sum":
            M = float(max(abs(x.value_set.lo), abs(x.value_set.hi), 1))
            for sign, f in _value_halves(layout, x):
                mixer.add(Channel(u=_and(key, f, M), mode="count", gate=gate, out={dims[0]: sign}))
        elif reduce in ("last", "first"):
            flag = mixer.add(Channel(u=key, mode="write", gate=gate))
            mixer.channels[flag].sel = [(flag, 1.0)]
            if reduce == "last":
                mode, sel, extra = "write", [(flag, 1.0)], ()
            else:  # written once: count channels ANDed with "key not seen before"
                mode, sel = "count", []
                extra = ((-1.0, layout.magnitude(seen_before)),)
            if x.value_set.is_numerical:
                M = float(max(abs(x.value_set.lo), abs(x.value_set.hi), 1))
                for sign, f in _value_halves(layout, x):
                    u = add_forms((1.0, _and(key, f, M)), *((M * s, g) for s, g in extra))
                    mixer.add(Channel(u=u, mode=mode, sel=list(sel), gate=gate, out={dims[0]: sign}))
            else:
                for val in x.value_set.values:
                    u = add_forms((1.0, _and(key, layout.indicator(x, val))), *extra)
                    mixer.add(Channel(u=u, mode=mode, sel=list(sel), gate=gate, out=layout.write_value(v, val)))
            _default_terms(layout, v, mixer, [(flag, 1.0)], dims, bias=slot == 0)
        else:  # max / min: per-threshold "seen" flags
            vals = x.value_set.values
            flags = []  # flags[i] = [(channel, coef)]: [some selected value >= vals[i]] (max) / <= (min)
            for i, th in enumerate(vals):
                if x.value_set.is_numerical and not ((reduce == "max" and i == 0) or (reduce == "min" and i == len(vals) - 1)):
                    M = float(x.value_set.hi - x.value_set.lo + 2)
                    step = layout.magnitude(x) if reduce == "max" else add_forms((-1.0, layout.magnitude(x)))
                    off = -th if reduce == "max" else th
                    r1 = mixer.add(Channel(u=add_forms((1.0, step), (1.0, form({}, off + 1)), (M, key), (1.0, form({}, -M))), mode="write", gate=gate))
                    r2 = mixer.add(Channel(u=add_forms((1.0, step), (1.0, form({}, off)), (M, key), (1.0, form({}, -M))), mode="write", gate=gate))
                    mixer.channels[r1].sel = mixer.channels[r2].sel = [(r1, 1.0), (r2, -1.0)]
                    flags.append([(r1, 1.0), (r2, -1.0)])
                else:
                    if x.value_set.is_numerical:
                        cond = ONE  # the extreme threshold always holds
                    else:
                        cond = layout.at_least(x, th) if reduce == "max" else layout.at_most(x, th)
                    ch = mixer.add(Channel(u=_and(key, cond), mode="write", gate=gate))
                    mixer.channels[ch].sel = [(ch, 1.0)]
                    flags.append([(ch, 1.0)])
            m = len(vals)
            any_flag = flags[0] if reduce == "max" else flags[-1]

            def emit(flag, coefs):
                for ch, c in flag:
                    accumulate(mixer.channels[ch].out, coefs, c)

            if v.value_set.is_numerical:
                d = dims[0]
                if reduce == "max":
                    emit(flags[0], {d: float(vals[0])})
                    for i in range(1, m):
                        emit(flags[i], {d: float(vals[i] - vals[i - 1])})
                else:
                    emit(flags[-1], {d: float(vals[-1])})
                    for i in range(m - 1):
                        emit(flags[i], {d: -float(vals[i + 1] - vals[i])})
            else:
                for i, val in enumerate(vals):
                    dv = layout.write_value(v, val)
                    emit(flags[i], dv)
                    nxt = i + 1 if reduce == "max" else i - 1
                    if 0 <= nxt < m:
                        emit(flags[nxt], {d: -c for d, c in dv.items()})
            _default_terms(layout, v, mixer, any_flag, dims, bias=slot == 0)


def _compile_seen_before(layout, v: Aggregate, mixer: MixerSpec, dim: int):
    """seen_before_t = [key_t occurred at some j < t] (Select.all: [t >= 1])."""
    for key, _ in _slots(layout, v):
        ch = mixer.add(Channel(u=key, lag=1, mode="write", gate=key, out={dim: 1.0}))
        mixer.channels[ch].sel = [(ch, 1.0)]


def compile_program(task: Task, seed: int = 0) -> SSM:
    try:  # a Scan becomes its parallel prefix: offsets (convolution taps) and Maps (tasks.rewrite)
        program, stage_of = parallel_prefix(task.program, task.max_len)
    except MonoidTooLarge as err:
        raise CompileError(FAMILY, "Scan", str(err)) from None
    _check(program)
    stage, aux = _schedule(program)
    n_layers = max(1, (max(stage.values()) + 1) // 2)
    layout = Layout()
    for v in program.variables:
        layout.add_variable(v)
    aux_dims = {name: layout.allocate(f"seen_before.{name}", 1)[0] for name in aux}
    mixers = [MixerSpec() for _ in range(n_layers)]
    mlps: list[list] = [[] for _ in range(n_layers)]  # (units, outs, bias)
    owners: list[dict] = [{} for _ in range(n_layers)]  # mixer channel -> the variable it computes
    mlp_owners: list[list] = [[] for _ in range(n_layers)]  # per entry of mlps[l]: its variable
    for name, s in aux.items():
        mixer = mixers[(s - 1) // 2]
        first = len(mixer.channels)
        _compile_seen_before(layout, program[name], mixer, aux_dims[name])
        owners[(s - 1) // 2].update({i: name for i in range(first, len(mixer.channels))})
    for v in program.variables:
        s = stage[v.name]
        if isinstance(v, (Map, Sum)):
            mlps[(s - 2) // 2].append(map_units(layout, v))
            mlp_owners[(s - 2) // 2].append(v.name)
        elif isinstance(v, Aggregate):
            mixer = mixers[(s - 1) // 2]
            first = len(mixer.channels)
            if v.select.kind == "offset":
                _compile_offset(layout, v, mixer)
            else:
                seen = None
                if v.name in aux:
                    seen = _AuxVar(f"seen_before.{v.name}")
                _compile_slotted(layout, v, mixer, seen)
            owners[(s - 1) // 2].update({i: v.name for i in range(first, len(mixer.channels))})

    uses_indices = any(isinstance(v, Indices) for v in program.variables)
    max_lag = max((ch.lag for m in mixers for ch in m.channels), default=0)
    d_inner = max(1, max(len(m.channels) for m in mixers))
    d_mlp = max(sum(len(u) for u, _, _ in blocks) for blocks in mlps)
    if any(mlps):  # a Map or Sum with no units (a constant) is still written, by the MLP's bias
        d_mlp = max(d_mlp, 1)
    cfg = SSMConfig(vocab_size=len(task.vocab), n_classes=task.n_classes, max_len=task.max_len, d_model=layout.width,
                    n_layers=n_layers, d_inner=d_inner, d_state=1, d_conv=max(4, max_lag + 1), d_mlp=d_mlp,
                    pos_embed=uses_indices, act="relu", gate="relu")
    model = SSM(cfg)
    _fill_weights(model, task, program, layout, mixers, mlps)
    model.ground_truth = with_stages(_ground_truth(program, stage, aux, layout, mixers, mlps, n_layers), stage_of)
    attach(model, task, model.ground_truth, _blocks(mixers, owners, mlps, mlp_owners, cfg.d_state), program=program)
    model.ground_truth.readouts = {d.name: _readout(layout, d, n_layers) for d in program.decoys}
    model.meta.update({"compiler": "zoo.compilers.ssm", "stages": dict(stage)})
    return model


def _blocks(mixers, owners, mlps, mlp_owners, d_state: int) -> list[Block]:
    """What each group of channels and MLP units computes (zoo.cells): a channel with state
    (count, write) at ``L{l}.state``, one the convolution alone carries (off) at ``L{l}.conv``,
    an input-independent one (the constant of an offset's default) as ``const``."""
    blocks = []
    for l, mixer in enumerate(mixers):
        for i, ch in enumerate(mixer.channels):
            var = owners[l][i]
            if ch.mode == "off":
                const = not ch.u[0]  # a form with no stream coefficient: the same on every input
                blocks.append(Block(f"L{l}.conv", [i], [(var, "const" if const else "pos")]))
            else:
                blocks.append(Block(f"L{l}.state", range(i * d_state, (i + 1) * d_state), [(var, "state")]))
        k = 0
        for (units, _, _), var in zip(mlps[l], mlp_owners[l]):
            if units:
                blocks.append(Block(f"L{l}.mlp.hidden", range(k, k + len(units)), [(var, "pos")]))
            k += len(units)
    return blocks


def _readout(layout: Layout, v, n_layers: int) -> Readout:
    """Decode ``v`` at the last residual site, as the unembedding decodes the output."""
    vals = v.value_set.values
    W, b = np.zeros((len(vals), layout.width)), np.zeros(len(vals))
    for i, c in enumerate(vals):
        if v.value_set.is_numerical:
            W[i, layout.dims[v.name][0]], b[i] = float(c), -float(c) ** 2 / 2
        else:
            W[i, layout.dims[v.name][i]] = 1.0
    return Readout(f"L{n_layers}.resid", W, b, vals)


class _AuxVar:
    """Stands in for a compiler intermediate in Layout.magnitude."""

    def __init__(self, name):
        self.name = name


def _fill_weights(model: SSM, task: Task, program, layout: Layout, mixers, mlps):
    cfg = model.config
    W = cfg.d_model
    tok = np.zeros((cfg.vocab_size, W), np.float32)
    tok[np.arange(cfg.vocab_size), layout.dims[program.tokens.name]] = 1.0
    sd = {"tok_embed": tok}
    idx = [v for v in program.variables if isinstance(v, Indices)]
    if cfg.pos_embed:
        pos = np.zeros((cfg.max_len, W), np.float32)
        pos[np.arange(cfg.max_len), layout.dims[idx[0].name][: cfg.max_len]] = 1.0
        sd["pos_embed"] = pos
    out = program.output
    U, bU = np.zeros((cfg.n_classes, W), np.float32), np.zeros(cfg.n_classes, np.float32)
    if out.value_set.is_numerical:
        vals = np.asarray(out.value_set.values, np.float64)
        U[:, layout.dims[out.name][0]] = vals
        bU[:] = -vals**2 / 2
    else:
        U[np.arange(cfg.n_classes), layout.dims[out.name]] = 1.0
    sd["unembed.weight"], sd["unembed.bias"] = U, bU
    E = cfg.d_inner
    for l, (mixer, mlp) in enumerate(zip(mixers, mlps)):
        p = f"blocks.{l}."
        w_in, b_in = np.zeros((E, W), np.float32), np.zeros(E, np.float32)
        conv_w = np.zeros((E, cfg.d_conv), np.float32)
        w_d, b_d = np.zeros((E, E), np.float32), np.full(E, Z_OFF, np.float32)
        A_log, D = np.zeros((E, 1), np.float32), np.zeros(E, np.float32)
        w_z, b_z = np.zeros((E, W), np.float32), np.zeros(E, np.float32)
        w_out, b_out = np.zeros((W, E), np.float32), np.zeros(W, np.float32)
        for i, ch in enumerate(mixer.channels):
            coefs, bias = ch.u
            for d, c in coefs.items():
                w_in[i, d] += c
            b_in[i] = bias
            conv_w[i, ch.lag] = 1.0
            D[i] = ch.D
            if ch.mode == "count":
                b_d[i], A_log[i, 0] = Z_ON, A_LOG_COUNT
            elif ch.mode == "write":
                A_log[i, 0] = A_LOG_WRITE
                for j, c in ch.sel:
                    w_d[i, j] += 2 * Z_ON * c
            gcoefs, gbias = ch.gate
            for d, c in gcoefs.items():
                w_z[i, d] += c
            b_z[i] = gbias
            for d, c in ch.out.items():
                w_out[d, i] += c
        for d, c in mixer.out_bias.items():
            b_out[d] += c
        sd.update({p + "in_proj.weight": w_in, p + "in_proj.bias": b_in, p + "conv_w": conv_w, p + "conv_b": np.zeros(E, np.float32),
                   p + "delta_proj.weight": w_d, p + "delta_proj.bias": b_d,
                   p + "B_proj.weight": np.zeros((1, E), np.float32), p + "B_proj.bias": np.full(1, B_WRITE, np.float32),
                   p + "C_proj.weight": np.zeros((1, E), np.float32), p + "C_proj.bias": np.full(1, C_READ, np.float32),
                   p + "A_log": A_log, p + "D": D, p + "z_proj.weight": w_z, p + "z_proj.bias": b_z,
                   p + "out_proj.weight": w_out, p + "out_proj.bias": b_out})
        if cfg.d_mlp:
            w1, b1 = np.zeros((cfg.d_mlp, W), np.float32), np.zeros(cfg.d_mlp, np.float32)
            w2, b2 = np.zeros((W, cfg.d_mlp), np.float32), np.zeros(W, np.float32)
            k = 0
            for units, outs, bias in mlp:
                for (coefs, b), o in zip(units, outs):
                    for d, c in coefs.items():
                        w1[k, d] += c
                    b1[k] = b
                    for d, c in o.items():
                        w2[d, k] += c
                    k += 1
                for d, c in bias.items():
                    b2[d] += c
            sd.update({p + "fc1.weight": w1, p + "fc1.bias": b1, p + "fc2.weight": w2, p + "fc2.bias": b2})
    params = dict(model.named_parameters())
    if set(params) != set(sd):
        raise AssertionError(f"compiler/model mismatch: {sorted(set(params) ^ set(sd))}")
    for k, v in sd.items():
        value = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
        if value.shape != params[k].shape:
            raise AssertionError(f"compiler/model mismatch: {k} {tuple(value.shape)} vs {tuple(params[k].shape)}")
        params[k].data = value


def _ground_truth(program, stage, aux, layout: Layout, mixers, mlps, n_layers: int) -> GroundTruth:
    W = layout.width
    variables, components = {}, {}

    def component(name: str) -> str:
        s = stage[name]
        if s == 0:
            return "embed"
        return f"L{(s - 1) // 2}.mixer" if s % 2 else f"L{(s - 2) // 2}.mlp"

    for v in program.variables:
        s = stage[v.name]
        if s == 0:
            site = "L0.resid"
        elif s % 2:
            site = f"L{(s - 1) // 2}.mixer"
        else:
            site = f"L{s // 2}.resid"
        variables[v.name] = Location(site, layout.basis(v.name, W))
        comps = [component(v.name)] if s else []  # tokens and indices: written by the embedding, no component
        if v.name in aux:
            comps.insert(0, f"L{(aux[v.name] - 1) // 2}.mixer")
        components[v.name] = tuple(comps)
    edges = set()
    for v in program.variables:
        for u in v.inputs:
            edges.add((component(u.name), component(v.name)))
        if v.name in aux:
            a = f"L{(aux[v.name] - 1) // 2}.mixer"
            edges.add((a, component(v.name)))
            if v.select.kind == "eq":
                edges.add((component(v.select.key.name), a))
    edges.add((component(program.output.name), "logits"))
    circuit = [f"L{l}.resid" for l in range(n_layers + 1)]
    for l in range(n_layers):
        if mixers[l].channels:
            circuit += [f"L{l}.conv", f"L{l}.state", f"L{l}.mixer"]
        if mlps[l]:
            circuit += [f"L{l}.mlp.hidden", f"L{l}.mlp"]
    aux_stages = sorted(aux.values())
    site_variables = {}
    for l in range(n_layers + 1):
        if not any(a <= 2 * l for a in aux_stages):
            site_variables[f"L{l}.resid"] = tuple(v.name for v in program.variables if stage[v.name] <= 2 * l)
        if l < n_layers:
            at_mixer = tuple(v.name for v in program.variables if stage[v.name] == 2 * l + 1)
            if at_mixer and 2 * l + 1 not in aux_stages:
                site_variables[f"L{l}.mixer"] = at_mixer
            at_mlp = tuple(v.name for v in program.variables if stage[v.name] == 2 * l + 2)
            if at_mlp:
                site_variables[f"L{l}.mlp"] = at_mlp
    return GroundTruth(variables, components, tuple(circuit), tuple(sorted(edges)), site_variables)
