"""Ground truth: where every program variable lives in a model, at every grain.

Built by construction (by a compiler, or as the alignment a planted model was trained on), never
by running an interpretability method.

- ``variables``: variable -> :class:`Location` (a site, an orthonormal basis of the subspace that
  holds the variable, and a lag: the value at position t lives at the site's position t + lag).
  Patching that subspace with a source run's activation reproduces the program's counterfactual
  under the protocol of :mod:`tasks.interpreter`.
- ``components``: variable -> the components (site names) whose computation produces it.
- ``circuit``: every component the algorithm uses; a component outside it can be patched freely.
- ``edges``: (upstream component, downstream component) pairs the algorithm uses, where the family
  has edges (components summing into a residual stream); empty otherwise.
- ``site_variables``: site -> the variables readable at that site, each in the subspace of its
  ``Location`` (a residual stream carries a variable, in the same basis, from the layer that
  writes it onwards). Patching the part of a site orthogonal to all of their subspaces leaves
  every output unchanged.

At the grain of *components* (:mod:`zoo.components`: heads, blocks of MLP or RNN units, groups
of SSM channels, each at each position):

- ``cells``: component -> one label per position: 1 when the component holds, at that position,
  a variable some counted readout can depend on (the circuit), 0 when it does not (a decoy, or a
  variable nothing reads there), -1 when the cell is neither (input-independent: position 0,
  a clock, a constant head; or idle). Metrics over cells skip the -1s.
- ``component_variables``: component -> the variables it computes or carries (decoys included).
- ``decoys``: the decoy variables (:mod:`tasks.decoys`), located in ``variables`` like the
  others, outside the circuit; ``readouts``: decoy output -> a :class:`Readout` that decodes its
  value from an activation, so an evaluator can see whether an intervention moved the decoys.
- ``stages``: implementation variable -> :class:`Location`, where a family implements a program
  variable in stages (a ``Scan`` as a parallel prefix of partial products in a transformer or an
  SSM, :mod:`tasks.rewrite`); patching one reproduces the counterfactual of the rewritten
  program (``tasks.rewrite.staged(task)``). ``stage_of``: stage -> the program variable it
  implements. Empty where every variable is computed in one piece (the RNN's step-by-step Scan).
  A stage may be listed in ``site_variables`` and ``components`` like a variable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class Location:
    site: str
    basis: np.ndarray  # [k, width], orthonormal rows
    lag: int = 0

    def __post_init__(self):
        b = np.asarray(self.basis, dtype=np.float64)
        if b.ndim != 2 or b.shape[0] < 1:
            raise ValueError(f"basis for site {self.site!r} must be [k, width] with k >= 1, got shape {b.shape}")
        if not np.allclose(b @ b.T, np.eye(b.shape[0]), atol=1e-5):
            raise ValueError(f"basis for site {self.site!r} must have orthonormal rows")
        object.__setattr__(self, "basis", b)

    def __repr__(self) -> str:  # the basis as its shape: printing a ground truth must not dump matrices
        return f"Location(site={self.site!r}, basis=<{self.basis.shape[0]}x{self.basis.shape[1]}>, lag={self.lag})"

    @property
    def dim(self) -> int:
        return self.basis.shape[0]

    def tensor(self, dtype=torch.float32) -> torch.Tensor:
        return torch.as_tensor(self.basis, dtype=dtype)

    def to_json(self) -> dict:
        return {"site": self.site, "lag": self.lag, "basis": self.basis.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> "Location":
        return cls(d["site"], np.asarray(d["basis"], dtype=np.float64), int(d.get("lag", 0)))


@dataclass(frozen=True)
class Readout:
    """A linear decoder of a variable's value from one site: ``values[argmax(x @ weight.T + bias)]``
    at every position (the decoy output's counterpart of a model's unembedding)."""

    site: str
    weight: np.ndarray  # [n_values, width]
    bias: np.ndarray  # [n_values]
    values: tuple[int, ...]

    def __post_init__(self):
        w, b = np.asarray(self.weight, dtype=np.float64), np.asarray(self.bias, dtype=np.float64)
        if w.ndim != 2 or b.shape != (w.shape[0],) or w.shape[0] != len(self.values):
            raise ValueError(f"readout at {self.site!r}: weight {w.shape}, bias {b.shape} and {len(self.values)} values disagree")
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)
        object.__setattr__(self, "values", tuple(int(v) for v in self.values))

    def decode(self, acts: torch.Tensor) -> np.ndarray:
        """Values ``[B, T]`` decoded from activations ``[B, T, width]`` of ``site``."""
        w = torch.as_tensor(self.weight, dtype=acts.dtype, device=acts.device)
        b = torch.as_tensor(self.bias, dtype=acts.dtype, device=acts.device)
        idx = (acts @ w.T + b).argmax(-1).cpu().numpy()
        return np.asarray(self.values, dtype=np.int64)[idx]

    def to_json(self) -> dict:
        return {"site": self.site, "weight": self.weight.tolist(), "bias": self.bias.tolist(), "values": list(self.values)}

    @classmethod
    def from_json(cls, d: dict) -> "Readout":
        return cls(d["site"], np.asarray(d["weight"], dtype=np.float64), np.asarray(d["bias"], dtype=np.float64), tuple(d["values"]))


POSITIVE, NEGATIVE, NEITHER = 1, 0, -1  # cell labels


@dataclass
class GroundTruth:
    variables: dict[str, Location]
    components: dict[str, tuple[str, ...]] = field(default_factory=dict)
    circuit: tuple[str, ...] = ()
    edges: tuple[tuple[str, str], ...] = ()
    site_variables: dict[str, tuple[str, ...]] = field(default_factory=dict)
    cells: dict[str, tuple[int, ...]] = field(default_factory=dict)
    component_variables: dict[str, tuple[str, ...]] = field(default_factory=dict)
    decoys: tuple[str, ...] = ()
    readouts: dict[str, Readout] = field(default_factory=dict)
    stages: dict[str, Location] = field(default_factory=dict)
    stage_of: dict[str, str] = field(default_factory=dict)

    @property
    def program_variables(self) -> dict[str, Location]:
        """The locations of the variables the output depends on (``variables`` without decoys)."""
        return {k: v for k, v in self.variables.items() if k not in set(self.decoys)}

    def positive_components(self) -> tuple[str, ...]:
        """Components with a cell in the circuit at some position."""
        return tuple(c for c, lab in self.cells.items() if POSITIVE in lab)

    def scored_components(self) -> tuple[str, ...]:
        """Components with at least one cell that is not NEITHER."""
        return tuple(c for c, lab in self.cells.items() if any(x != NEITHER for x in lab))

    def location(self, name: str) -> Location:
        """The location of a program variable or of a stage (implementation variable)."""
        return self.variables[name] if name in self.variables else self.stages[name]

    def subspace_at(self, site: str) -> np.ndarray:
        """Orthonormal basis ``[k, width]`` of the span of every variable readable at ``site``."""
        names = self.site_variables.get(site, ())
        if not names:
            return np.zeros((0, 0))
        stacked = np.concatenate([self.location(n).basis for n in names], axis=0)
        _, s, vt = np.linalg.svd(stacked, full_matrices=False)
        return vt[s > 1e-8]

    def renamed(self, sites: dict[str, str] | None = None, components: dict[str, str] | None = None) -> "GroundTruth":
        """A copy with sites and components renamed (a reparametrisation that permutes heads
        renames head sites; one that permutes units renames the blocks of a partition)."""
        sites, components = sites or {}, components or {}
        s = lambda name: sites.get(name, name)  # noqa: E731
        c = lambda name: components.get(name, sites.get(name, name))  # noqa: E731
        return GroundTruth(
            variables={k: Location(s(v.site), v.basis, v.lag) for k, v in self.variables.items()},
            components={k: tuple(s(x) for x in v) for k, v in self.components.items()},
            circuit=tuple(s(x) for x in self.circuit),
            edges=tuple((s(a), s(b)) for a, b in self.edges),
            site_variables={s(k): v for k, v in self.site_variables.items()},
            cells={c(k): v for k, v in self.cells.items()},
            component_variables={c(k): v for k, v in self.component_variables.items()},
            decoys=self.decoys,
            readouts={k: Readout(s(r.site), r.weight, r.bias, r.values) for k, r in self.readouts.items()},
            stages={k: Location(s(v.site), v.basis, v.lag) for k, v in self.stages.items()},
            stage_of=dict(self.stage_of),
        )

    def to_json(self) -> dict:
        return {
            "variables": {k: v.to_json() for k, v in self.variables.items()},
            "components": {k: list(v) for k, v in self.components.items()},
            "circuit": list(self.circuit),
            "edges": [list(e) for e in self.edges],
            "site_variables": {k: list(v) for k, v in self.site_variables.items()},
            "cells": {k: list(v) for k, v in self.cells.items()},
            "component_variables": {k: list(v) for k, v in self.component_variables.items()},
            "decoys": list(self.decoys),
            "readouts": {k: v.to_json() for k, v in self.readouts.items()},
            "stages": {k: v.to_json() for k, v in self.stages.items()},
            "stage_of": dict(self.stage_of),
        }

    @classmethod
    def from_json(cls, d: dict) -> "GroundTruth":
        return cls(
            variables={k: Location.from_json(v) for k, v in d["variables"].items()},
            components={k: tuple(v) for k, v in d.get("components", {}).items()},
            circuit=tuple(d.get("circuit", ())),
            edges=tuple(tuple(e) for e in d.get("edges", ())),
            site_variables={k: tuple(v) for k, v in d.get("site_variables", {}).items()},
            cells={k: tuple(int(x) for x in v) for k, v in d.get("cells", {}).items()},
            component_variables={k: tuple(v) for k, v in d.get("component_variables", {}).items()},
            decoys=tuple(d.get("decoys", ())),
            readouts={k: Readout.from_json(v) for k, v in d.get("readouts", {}).items()},
            stages={k: Location.from_json(v) for k, v in d.get("stages", {}).items()},
            stage_of=dict(d.get("stage_of", {})),
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json())
