"""The trainer's alignment: where each program variable of a planted model lives.

A planted model is trained so that every program variable sits in a chosen *location*: a site
and a block of coordinates of it (an axis-aligned orthonormal basis, lag 0). The choice:

- **which site**: the site the family's compiler uses for the variable (``zoo.compile``), so the
  dependency order across layers is the compiler's, which is known to be realisable (an
  ``Aggregate`` of depth d after layer d's attention / mixer / recurrent layer...). Two changes:
  in a residual stream a ``Map`` of the token alone lives in the embedding (a trained embedding
  holds it; the compiler spends layer 0's MLP on it), which moves everything a layer down when
  layer 0 held nothing else, so no sequence mixer sits unused in front of the algorithm (the
  SSM of ``modular_addition`` summed its digits there); where the compiler refuses the pair,
  and for a ``Scan`` in a transformer or SSM, a depth rule gives the site: inputs at the
  embedding, an aggregate of depth d after the sequence mixer of layer d, a per-position
  variable of depth d after layer d's MLP, and a ``Scan`` after two mixing layers (the
  Krohn-Rhodes depth of S3). The compilers build a ``Scan`` as a parallel prefix of
  ceil(log2 max_len) layers (4 at length 16, its partial products as stages); permutation's
  trained transformer and SSM were tuned on the two layers of the depth rule
  (``PAIR_CONFIG``, ``PAIR_LEARNING_RATE``), so a planted Scan keeps them.
  And a ``Map`` that decodes a count into a sawtooth (a count mod 2, a sum mod 5) and that no
  variable reads sits a layer higher in a stream family when the sawtooth has more pieces than
  ``TWO_MLP_PIECES`` allows one MLP (:func:`sawtooth_pieces`): two MLPs decode it in turn, and
  the sequence mixer between them computes nothing (the strict term patches it whole). One MLP
  must cut a single scalar (the SSM's exact sum, the transformer's mean beside the position) at
  every step of the count; two compose the cuts. Measured: the SSM's parity reached its targets
  at step 13,800 with one MLP and 2,650 with two, modular addition's at 31,200 and 5,750 (lr
  5e-3); the transformer's modular addition at 12,700 and 1,800, while its parity (16 pieces)
  took 1,200 steps with one MLP and was not there at 3,500 with two.
- **which coordinates**: families with a residual stream (transformer, SSM) give every variable
  its own block of the stream, disjoint from every other variable's at every layer (a stream
  carries a variable from where it is written onwards). An RNN layer gives each of its variables
  a block of units, and a variable read more than one layer up gets a *relay* block in every
  layer between (an RNN layer reads only the layer below). Block widths follow the compiled
  subspace (stream sites) or the units the compiled basis touches (RNN layers), with these
  changes: a numerical variable in an RNN gets a unit per value (up to 32; a compiled counter is
  one unit, rarely found from a dense init) and a ``Map`` with a categorical input at most 16
  units or one per value (its recurrence and a learned code replace the compiler's unit per
  combination of inputs); a numerical program output gets a direction per value (up to 32) in
  every family, since a linear readout decodes it; a non-output variable in a stream at most 8
  directions (a learned code of positions and indices); and in an SSM a small numerical summand
  (a digit, a +-1 step) a direction per value, so a channel's nonlinear write (SiLU convolution,
  softplus step) stays linear in the counts.

Sizes (:func:`plan`): layers from the compiled model; widths from the blocks plus a little free
room (4 stream coordinates; 16 where a variable is computed over several stages and needs
scratch room); an MLP wide enough for the sawtooth of a count taken mod k; no LayerNorm, except
in the pairs ``PAIR_CONFIG`` lists (permutation's transformer). An RNN has one width
for all layers, set by its widest layer; the units a narrower layer does not use start silent
(:func:`silent_units`), except in a layer holding a lookup's memory slots and the layer feeding
them (:func:`scratch_layers`).
The alignment becomes the trained model's ground truth (:func:`ground_truth`); what the strict
term patches around it is :mod:`zoo.training.strict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tasks import Task

from ..ground_truth import GroundTruth, Location

STREAM_KINDS = ("resid", "mixer", "mlp", "head")
STREAM_BLOCK_DIM = 8  # at most this many directions for a non-output variable in a residual stream
FREE_ROOM, SCRATCH_ROOM = 4, 16  # stream coordinates beyond the blocks (see plan)
RNN_MAP_UNITS = 16  # at most this many units (or one per value) for a Map with a categorical input in an RNN layer
RNN_ROOM = 4  # live units beyond the blocks and relays in an RNN layer that holds no scratch work
SILENT_BIAS = -1.0  # the bias of an RNN's silent units (see silent_units)
# a stream family decodes a sawtooth of a count with more pieces than this in two MLPs (see
# sawtooth_pieces and the module docstring): the SSM every one, the transformer above parity's 16
TWO_MLP_PIECES = {"transformer": 16, "ssm": 1}
# config fields of the (task, family) pairs that train with another config than the plan's rule.
# Permutation's transformer is pre-LN: its S3 products, composed in parallel by two layers, reach
# 0.99 accuracy and every target at step 6,050 (264-304 s) with LayerNorm, and at step 12,900
# (about 12 minutes, zoo build's limit) without. LayerNorm for every transformer lost modular addition
# (0.73 at 6 minutes, 1,800 steps without) and left reverse's strict sites at 0.64 (LayerNorm
# makes every coordinate of the stream count in every reader's scale, the free ones too).
PAIR_CONFIG = {("permutation", "transformer"): {"layer_norm": True}}


@dataclass
class Plan:
    """Sizes of the trained model and the alignment: variable -> (site, coordinate indices)."""

    family: str
    config: dict  # keyword arguments of the family's config (without vocab/classes/max_len)
    blocks: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    readers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # variable -> the variables that read it
    output: str = ""
    inputs: dict[str, tuple[str, ...]] = field(default_factory=dict)  # variable -> the variables it reads
    per_position: frozenset = frozenset()  # the variables computed position by position (Map, Sum)
    relays: dict[tuple[str, str], tuple[int, ...]] = field(default_factory=dict)  # (variable, RNN layer) -> units carrying it up
    derived: dict[str, tuple[str, ...]] = field(default_factory=dict)  # tokens -> the Maps of the token held beside it in the embedding

    def sites(self) -> list[str]:
        return sorted({site for site, _ in self.blocks.values()})


def _depth_site(task: Task, arch: str, name: str) -> str:
    """The fallback site of a variable by the depth rule (see the module docstring)."""
    v = task.program[name]
    d = task.program.layers()[name]
    if v.op in ("tokens", "indices"):
        return "embed" if arch == "rnn" else "L0.resid"
    if arch == "rnn":
        return f"L{d}.hidden"
    if v.op == "Scan":  # no diagonal or fixed-depth exact form: two mixing layers per level, as in the
        # Krohn-Rhodes form of a solvable group (S3: the parity of the swaps so far, then a sum
        # of the rotations signed by that parity), read out after the second layer's MLP
        return f"L{2 * d}.resid"
    if not v.per_position:  # the sequence mixer of layer d-1 (layers count from 0)
        return f"L{d - 1}.resid_mid" if arch == "transformer" else f"L{d - 1}.mixer"
    return f"L{d + 1}.resid" if d >= 1 or v.inputs else "L0.resid"


def _stage(site: str) -> int:
    """Stream families: 2l at ``L{l}.resid``, 2l+1 after layer l's sequence mixer."""
    layer = _layer_of(site)
    return 2 * layer + (0 if site.endswith(".resid") else 1)


def _needs_scratch(task: Task, dims: dict) -> bool:
    """Whether a sequence-mixing variable sits more than one stage after its latest input."""
    return any(not v.per_position and v.inputs and _stage(dims[v.name][0]) - max(_stage(dims[u.name][0]) for u in v.inputs) > 1 for v in task.program)


def _compiled(task: Task, arch: str):
    from ..compile import CompileError, compile

    if arch != "rnn" and any(v.op == "Scan" for v in task.program):
        return None  # the depth rule, not the compiled parallel prefix (see the module docstring)
    try:
        return compile(task, arch)
    except CompileError:
        return None


def _layer_of(site: str) -> int:
    return int(site.split(".")[0][1:]) if site.startswith("L") else -1


def _rnn_layer(site: str) -> int:
    return -1 if site == "embed" else _layer_of(site)


def _scratch_layers(inputs: dict[str, tuple[str, ...]], sites: dict[str, str]) -> set[int]:
    """RNN layers strictly between a variable's latest input and the variable: they hold the
    variable's computation (the per-key memory slots of a lookup, whose gates are the variable).
    ``inputs``: variable -> the variables it reads; ``sites``: variable -> its site."""
    out = set()
    for name, ins in inputs.items():
        if ins:
            lo = max(_rnn_layer(sites[u]) for u in ins)
            out |= set(range(lo + 1, _rnn_layer(sites[name])))
    return out


def _inputs(task: Task) -> dict[str, tuple[str, ...]]:
    return {v.name: tuple(u.name for u in v.inputs) for v in task.program}


def _relays(readers: dict[str, tuple[str, ...]], sites: dict[str, str], memory: set[int]) -> dict:
    """(variable, site) for every RNN layer that must carry a variable up to a reader more than
    one layer above it (an RNN layer reads only the layer below), except a lookup's memory layers
    (``memory``). ``readers``: variable -> the variables that read it; ``sites``: variable -> its site."""
    out = {}
    for name, reads in readers.items():
        for r in reads:
            for k in range(_rnn_layer(sites[name]) + 1, _rnn_layer(sites[r])):
                if k not in memory:
                    out[(name, f"L{k}.hidden")] = ()
    return out


def _is_token_map(v) -> bool:
    return v.op in ("Map", "Sum") and all(u.op == "tokens" for u in v.inputs)


def _token_maps_first(task: Task, dims: dict) -> bool:
    """Whether a stream family's compiled layout spends its first layer on Maps of the token
    alone (its first sequence mixer unused): a trained embedding holds such a Map itself, one
    layer lower. (Not applied to the RNN, which keeps its compiled layout: layer 0 computes the
    Map.)"""
    first = [v for v in task.program if _stage(dims[v.name][0]) in (1, 2)]
    return bool(first) and all(_is_token_map(v) and _stage(dims[v.name][0]) == 2 for v in first)


def _shift_down(task: Task, dims: dict) -> dict:
    """The stream layout one layer lower: Maps of the token at the embedding, the rest a layer
    down."""
    out = {}
    for v in task.program:
        site, dim = dims[v.name]
        if v.op in ("tokens", "indices"):
            out[v.name] = (site, dim)
        elif _is_token_map(v) and _layer_of(site) <= 1:
            out[v.name] = ("L0.resid", dim)
        else:
            layer, rest = site.split(".", 1)
            out[v.name] = (f"L{int(layer[1:]) - 1}.{rest}", dim)
    return out


def sawtooth_pieces(v) -> int:
    """How many times a ``Map`` of one numerical ``Aggregate`` (a count, a sum) that goes up and
    down along the count changes value: 16 for a count mod 2 over 0..16, 64 for a sum mod 5 over
    0..64; 0 for a monotone Map (a threshold: ``majority``'s sign of a margin) and any other
    variable."""
    if v.op != "Map" or len(v.inputs) != 1 or v.inputs[0].op != "Aggregate" or not v.inputs[0].value_set.is_numerical:
        return 0
    steps = np.diff(v.table)
    return 0 if (steps >= 0).all() or (steps <= 0).all() else int((steps != 0).sum())


def _decode_in_two_mlps(task: Task, arch: str, dims: dict, readers: dict) -> tuple[dict, int]:
    """The stream layout with every sawtooth Map that nothing reads (``readers``) and that has
    more than ``TWO_MLP_PIECES[arch]`` pieces a layer higher; and the number of layers that needs."""
    out, layers = dict(dims), 0
    for v in task.program:
        if sawtooth_pieces(v) > TWO_MLP_PIECES[arch] and not readers[v.name]:
            site, dim = dims[v.name]
            layer = _layer_of(site) + 1
            out[v.name], layers = (f"L{layer}.resid", dim), max(layers, layer)
    return out, layers


def plan(task: Task, arch: str, **size) -> Plan:
    """Choose the trained model's sizes and its planted alignment for ``task`` in family ``arch``.

    ``size`` overrides any config field (``d_model=``, ``hidden_size=``, ``n_layers=``...).
    """
    model = _compiled(task, arch)
    inputs = _inputs(task)
    readers = {v.name: tuple(w.name for w in task.program if any(u.name == v.name for u in w.inputs)) for v in task.program}
    dims: dict[str, tuple[str, int]] = {}
    for v in task.program:
        if model is not None and v.name in model.ground_truth.variables:
            loc = model.ground_truth.variables[v.name]
            site = loc.site
            kind = model.site(site).kind
            if kind in STREAM_KINDS:
                dim = loc.dim
            else:  # units: as many as the compiled basis touches
                dim = int((np.abs(loc.basis).sum(0) > 1e-9).sum())
        else:
            site = _depth_site(task, arch, v.name)
            dim = v.value_set.size if not v.value_set.is_numerical else 1
        if arch == "rnn" and v.value_set.is_numerical and v.op not in ("tokens", "indices"):
            # a compiled RNN holds a count in one ReLU unit; trained from a dense init, a 1-unit
            # count is rarely found (and a linear readout would need finely tuned class intervals),
            # while a unit per value (a thermometer or one-hot code, up to 32 units) trains
            dim = max(dim, min(v.value_set.size, 32))
            if v.op == "Aggregate" and v.select.kind == "eq":  # a count per key value
                dim = min(dim * v.select.key.value_set.size, 128)
        elif arch == "ssm" and v.value_set.is_numerical and v.per_position and v.value_set.size <= STREAM_BLOCK_DIM and any(
                w.op == "Aggregate" and w.reduce in ("sum", "count") and v in w.inputs for w in task.program):
            # a numerical summand (a digit, a +-1 step): a direction per value, so that a channel's
            # write, a nonlinear function of its input (SiLU convolution, softplus step), is still
            # linear in the counts of each value and the sum stays exact
            dim = max(dim, v.value_set.size)
        elif arch != "rnn" and v is not task.program.output and dim > STREAM_BLOCK_DIM:
            # a position or an index read by later layers: the compiler spends a direction per value
            # (16-17 here); a trained stream packs it into fewer (attention can select by a learned
            # code of 8 directions), which keeps seq2seq models small enough to train in minutes
            dim = STREAM_BLOCK_DIM
        elif v is task.program.output and v.value_set.is_numerical:
            # read by the linear unembedding: a value per direction, not a finely tuned scalar
            dim = max(dim, min(v.value_set.size, 32))
        if arch == "rnn" and v.op == "Map" and any(not u.value_set.is_numerical for u in v.inputs):
            # the compiler computes a Map with a categorical input in one layer, a ReLU unit per
            # combination of values (136 for sort's rank); a trained layer can use its recurrence
            # (rank counts up from SEP) and a learned code instead. A Map of counts alone keeps its
            # ramps (a unit per value: the sawtooth of a sum mod 5)
            dim = min(dim, max(RNN_MAP_UNITS, v.value_set.size))
        dims[v.name] = (site, max(1, dim))
    n_layers = max([_layer_of(s) + (0 if ".resid" in s and not s.endswith("resid_mid") else 1) for s, _ in dims.values()] + [1])
    if model is not None:
        n_layers = max(n_layers, model.config.num_layers if arch == "rnn" else model.config.n_layers)
    if arch != "rnn" and _token_maps_first(task, dims):
        dims = _shift_down(task, dims)
        n_layers -= 1
    if arch != "rnn":
        dims, layers = _decode_in_two_mlps(task, arch, dims, readers)
        n_layers = max(n_layers, layers)

    blocks: dict[str, tuple[str, tuple[int, ...]]] = {}
    relays: dict[tuple[str, str], tuple[int, ...]] = {}
    if arch == "rnn":
        used: dict[str, int] = {}
        for name, (site, dim) in dims.items():
            start = used.get(site, 0)
            blocks[name] = (site, tuple(range(start, start + dim)))
            used[site] = start + dim
        sites = {n: s for n, (s, _) in blocks.items()}
        memory = _scratch_layers(inputs, sites)
        relays = _relays(readers, sites, memory)
        for (name, site) in relays:
            width = len(blocks[name][1])
            start = used.get(site, 0)
            relays[(name, site)] = tuple(range(start, start + width))
            used[site] = start + width
        widest = max([w for s, w in used.items() if s != "embed"] + [8])
        # a layer holding a lookup's memory slots (scratch) needs room for them; elsewhere the
        # units beyond a layer's blocks are kept silent (see silent_units), so a few spare suffice
        hidden = widest + max(16, widest // 2) if memory else widest + RNN_ROOM
        config = dict(num_layers=n_layers, hidden_size=max(32, hidden), embed_dim=max(len(task.vocab), used.get("embed", 0)))
    else:
        total = 0
        for name, (site, dim) in dims.items():
            blocks[name] = (site, tuple(range(total, total + dim)))
            total += dim
        # free room: every unused stream coordinate is patched by the strict term except inside a
        # variable computed over several stages (a Scan over two layers, a count and its
        # decoder), where it holds that computation's scratch work; elsewhere it is only a place
        # for the model to hide things, and a wide one makes the strict term slow to satisfy
        d_model = int(np.ceil((total + (SCRATCH_ROOM if _needs_scratch(task, dims) else FREE_ROOM)) / 8) * 8)
        # a Map of a numerical variable (a count mod 2, a sum mod 5) is a sawtooth over its values:
        # give the MLP a few ReLU units per value (per value and position in a transformer, whose
        # attention hands the MLP a mean, not a count)
        sawtooth = max([u.value_set.size for v in task.program if v.op == "Map" for u in v.inputs if u.value_set.is_numerical and u.op != "Map"] + [0])
        if any(v.op == "Scan" for v in task.program) and model is None:  # the parity of a count, as above
            sawtooth = max(sawtooth, 2 * task.max_len + 1)  # and a signed sum mod 3 (S3's rotations)
        d_mlp = max(2 * d_model, (8 if arch == "transformer" else 4) * sawtooth)
        if arch == "transformer":
            heads = model.config.n_heads if model is not None else 1
            config = dict(n_layers=n_layers, d_model=d_model, n_heads=max(2, heads), d_head=16, d_mlp=d_mlp, layer_norm=False)
        else:
            pos = bool(model.config.pos_embed) if model is not None else any(v.op == "indices" for v in task.program)
            config = dict(n_layers=n_layers, d_model=d_model, d_inner=d_model, d_state=4, d_conv=4, d_mlp=d_mlp, pos_embed=pos)
    config.update(PAIR_CONFIG.get((task.name, arch), {}))
    config.update(size)
    per_position = frozenset(v.name for v in task.program if v.op in ("Map", "Sum"))
    derived = {v.name: tuple(w.name for w in task.program if _is_token_map(w) and dims[w.name][0] == dims[v.name][0] and v in w.inputs)
               for v in task.program if v.op == "tokens"}
    p = Plan(arch, config, blocks, readers, task.program.output.name, inputs, per_position, relays, {k: v for k, v in derived.items() if v})
    _check_fits(p)
    return p


def _check_fits(p: Plan) -> None:
    width = p.config.get("d_model") if p.family != "rnn" else p.config.get("hidden_size")
    for name, (site, idx) in p.blocks.items():
        w = p.config.get("embed_dim") if site == "embed" else width
        if max(idx) >= w:
            raise ValueError(f"the planted alignment needs {max(idx) + 1} coordinates at {site} for {name!r}, the model has {w}; pass a larger size")


def ground_truth(p: Plan, model) -> GroundTruth:
    """The alignment as a :class:`GroundTruth` for ``model`` (axis-aligned bases, lag 0).

    The tokens' location at the embedding also spans the blocks of the Maps of the token held
    there (``Plan.derived``): patching the token patches what the embedding derives from it.
    ``site_variables``: at a stream site, every variable written at or before it (each keeps its
    own block downstream); at a unit site, the variables of that layer; not at a site holding
    more than variables (scratch work inside a span, an RNN layer's relays, a lookup's memory slots
    and the layer feeding them). ``components``: the site each variable is read at; ``circuit``:
    the sites holding variables.
    """
    widths = {s.name: s.width for s in model.site_list()}
    variables = {}
    for name, (site, idx) in p.blocks.items():
        idx = sorted(idx + tuple(i for m in p.derived.get(name, ()) for i in p.blocks[m][1]))
        basis = np.zeros((len(idx), widths[site]))
        basis[np.arange(len(idx)), idx] = 1.0
        variables[name] = Location(site, basis, 0)
    from .strict import spans

    site_variables: dict[str, tuple[str, ...]] = {}
    order = [s.name for s in model.site_list()]
    inner = {s for _, lo, hi in spans(p, model) for s in order[lo + 1 : hi]}  # scratch work: not variables
    inner |= {site for _, site in p.relays} | {f"L{k}.hidden" for k in scratch_layers(p)}  # copies, a lookup's layers
    for s in model.site_list():
        if s.name in inner:
            continue
        if p.family == "rnn" or s.kind not in ("resid",):
            names = tuple(n for n, (site, _) in p.blocks.items() if site == s.name)
        else:  # a stream site: variables written at an earlier or the same stream point
            names = tuple(n for n, (site, _) in p.blocks.items() if order.index(site) <= order.index(s.name))
        if names:
            site_variables[s.name] = names
    return GroundTruth(
        variables=variables,
        components={n: (site,) for n, (site, _) in p.blocks.items()},
        circuit=tuple(s for s in order if s in {site for site, _ in p.blocks.values()}),
        edges=(),
        site_variables=site_variables,
    )


def scratch_layers(p: Plan) -> set[int]:
    """RNN layers that hold a lookup's computation, not only variables: its memory slots (the
    layers strictly between a variable's latest input and the variable, see _scratch_layers) and
    the layer below them, which feeds the slots. Both stay dense (:func:`silent_units`) and the
    strict term patches nothing in them; the feeding layer's blocks and relays still hold their
    variables (IIT patches them). With that layer silent but for its blocks (27 of 168 units
    live), ``first_occurrence``'s RNN was at 0.85 accuracy when it gave up at 6 minutes
    (unplanted, the same model learns it in 72 s); with it dense, it reaches its targets at step
    6,950."""
    memory = _scratch_layers(p.inputs, {n: s for n, (s, _) in p.blocks.items()})
    return memory | {k - 1 for k in memory if k >= 1}


def silent_units(p: Plan) -> dict[str, list[int]]:
    """RNN layer -> the units a planted model keeps silent. An RNN has one width for every layer
    (torch.nn.RNN's layout), set by its widest layer; a narrower layer's remaining units would
    be free capacity in which the layer can compute what the alignment puts higher up (``sort``
    counts its tokens in layer 0 instead of counting the ``le_k`` Maps in layer 3), and the
    strict term fights it slowly. So the units beyond the layer's blocks, relays and a few spare
    ones start with zero input weights and a negative bias (``SILENT_BIAS``): the ReLU sits below
    its threshold, outputs 0, gets no gradient on any device and stays silent (at a bias of 0 the
    CPU's ReLU passed no gradient but cuDNN's did: on a GPU the units woke up). Scratch layers (a
    lookup's memory slots and the layer feeding them) stay dense."""
    if p.family != "rnn":
        return {}
    width = p.config["hidden_size"]
    scratch = scratch_layers(p)
    out = {}
    for k in range(p.config["num_layers"]):
        site = f"L{k}.hidden"
        if k in scratch:
            continue
        used = [i for s, idx in p.blocks.values() if s == site for i in idx]
        used += [i for (_, s), idx in p.relays.items() if s == site for i in idx]
        first = max(used, default=-1) + 1 + RNN_ROOM
        if first < width:
            out[site] = list(range(first, width))
    return out


def silence(p: Plan, model) -> None:
    """Zero the input weights of :func:`silent_units` in a freshly built model and hold them below
    the ReLU's threshold (bias ``SILENT_BIAS``)."""
    import torch

    with torch.no_grad():
        for site, units in silent_units(p).items():
            k = _layer_of(site)
            for name in (f"weight_ih_l{k}", f"weight_hh_l{k}", f"bias_hh_l{k}"):
                getattr(model, name)[units] = 0.0
            getattr(model, f"bias_ih_l{k}")[units] = SILENT_BIAS
