"""The three kinds of finding a method returns: :class:`SiteScores`, :class:`Alignment`, :class:`Circuit`.

Each validates itself on construction (types, shapes, finite values, orthonormal bases) and
against a model with ``finding.validate(model)`` (site names exist, widths match); each has
``to_json()`` and ``from_json()`` (plain JSON: lists and floats, no pickle).

- ``SiteScores``: an importance score per (site or component, position) (``scores``: name ->
  float array ``[T]``; components are ``model.components``, the grain the evaluator scores)
  and/or per name over all positions (``components``: name -> float), with the ablation that
  produced them (``"zero"``, ``"mean"``, ``"resample"``, or None for methods that ablate
  nothing, such as the controls).
- ``Alignment``: variable -> :class:`AlignedVariable` (site, positions ``"all"`` or a tuple,
  an orthonormal basis ``[k, width]``, a lag, and optionally a :class:`Featurizer`, a sparse
  dictionary with an error term, which then defines the intervention).
- ``Circuit``: the components kept (component names; a site name keeps all of its components),
  edges ``(upstream, downstream)`` between writer sites where the method finds them, and the
  ablation used to decide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import torch

from zoo.ground_truth import Location
from zoo.sites import patch
from zoo.verify import counterfactual_accuracy

ABLATIONS = ("zero", "mean", "resample")


class FindingError(ValueError):
    """A finding that does not validate (bad names, shapes, values or bases)."""


def check_ablation(ablation) -> str:
    if ablation not in ABLATIONS:
        raise FindingError(f"ablation {ablation!r} must be one of {', '.join(ABLATIONS)}")
    return ablation


def _site_names(model) -> dict[str, int]:
    return {s.name: s.width for s in model.sites}


def _scorable_names(model) -> list[str]:
    """What a SiteScores or a Circuit may name: sites and components (``model.components``)."""
    return list(dict.fromkeys([s.name for s in model.sites] + [c.name for c in model.components]))


def _finite_array(x, what: str, ndim: int) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != ndim:
        raise FindingError(f"{what} must be a {ndim}-d array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise FindingError(f"{what} has non-finite values")
    return arr


# -- SiteScores ------------------------------------------------------------------------------
@dataclass
class SiteScores:
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # site -> [T]
    components: dict[str, float] = field(default_factory=dict)  # component -> score
    ablation: str | None = None
    method: str = ""
    meta: dict = field(default_factory=dict)

    kind = "site_scores"

    def __post_init__(self):
        if not self.scores and not self.components:
            raise FindingError("SiteScores needs scores per (site, position) or per component")
        if self.ablation is not None:
            check_ablation(self.ablation)
        lengths = set()
        clean = {}
        for site, arr in self.scores.items():
            if not isinstance(site, str):
                raise FindingError(f"site names must be strings, got {site!r}")
            clean[site] = _finite_array(arr, f"scores[{site!r}]", 1)
            lengths.add(clean[site].shape[0])
        if len(lengths) > 1:
            raise FindingError(f"every site needs one score per position, got lengths {sorted(lengths)}")
        self.scores = clean
        comps = {}
        for name, v in self.components.items():
            if not isinstance(name, str) or not math.isfinite(float(v)):
                raise FindingError(f"component score {name!r}: {v!r} must be a finite float keyed by a string")
            comps[name] = float(v)
        self.components = comps

    @property
    def n_positions(self) -> int:
        return next(iter(self.scores.values())).shape[0] if self.scores else 0

    def by_site(self, reduce: str = "max") -> dict[str, float]:
        """One score per site: ``max`` (default), ``sum`` or ``mean`` of |score| over positions;
        component scores fill in sites without per-position scores."""
        fns = {"max": np.max, "sum": np.sum, "mean": np.mean}
        if reduce not in fns:
            raise ValueError(f"reduce {reduce!r} must be one of {', '.join(fns)}")
        out = {s: float(fns[reduce](np.abs(a))) for s, a in self.scores.items()}
        for c, v in self.components.items():
            out.setdefault(c, abs(v))
        return out

    def validate(self, model) -> "SiteScores":
        sites = _scorable_names(model)
        unknown = [s for s in list(self.scores) + list(self.components) if s not in sites]
        if unknown:
            raise FindingError(f"SiteScores names unknown sites or components {unknown}; the model's sites and components: {', '.join(sites)}")
        if self.scores and self.n_positions > model.max_len:
            raise FindingError(f"{self.n_positions} positions exceed the model's max_len {model.max_len}")
        return self

    def to_json(self) -> dict:
        return {"type": "SiteScores", "method": self.method, "ablation": self.ablation,
                "scores": {k: v.tolist() for k, v in self.scores.items()}, "components": dict(self.components), "meta": _jsonable(self.meta)}

    @classmethod
    def from_json(cls, d: dict) -> "SiteScores":
        return cls({k: np.asarray(v) for k, v in d.get("scores", {}).items()}, dict(d.get("components", {})), d.get("ablation"), d.get("method", ""), d.get("meta", {}))


# -- Alignment ---------------------------------------------------------------------------------
@dataclass
class Featurizer:
    """A sparse dictionary ``f = topk(relu((x - b_dec) @ W_enc + b_enc))``, ``x_hat = f @ W_dec + b_dec``.

    An aligned variable owns the dictionary features ``features``. Its intervention keeps every
    base feature except those, which it takes from the source, and adds back the base's
    reconstruction error ``x - x_hat``: a lossy dictionary still patches exactly what it claims.
    """

    W_enc: np.ndarray  # [width, m]
    b_enc: np.ndarray  # [m]
    W_dec: np.ndarray  # [m, width]
    b_dec: np.ndarray  # [width]
    k: int
    features: tuple[int, ...]

    def __post_init__(self):
        self.W_enc = _finite_array(self.W_enc, "W_enc", 2)
        self.W_dec = _finite_array(self.W_dec, "W_dec", 2)
        self.b_enc = _finite_array(self.b_enc, "b_enc", 1)
        self.b_dec = _finite_array(self.b_dec, "b_dec", 1)
        w, m = self.W_enc.shape
        if self.W_dec.shape != (m, w) or self.b_enc.shape != (m,) or self.b_dec.shape != (w,):
            raise FindingError(f"featurizer shapes disagree: W_enc {self.W_enc.shape}, W_dec {self.W_dec.shape}, b_enc {self.b_enc.shape}, b_dec {self.b_dec.shape}")
        self.k = int(self.k)
        if not 1 <= self.k <= m:
            raise FindingError(f"featurizer k={self.k} must be within 1..{m}")
        self.features = tuple(int(f) for f in self.features)
        if not self.features or any(not 0 <= f < m for f in self.features):
            raise FindingError(f"featurizer features {self.features} must be non-empty indices into {m} dictionary features")

    def __repr__(self) -> str:  # shapes, not matrices
        return f"Featurizer(<{self.W_enc.shape[0]}x{self.W_enc.shape[1]}>, k={self.k}, features={self.features})"

    @property
    def width(self) -> int:
        return self.W_enc.shape[0]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        t = lambda a: torch.as_tensor(a, dtype=x.dtype, device=x.device)  # noqa: E731
        pre = torch.relu((x - t(self.b_dec)) @ t(self.W_enc) + t(self.b_enc))
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, top.values)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ torch.as_tensor(self.W_dec, dtype=f.dtype, device=f.device) + torch.as_tensor(self.b_dec, dtype=f.dtype, device=f.device)

    def interchange(self, x: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        """``x`` with the owned features taken from ``src``, reconstruction error of ``x`` kept."""
        fx, fs = self.encode(x), self.encode(src)
        sel = torch.zeros(fx.shape[-1], dtype=x.dtype, device=x.device)
        sel[list(self.features)] = 1
        error = x - self.decode(fx)
        return self.decode(fx + (fs - fx) * sel) + error

    def to_json(self) -> dict:
        return {"W_enc": self.W_enc.tolist(), "b_enc": self.b_enc.tolist(), "W_dec": self.W_dec.tolist(), "b_dec": self.b_dec.tolist(), "k": self.k, "features": list(self.features)}

    @classmethod
    def from_json(cls, d: dict) -> "Featurizer":
        return cls(np.asarray(d["W_enc"]), np.asarray(d["b_enc"]), np.asarray(d["W_dec"]), np.asarray(d["b_dec"]), d["k"], tuple(d["features"]))


@dataclass
class AlignedVariable:
    """Where a method says a variable lives: a site, positions, an orthonormal basis, a lag."""

    site: str
    basis: np.ndarray  # [k, width], orthonormal rows
    positions: Union[str, tuple[int, ...]] = "all"
    lag: int = 0
    featurizer: Featurizer | None = None
    score: float | None = None  # the method's own confidence (probe accuracy, DAS IIA, ...)

    def __post_init__(self):
        if not isinstance(self.site, str):
            raise FindingError(f"site must be a site name, got {self.site!r}")
        b = _finite_array(self.basis, f"basis at {self.site!r}", 2)
        if b.shape[0] < 1 or b.shape[0] > b.shape[1]:
            raise FindingError(f"basis at {self.site!r} must be [k, width] with 1 <= k <= width, got {b.shape}")
        if not np.allclose(b @ b.T, np.eye(b.shape[0]), atol=1e-4):
            raise FindingError(f"basis at {self.site!r} must have orthonormal rows")
        self.basis = b
        if self.positions != "all":
            if isinstance(self.positions, str):
                raise FindingError(f"positions must be 'all' or a tuple of ints, got {self.positions!r}")
            self.positions = tuple(int(p) for p in self.positions)
            if any(p < 0 for p in self.positions):
                raise FindingError(f"positions {self.positions} must be >= 0")
        self.lag = int(self.lag)
        if self.featurizer is not None and self.featurizer.width != b.shape[1]:
            raise FindingError(f"featurizer width {self.featurizer.width} differs from the basis width {b.shape[1]}")
        if self.score is not None:
            self.score = float(self.score)

    def __repr__(self) -> str:  # the basis (and featurizer) as shapes, not matrices
        feat = f", featurizer={self.featurizer!r}" if self.featurizer is not None else ""
        return (f"AlignedVariable(site={self.site!r}, basis=<{self.basis.shape[0]}x{self.basis.shape[1]}>, positions={self.positions!r}, "
                f"lag={self.lag}{feat}, score={self.score!r})")

    @property
    def width(self) -> int:
        return self.basis.shape[1]

    def location(self) -> Location:
        """The basis as a :class:`zoo.Location` (ignores a featurizer), for ``zoo.verify.iia``."""
        return Location(self.site, self.basis, self.lag)

    def intervention(self, source: torch.Tensor, positions):
        """An intervention on ``self.site`` taking this variable from ``source`` ``[B, T, W]`` at
        ``positions`` (an int or one per example; the lag is added here)."""
        pos = torch.as_tensor(np.asarray(positions) + self.lag)
        if self.featurizer is None:
            return patch(source, positions=pos, basis=torch.as_tensor(self.basis, dtype=source.dtype))
        feat = self.featurizer

        def fn(x, p):
            new = feat.interchange(x, source[:, p, :].to(x.dtype))
            target = pos.to(p.device).reshape(-1)
            mask = (p[None, :] == target[:, None]) if target.numel() > 1 else (p[None, :] == target).expand(x.shape[0], -1)
            return torch.where(mask[..., None], new, x)

        return fn

    def to_json(self) -> dict:
        return {"site": self.site, "basis": self.basis.tolist(), "positions": self.positions if self.positions == "all" else list(self.positions),
                "lag": self.lag, "featurizer": self.featurizer.to_json() if self.featurizer else None, "score": self.score}

    @classmethod
    def from_json(cls, d: dict) -> "AlignedVariable":
        pos = d.get("positions", "all")
        return cls(d["site"], np.asarray(d["basis"]), pos if pos == "all" else tuple(pos), int(d.get("lag", 0)),
                   Featurizer.from_json(d["featurizer"]) if d.get("featurizer") else None, d.get("score"))


@dataclass
class Alignment:
    variables: dict[str, AlignedVariable]
    method: str = ""
    meta: dict = field(default_factory=dict)

    kind = "alignment"

    def __post_init__(self):
        if not self.variables:
            raise FindingError("an Alignment needs at least one variable")
        for name, v in self.variables.items():
            if not isinstance(name, str) or not isinstance(v, AlignedVariable):
                raise FindingError(f"Alignment maps variable names to AlignedVariable, got {name!r}: {type(v).__name__}")

    def validate(self, model, task=None) -> "Alignment":
        sites = _site_names(model)
        for name, v in self.variables.items():
            if v.site not in sites:
                raise FindingError(f"variable {name!r} is aligned to unknown site {v.site!r}; the model's sites: {', '.join(sites)}")
            if v.width != sites[v.site]:
                raise FindingError(f"variable {name!r}: basis width {v.width} differs from site {v.site!r}'s width {sites[v.site]}")
            if task is not None and name not in task.program.names:
                raise FindingError(f"variable {name!r} is not in task {task.name!r}'s program: {', '.join(task.program.names)}")
        return self

    def iia(self, model, task, variable: str, n: int = 256, seed: int = 0) -> float:
        """IIA of this alignment for ``variable`` on ``n`` held-out pairs (featurizer if any)."""
        return alignment_iia(model, task, variable, self.variables[variable], n=n, seed=seed)

    def to_json(self) -> dict:
        return {"type": "Alignment", "method": self.method, "variables": {k: v.to_json() for k, v in self.variables.items()}, "meta": _jsonable(self.meta)}

    @classmethod
    def from_json(cls, d: dict) -> "Alignment":
        return cls({k: AlignedVariable.from_json(v) for k, v in d["variables"].items()}, d.get("method", ""), d.get("meta", {}))


def alignment_predictions(model, task, variable: str, aligned: AlignedVariable, n: int = 256, seed: int = 0, pairs=None):
    """(base, source, position, predicted): ``n`` held-out pairs for ``variable`` (or ``pairs``)
    and the argmax of the base run with the aligned location patched from the source."""
    base, source, _, position = pairs if pairs is not None else task.sample_interventions(n, seed=seed, variable=variable)
    with torch.no_grad():
        src = model.run(torch.as_tensor(source), cache=[aligned.site]).cache[aligned.site]
        got = model.run(torch.as_tensor(base), interventions={aligned.site: aligned.intervention(src, position)}).logits.argmax(-1).cpu().numpy()
    return base, source, position, got


def alignment_iia(model, task, variable: str, aligned: AlignedVariable, n: int = 256, seed: int = 0, pairs=None) -> float:
    """IIA of one aligned variable (as ``zoo.verify.iia``, but honouring a featurizer); on changed
    outputs too: :func:`alignment_predictions` and ``zoo.verify.counterfactual_accuracies``."""
    base, source, position, got = alignment_predictions(model, task, variable, aligned, n=n, seed=seed, pairs=pairs)
    return counterfactual_accuracy(task, variable, base, source, position, got)


def patched_rows(model, aligned: dict, base, source, position, owner, readout_sites, chunk: int):
    """Argmax ``[R, L]`` and cached ``readout_sites`` of ``base`` rows, row r patched at the
    location ``aligned[owner[r]]`` from its own source at ``position[r]``: many alignments
    measured in a few batched forwards (chunks of ``chunk`` rows)."""
    preds, caches = [], {s: [] for s in readout_sites}
    for a in range(0, len(base), chunk):
        rows = slice(a, a + chunk)
        b, src, pos, own = base[rows], source[rows], position[rows], owner[rows]
        sites = sorted({aligned[v].site for v in set(own)})
        with torch.no_grad():
            src_acts = model.run(torch.as_tensor(src), cache=sites).cache
            interventions = {site: _grouped(aligned, own, pos, src_acts[site], site) for site in sites}
            res = model.run(torch.as_tensor(b), interventions=interventions, cache=list(readout_sites))
        preds.append(res.logits.argmax(-1).cpu().numpy())
        for s in readout_sites:
            caches[s].append(res.cache[s])
    return np.concatenate(preds), {s: torch.cat(v) for s, v in caches.items()}


def _grouped(aligned: dict, owner: np.ndarray, position: np.ndarray, source: torch.Tensor, site: str):
    """One site's intervention for rows of several variables: each group of rows patched by its
    own variable's aligned location (basis or featurizer), the other rows left alone."""
    groups = []
    for v in dict.fromkeys(owner):
        if aligned[v].site != site:
            continue
        idx = np.flatnonzero(owner == v)
        groups.append((torch.as_tensor(idx), aligned[v].intervention(source[idx], position[idx])))

    def fn(x, pos):
        out = x.clone()
        for idx, f in groups:
            out[idx] = f(x[idx], pos)
        return out

    return fn


# -- Circuit -----------------------------------------------------------------------------------
@dataclass
class Circuit:
    components: tuple[str, ...]
    edges: tuple[tuple[str, str], ...] = ()
    ablation: str | None = None
    scores: dict[str, float] = field(default_factory=dict)  # per-component evidence (mask value, KL change)
    method: str = ""
    meta: dict = field(default_factory=dict)

    kind = "circuit"

    def __post_init__(self):
        comps = tuple(self.components)
        if any(not isinstance(c, str) for c in comps):
            raise FindingError(f"components must be names (strings), got {comps}")
        if len(set(comps)) != len(comps):
            raise FindingError(f"components repeat: {comps}")
        self.components = comps
        edges = []
        for e in self.edges:
            if len(e) != 2 or not all(isinstance(x, str) for x in e):
                raise FindingError(f"an edge is a pair of component names, got {e!r}")
            edges.append((e[0], e[1]))
        self.edges = tuple(edges)
        if self.ablation is not None:
            check_ablation(self.ablation)
        self.scores = {str(k): float(v) for k, v in self.scores.items()}
        if not all(math.isfinite(v) for v in self.scores.values()):
            raise FindingError("circuit scores must be finite")

    def validate(self, model) -> "Circuit":
        sites = _scorable_names(model)
        unknown = [c for c in self.components if c not in sites]
        if unknown:
            raise FindingError(f"Circuit names unknown components {unknown}; the model's sites and components: {', '.join(sites)}")
        return self

    def to_json(self) -> dict:
        return {"type": "Circuit", "method": self.method, "ablation": self.ablation, "components": list(self.components),
                "edges": [list(e) for e in self.edges], "scores": dict(self.scores), "meta": _jsonable(self.meta)}

    @classmethod
    def from_json(cls, d: dict) -> "Circuit":
        return cls(tuple(d["components"]), tuple(tuple(e) for e in d.get("edges", ())), d.get("ablation"), d.get("scores", {}), d.get("method", ""), d.get("meta", {}))


Finding = Union[SiteScores, Alignment, Circuit]
FINDING_TYPES = (SiteScores, Alignment, Circuit)


def from_json(d: dict) -> Finding:
    """Any finding from its ``to_json()``."""
    types = {"SiteScores": SiteScores, "Alignment": Alignment, "Circuit": Circuit}
    if d.get("type") not in types:
        raise FindingError(f"unknown finding type {d.get('type')!r}; valid: {', '.join(types)}")
    return types[d["type"]].from_json(d)


def _jsonable(x: Any):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x
