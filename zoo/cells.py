"""The ground truth at the grain of (component, position) cells, from what a compiler or trainer
says each block of a model does.

A builder describes every block it gives a meaning to as a :class:`Block`: its site, its units,
and its *roles*, each a ``(variable, mode)``:

- ``"pos"``: the block computes or holds the variable at the position it sits at, and what reads
  it reads it there (an attention head, MLP units, an RNN copy or decoding, a convolution tap);
- ``"state"``: the block carries the variable forward in time (an RNN counter or memory slot, an
  SSM state channel): the value held at j is read at every later position;
- ``"const"``: the block's activation does not depend on the input (a clock, a constant head, the
  position-0 fix): resampling or mean-ablating it changes nothing, so it is no evidence either way.

:func:`attach` turns blocks into the model's ``partition`` and the ground truth's ``cells``:
with ``live`` the positions where the output can depend on each variable
(:func:`tasks.liveness.live`), a cell is POSITIVE when one of its block's roles is a variable
the output reads, that variable varies with the input there (:func:`variation`) and is live
there (``pos``) or at some later position (``state``); NEGATIVE when some role's variable varies
there but none is live (decoys, and variables where nothing reads them); NEITHER where no role's
variable varies (position 0, where every input holds BOS; a variable constant at that position
on the task's inputs), for blocks with only ``const`` roles, and for components no block
describes (idle units). It also restricts the
site-level ``circuit``, the ``edges`` and each variable's ``components`` to what is in the
circuit somewhere.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from tasks.liveness import carried, live

from .components import COMPONENT_KINDS, component_list
from .ground_truth import NEGATIVE, NEITHER, POSITIVE, GroundTruth

MODES = ("pos", "state", "const")
WHOLE_SITE_KINDS = ("head",)  # a head is its whole site, never split into blocks


@dataclass
class Block:
    site: str
    units: tuple[int, ...]
    roles: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self):
        self.units = tuple(int(u) for u in self.units)
        for _, mode in self.roles:
            if mode not in MODES:
                raise ValueError(f"block mode {mode!r} must be one of {MODES}")


def merge(blocks: list[Block]) -> list[Block]:
    """Blocks of the same site with the same roles joined into one (a builder may describe a
    block unit by unit)."""
    out: dict[tuple, Block] = {}
    for b in blocks:
        key = (b.site, tuple(sorted(set(b.roles))))
        if key in out:
            out[key].units = tuple(out[key].units) + b.units
        else:
            out[key] = Block(b.site, b.units, sorted(set(b.roles)))
    return list(out.values())


def labels(roles, program, lv: dict, varies: dict, L: int) -> np.ndarray:
    """One component's cell labels from its roles (see the module doc)."""
    lab = np.full(L, NEITHER, dtype=np.int64)
    active = np.zeros(L, dtype=bool)  # some role's variable varies with the input here
    pos = np.zeros(L, dtype=bool)
    for var, mode in roles:
        if mode == "const":
            continue
        active |= varies[var]
        if var in program.output_names:
            pos |= (lv[var] if mode == "pos" else carried(lv[var])) & varies[var]
    lab[active] = NEGATIVE
    lab[pos] = POSITIVE
    lab[0] = NEITHER
    return lab


@functools.lru_cache(maxsize=64)
def variation(task, n: int = 2048, seed: int = 0) -> dict[str, np.ndarray]:
    """Per variable, a boolean ``[L]``: whether its value at that position differs between
    inputs of the task's sampler (``n`` of them, seeded). A variable that is the same on every
    input at a position (``le0`` after sort's latest SEP, anything at position 0) cannot be
    moved by resampling or mean ablation there, so its cells are no evidence either way."""
    return _variation(task.program, task, n, seed)


def _variation(program, task, n: int = 2048, seed: int = 0) -> dict[str, np.ndarray]:
    from tasks import interpreter

    values = interpreter.run(program, task.sample(n, seed=seed).tokens)
    return {k: (v != v[:1]).any(axis=0) for k, v in values.items()}


def attach(model, task, gt: GroundTruth, blocks: list[Block], program=None) -> GroundTruth:
    """Set ``model.partition`` and fill ``gt``'s cells, component variables and decoys (see the
    module doc); ``task`` is the task the model computes (decoys included), ``program`` the
    program the builder compiled when it is not ``task.program`` (a rewrite with stages)."""
    sites = {s.name: s for s in model.site_list()}
    blocks = merge(blocks)
    partition: dict[str, list[list[int]]] = {}
    for b in blocks:
        kind = sites[b.site].kind
        if kind not in COMPONENT_KINDS:
            raise ValueError(f"block at {b.site!r}: a {kind} site has no components")
        if kind not in WHOLE_SITE_KINDS:
            partition.setdefault(b.site, []).append(sorted(b.units))
    for site in sites.values():  # a site the builder gave no block to holds no component
        if site.kind in COMPONENT_KINDS and site.kind not in WHOLE_SITE_KINDS:
            partition.setdefault(site.name, [])
    model.partition = partition
    by_units = {(b.site, tuple(sorted(b.units))): b for b in blocks}
    program = task.program if program is None else program
    L = task.max_len
    lv = live(program, task.possible_readout())
    varies = variation(task) if program is task.program else _variation(program, task)
    cells, comp_vars = {}, {}
    for c in component_list(model.site_list(), partition):
        b = by_units.get((c.site, tuple(sorted(c.units))))
        roles = b.roles if b is not None else []
        if c.kind in WHOLE_SITE_KINDS and b is None:
            b = next((x for x in blocks if x.site == c.site), None)
            roles = b.roles if b is not None else []
        cells[c.name] = tuple(int(x) for x in labels(roles, program, lv, varies, L))
        comp_vars[c.name] = tuple(dict.fromkeys(v for v, mode in roles if mode != "const"))
    gt.cells, gt.component_variables = cells, comp_vars
    gt.decoys = tuple(d for d in program.decoy_names if d in gt.variables)
    components = component_list(model.site_list(), partition)
    positive = {c.site for c in components if POSITIVE in cells[c.name]}
    positive |= _moving(model, task, components, {c.name: (by_units.get((c.site, tuple(sorted(c.units)))) or next((x for x in blocks if x.site == c.site), None)) for c in components}, program, lv, positive)
    gt.circuit = tuple(s for s in gt.circuit if _in_circuit(s, sites, positive))
    gt.edges = tuple(e for e in gt.edges if all(x in ("embed", "logits") or _in_circuit(x, sites, positive) for x in e))
    gt.components = {v: tuple(x for x in comps if x not in sites or _in_circuit(x, sites, positive)) for v, comps in gt.components.items()}
    return gt


def _moving(model, task, components, block_of: dict, program, lv: dict, positive: set, n: int = 256) -> set:
    """Sites outside ``positive`` that hold a variable the output reads where it is live and whose
    activation still differs between inputs there: a variable constant on the task's inputs (its
    cells NEITHER) can sit in a component whose activation is not (a key == query or comparison
    count's per-key scratch, a state channel), and patching that component moves the output, so
    its site stays in the site-level circuit."""
    import torch

    wanted = {}
    for c in components:
        b = block_of.get(c.name)
        if c.site in positive or b is None:
            continue
        live_at = np.zeros(task.max_len, dtype=bool)
        for var, mode in b.roles:
            if mode != "const" and var in program.output_names:
                live_at |= lv[var] if mode == "pos" else carried(lv[var])
        live_at[0] = False
        if live_at.any():
            wanted.setdefault(c.site, []).append((c, live_at))
    if not wanted:
        return set()
    with torch.no_grad():
        cache = model.run(torch.as_tensor(task.sample(n, seed=0).tokens), cache=list(wanted)).cache
    out = set()
    for site, items in wanted.items():
        a = cache[site].cpu().numpy()
        for c, live_at in items:
            x = a[:, :, list(c.units)] if c.units else a
            if (np.abs(x - x[:1]).max(axis=(0, 2)) > 1e-6)[live_at].any():
                out.add(site)
    return out


def _in_circuit(name: str, sites: dict, positive: set) -> bool:
    """Whether a site (or an edge's endpoint) is in the circuit once decoys are out: a
    component site when a cell of it is positive; a sublayer's output (``L0.mlp``, ``L0.mixer``)
    when its components are; a stream site always."""
    kind = sites[name].kind if name in sites else None
    layer = name.split(".")[0]
    if kind == "conv":  # the convolution also writes the state channels
        return name in positive or f"{layer}.state" in positive
    if kind in COMPONENT_KINDS:
        return name in positive
    if kind == "mlp" or name.endswith(".mlp"):
        return f"{layer}.mlp.hidden" in positive
    if kind == "mixer" or name.endswith(".mixer"):
        return f"{layer}.state" in positive or f"{layer}.conv" in positive
    return True
