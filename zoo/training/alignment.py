"""The trainer's alignment: where each program variable of a planted model lives.

A planted model is trained so that every program variable sits in a chosen *location*: a site
and a block of coordinates of it (an axis-aligned orthonormal basis, lag 0). The choice:

- **which site**: the site the family's compiler uses for the variable (``zoo.compile``), so the
  dependency order across layers is the compiler's, which is known to be realisable (a token
  ``Map`` after layer 0's MLP, an ``Aggregate`` of depth d after layer d's attention / mixer /
  recurrent layer...). Where the compiler refuses the pair (e.g. ``Scan`` in a transformer) a
  depth rule gives the site instead: inputs at the embedding, an aggregate of depth d after the
  sequence mixer of layer d, a per-position variable of depth d after layer d's MLP.
- **which coordinates**: families with a residual stream (transformer, SSM) give every variable
  its own block of the stream, disjoint from every other variable's at every layer (a stream
  carries a variable from where it is written onwards). Per-layer sites (an RNN's hidden layers,
  its embedding) give each variable a block of units of that layer. A block is as wide as the
  compiled subspace (stream sites) or as the number of units the compiled basis touches
  (unit sites: an RNN computes a Map of a count with one unit per value), so the block can hold
  what the compiled construction holds. A numerical variable in an RNN gets a unit per value (up
  to 32) rather than the compiler's single counter unit, which training from a dense init rarely
  finds; a numerical program output gets as many directions (up to 32) in every family, since a
  linear readout decodes it. In a residual stream a non-output variable gets at most 8
  directions (the compiler spends one per value, 16-17 for positions and indices): a learned
  code fits, and it keeps the seq2seq models small enough to train in minutes.

The sizes of the trained model (layers from the compiled model, widths from the blocks plus
free room, an MLP wide enough for the sawtooth of a count taken mod k) come from :func:`plan`.
A ``Scan`` that no exact compiler handles (``permutation`` in the transformer and the SSM) gets
two mixing layers, the Krohn-Rhodes depth of S3. The alignment becomes the trained model's
ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tasks import Task

from ..ground_truth import GroundTruth, Location

STREAM_KINDS = ("resid", "mixer", "mlp", "head")
STREAM_BLOCK_DIM = 8  # at most this many directions for a non-output variable in a residual stream


@dataclass
class Plan:
    """Sizes of the trained model and the alignment: variable -> (site, coordinate indices)."""

    family: str
    config: dict  # keyword arguments of the family's config (without vocab/classes/max_len)
    blocks: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    readers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # variable -> the variables that read it
    output: str = ""

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


def _compiled(task: Task, arch: str):
    from ..compile import CompileError, compile

    try:
        return compile(task, arch)
    except CompileError:
        return None


def _layer_of(site: str) -> int:
    return int(site.split(".")[0][1:]) if site.startswith("L") else -1


def plan(task: Task, arch: str, **size) -> Plan:
    """Choose the trained model's sizes and its planted alignment for ``task`` in family ``arch``.

    ``size`` overrides any config field (``d_model=``, ``hidden_size=``, ``n_layers=``...).
    """
    model = _compiled(task, arch)
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
        elif arch != "rnn" and v is not task.program.output and dim > STREAM_BLOCK_DIM:
            # a position or an index read by later layers: the compiler spends a direction per value
            # (16-17 here); a trained stream packs it into fewer (attention can select by a learned
            # code of 8 directions), which keeps seq2seq models small enough to train in minutes
            dim = STREAM_BLOCK_DIM
        elif v is task.program.output and v.value_set.is_numerical:
            # read by the linear unembedding: a value per direction, not a finely tuned scalar
            dim = max(dim, min(v.value_set.size, 32))
        dims[v.name] = (site, max(1, dim))
    n_layers = max([_layer_of(s) + (0 if ".resid" in s and not s.endswith("resid_mid") else 1) for s, _ in dims.values()] + [1])
    if model is not None:
        n_layers = max(n_layers, model.config.num_layers if arch == "rnn" else model.config.n_layers)

    blocks: dict[str, tuple[str, tuple[int, ...]]] = {}
    if arch == "rnn":
        used: dict[str, int] = {}
        for name, (site, dim) in dims.items():
            start = used.get(site, 0)
            blocks[name] = (site, tuple(range(start, start + dim)))
            used[site] = start + dim
        widest = max([w for s, w in used.items() if s != "embed"] + [8])
        config = dict(num_layers=n_layers, hidden_size=max(32, widest + max(16, widest // 2)), embed_dim=max(len(task.vocab), used.get("embed", 0)))
    else:
        total = 0
        for name, (site, dim) in dims.items():
            blocks[name] = (site, tuple(range(total, total + dim)))
            total += dim
        d_model = int(np.ceil((total + max(16, total // 2)) / 8) * 8)
        # a Map of a numerical variable (a count mod 2, a sum mod 5) is a sawtooth over its values:
        # give the MLP a few ReLU units per value (per value and position in a transformer, whose
        # attention hands the MLP a mean, not a count)
        sawtooth = max([u.value_set.size for v in task.program if v.op == "Map" for u in v.inputs if u.value_set.is_numerical and u.op != "Map"] + [0])
        if any(v.op == "Scan" for v in task.program) and model is None:  # the parity of a count, as above
            sawtooth = max(sawtooth, task.max_len + 1)
        d_mlp = max(2 * d_model, (8 if arch == "transformer" else 4) * sawtooth)
        if arch == "transformer":
            heads = model.config.n_heads if model is not None else 1
            config = dict(n_layers=n_layers, d_model=d_model, n_heads=max(2, heads), d_head=16, d_mlp=d_mlp, layer_norm=False)
        else:
            pos = bool(model.config.pos_embed) if model is not None else any(v.op == "indices" for v in task.program)
            config = dict(n_layers=n_layers, d_model=d_model, d_inner=d_model, d_state=4, d_conv=4, d_mlp=d_mlp, pos_embed=pos)
    config.update(size)
    readers = {v.name: tuple(w.name for w in task.program if any(u.name == v.name for u in w.inputs)) for v in task.program}
    p = Plan(arch, config, blocks, readers, task.program.output.name)
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

    ``site_variables``: at a stream site, every variable written at or before it (each keeps its
    own block downstream); at a unit site, the variables of that layer. ``components``: the site
    each variable is read at; ``circuit``: the sites holding variables.
    """
    widths = {s.name: s.width for s in model.site_list()}
    variables = {}
    for name, (site, idx) in p.blocks.items():
        basis = np.zeros((len(idx), widths[site]))
        basis[np.arange(len(idx)), list(idx)] = 1.0
        variables[name] = Location(site, basis, 0)
    site_variables: dict[str, tuple[str, ...]] = {}
    order = [s.name for s in model.site_list()]
    for s in model.site_list():
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


def idle_variables(p: Plan, model, site: str) -> list[str]:
    """Variables whose block is idle at the residual-stream point ``site``: not written yet (its
    writer comes later), or stale (every reader was computed at or before ``site``; never the
    output). The strict term patches idle blocks, so no layer can smuggle a variable's inputs
    through a block reserved for a later variable, or bypass a variable by re-reading its inputs:
    in the transformer of ``sort``, ``tokens`` is stale at ``L2.resid`` once the ``le_k`` Maps are
    written, so layer 2 must count ``le_k``."""
    if p.family == "rnn" or model.site(site).kind != "resid":
        return []
    order = [s.name for s in model.site_list()]
    here = order.index(site)

    def stale(name):
        return name != p.output and all(order.index(p.blocks[r][0]) <= here for r in p.readers.get(name, ()))

    return [name for name, (written, _) in p.blocks.items() if order.index(written) > here or stale(name)]


def free_basis(p: Plan, model, site: str) -> np.ndarray:
    """Orthonormal rows spanning the coordinates of ``site`` that the algorithm does not use there.

    At a stream site: every stream coordinate no variable uses, plus the blocks idle there
    (:func:`idle_variables`); at a unit site the units no variable of that layer uses. Empty
    ``[0, width]`` when nothing is free.
    """
    width = model.site(site).width
    kind = model.site(site).kind
    if p.family != "rnn" and kind in STREAM_KINDS:
        idle = set(idle_variables(p, model, site))
        taken = {i for name, (s, idx) in p.blocks.items() if model.site(s).kind in STREAM_KINDS and name not in idle for i in idx}
    else:
        taken = {i for s, idx in p.blocks.values() if s == site for i in idx}
    free = [i for i in range(width) if i not in taken]
    basis = np.zeros((len(free), width), dtype=np.float32)
    basis[np.arange(len(free)), free] = 1.0
    return basis


def strict_sites(p: Plan, model) -> list[str]:
    """Sites the strict SIIT term patches (outside the aligned blocks): the stream points and
    hidden layers that hold variables or carry them, where free coordinates remain."""
    out = []
    for s in model.site_list():
        if s.kind in ("resid", "hidden", "embed") or s.name in p.sites():
            if free_basis(p, model, s.name).shape[0]:
                out.append(s.name)
    return out
