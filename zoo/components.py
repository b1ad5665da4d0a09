"""Components: the smallest parts of a model that a compiler or trainer gives a meaning to.

A component is a set of coordinates (``units``) of one site: an attention head (the whole
``L{l}.attn.head{i}`` site), a block of MLP hidden units, a block of an RNN layer's units, a group
of SSM channels (at ``L{l}.state`` where they hold state, at ``L{l}.conv`` where the
convolution alone carries them). Components are resolved in time by the ground truth: every
(component, position) is a *cell*, labelled in or out of the circuit
(:attr:`zoo.ground_truth.GroundTruth.cells`).

Which coordinates form a block is part of the model, not of its ground truth: a model carries a
``partition`` (site -> list of unit blocks) that its compiler or trainer wrote, saved with the
weights and moved along by reparametrisation. A site of a component kind without a partition is
one component (its name is the site's); a partitioned site has one component per block, named
``{site}.b{i}`` in the order of the blocks' smallest unit (so names say nothing about what a
block holds). Methods see components (``model.components``) and patch them like sites, through
:func:`zoo.sites.patch` with ``units=``; nothing about them is family-specific.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COMPONENT_KINDS = ("head", "mlp_hidden", "hidden", "state", "conv")


@dataclass(frozen=True)
class Component:
    """A block of coordinates of one site (see the module doc)."""

    name: str
    site: str
    units: tuple[int, ...]
    layer: int
    kind: str

    @property
    def width(self) -> int:
        return len(self.units)

    def basis(self, site_width: int) -> np.ndarray:
        """Its coordinates as orthonormal rows ``[width, site_width]`` (axis-aligned)."""
        b = np.zeros((len(self.units), site_width))
        b[np.arange(len(self.units)), list(self.units)] = 1.0
        return b


def component_list(sites, partition: dict) -> list[Component]:
    """The components of a model with ``sites`` and ``partition`` (see the module doc)."""
    out = []
    for s in sites:
        if s.kind not in COMPONENT_KINDS:
            continue
        blocks = partition.get(s.name)
        if blocks is None:
            out.append(Component(s.name, s.name, tuple(range(s.width)), s.layer, s.kind))
            continue
        for i, block in enumerate(canonical(blocks)):
            out.append(Component(f"{s.name}.b{i}", s.name, tuple(block), s.layer, s.kind))
    return out


def canonical(blocks) -> list[list[int]]:
    """Blocks as sorted unit lists, ordered by their smallest unit (the naming order)."""
    clean = [sorted(int(u) for u in b) for b in blocks if len(b)]
    return sorted(clean, key=lambda b: b[0])


def check_partition(sites, partition: dict) -> dict:
    """``partition`` cleaned and checked: known sites of component kinds, disjoint in-range units."""
    widths = {s.name: (s.width, s.kind) for s in sites}
    out = {}
    for site, blocks in partition.items():
        if site not in widths:
            raise ValueError(f"partition names unknown site {site!r}; sites: {', '.join(widths)}")
        width, kind = widths[site]
        if kind not in COMPONENT_KINDS:
            raise ValueError(f"partition of site {site!r}: a {kind} site has no components (kinds with components: {', '.join(COMPONENT_KINDS)})")
        blocks = canonical(blocks)
        units = [u for b in blocks for u in b]
        if len(set(units)) != len(units) or any(not 0 <= u < width for u in units):
            raise ValueError(f"partition of site {site!r}: blocks must be disjoint units in 0..{width - 1}")
        out[site] = blocks
    return out


def moved(partition: dict, new_index: dict) -> tuple[dict, dict[str, str]]:
    """The partition after the units of some sites moved (``new_index[site][old] = new``), and
    the renaming of components it implies (old name -> new name; block order follows units)."""
    out, rename = {}, {}
    for site, blocks in partition.items():
        old = canonical(blocks)
        perm = new_index.get(site)
        new = [sorted(int(perm[u]) for u in b) for b in old] if perm is not None else [list(b) for b in old]
        order = sorted(range(len(new)), key=lambda i: new[i][0])
        out[site] = [new[i] for i in order]
        for rank, i in enumerate(order):
            rename[f"{site}.b{i}"] = f"{site}.b{rank}"
    return out, rename
