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


@dataclass
class GroundTruth:
    variables: dict[str, Location]
    components: dict[str, tuple[str, ...]] = field(default_factory=dict)
    circuit: tuple[str, ...] = ()
    edges: tuple[tuple[str, str], ...] = ()
    site_variables: dict[str, tuple[str, ...]] = field(default_factory=dict)
    stages: dict[str, Location] = field(default_factory=dict)
    stage_of: dict[str, str] = field(default_factory=dict)

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

    def to_json(self) -> dict:
        return {
            "variables": {k: v.to_json() for k, v in self.variables.items()},
            "components": {k: list(v) for k, v in self.components.items()},
            "circuit": list(self.circuit),
            "edges": [list(e) for e in self.edges],
            "site_variables": {k: list(v) for k, v in self.site_variables.items()},
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
            stages={k: Location.from_json(v) for k, v in d.get("stages", {}).items()},
            stage_of=dict(d.get("stage_of", {})),
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json())
