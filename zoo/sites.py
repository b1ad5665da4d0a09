"""Sites: the named activations every model exposes, and the tap that records and patches them.

A model calls its tap on every intervenable activation, ``x = tap("L0.resid", x)`` on a whole
``[B, T, W]`` tensor, or ``h = tap("L0.hidden", h, t=t)`` on a ``[B, W]`` recurrent state *inside*
the time loop, so that a patched state at time t flows into t+1.

An intervention is a function ``fn(x, positions) -> x'`` where ``x`` is ``[B, P, W]`` and
``positions`` the ``P`` absolute time indices it covers (all ``T`` of them for a whole tensor,
one for a recurrent step). Written this way, one intervention works unchanged on every family.
:func:`patch` builds the usual ones; gradients for attribution come from an additive
intervention (:func:`add`) whose ``delta`` requires grad.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, NamedTuple

import torch

Intervention = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

SITE_KINDS = ("embed", "resid", "head", "attn", "mlp_hidden", "mlp", "hidden", "state", "conv", "mixer")


@dataclass(frozen=True)
class Site:
    """An intervenable activation: stable name, layer, kind (one of SITE_KINDS), width."""

    name: str
    layer: int
    kind: str
    width: int
    recurrent: bool = False  # tapped once per time step inside the time loop

    def __post_init__(self):
        if self.kind not in SITE_KINDS:
            raise ValueError(f"site kind {self.kind!r} must be one of {SITE_KINDS}")


class RunResult(NamedTuple):
    logits: torch.Tensor  # [B, T, n_classes]
    cache: dict  # site name -> [B, T, width]


class Tap:
    """Records the requested sites and applies interventions; one Tap serves one forward pass."""

    def __init__(self, sites: Iterable[Site], cache: Iterable[str] = (), interventions: Mapping[str, Intervention] | None = None):
        known = {s.name: s for s in sites}
        cache = tuple(cache)
        interventions = dict(interventions or {})
        for name in list(cache) + list(interventions):
            if name not in known:
                raise KeyError(f"unknown site {name!r}; this model's sites: {', '.join(known)}")
        self.wanted = set(cache)
        self.interventions = interventions
        self.active = bool(self.wanted or self.interventions)
        self.records: dict[str, list[torch.Tensor]] = {}

    def intervenes(self, name: str) -> bool:
        """Whether this run changes site ``name``: a recurrent state must then go step by step;
        a state that is only cached may come from a vectorised scan, tapped as a whole."""
        return name in self.interventions

    def __call__(self, name: str, x: torch.Tensor, t: int | None = None, start: int = 0) -> torch.Tensor:
        """Tap ``x``: a whole slab ``[B, P, W]`` covering positions ``start..start+P-1``, or the
        recurrent state ``[B, W]`` at time ``t``."""
        if not self.active:
            return x
        fn = self.interventions.get(name)
        if fn is not None:
            if t is None:
                x = fn(x, torch.arange(start, start + x.shape[1], device=x.device))
            else:
                x = fn(x[:, None, :], torch.tensor([t], device=x.device))[:, 0, :]
        if name in self.wanted:
            self.records.setdefault(name, []).append(x if t is None else x[:, None, :])
        return x

    def collect(self) -> dict[str, torch.Tensor]:
        """Recorded activations as ``[B, T, W]`` tensors (after any intervention on the same site)."""
        return {name: parts[0] if len(parts) == 1 else torch.cat(parts, dim=1) for name, parts in self.records.items()}


NULL_TAP = Tap(())


def _position_mask(positions_arg, positions: torch.Tensor, batch: int) -> torch.Tensor:
    """``[B, P]`` boolean: which (example, position) pairs of the slab an intervention touches."""
    if positions_arg is None:
        return torch.ones(batch, positions.numel(), dtype=torch.bool, device=positions.device)
    target = torch.as_tensor(positions_arg, device=positions.device).reshape(-1)
    if target.numel() == 1:
        return (positions[None, :] == target).expand(batch, -1)
    if target.numel() != batch:
        raise ValueError(f"positions must be one int or one per example ({batch}), got {target.numel()}")
    return positions[None, :] == target[:, None]


def patch(source: torch.Tensor, positions=None, basis: torch.Tensor | None = None, units=None) -> Intervention:
    """Replace activations with ``source`` at ``positions``, within the row space of ``basis``.

    ``source`` is ``[B, T, W]`` (a cached run), or broadcastable to it (``[W]`` for a mean or a
    zero ablation). ``positions``: None (every position), an int, or one int per example.
    ``basis``: None (the whole site) or ``[k, W]`` with orthonormal rows; then only the
    component of ``x`` in that subspace is replaced: ``x + (source - x) @ basis.T @ basis``.
    ``units``: the coordinates of a component (:class:`zoo.components.Component`), the same as
    an axis-aligned basis on them, without the matrix products.
    """
    unit_mask = None
    if units is not None:
        unit_mask = torch.zeros(source.shape[-1], dtype=torch.bool, device=source.device)
        unit_mask[torch.as_tensor(list(units), dtype=torch.long, device=source.device)] = True

    def fn(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        src = source
        if src.dim() == 3:
            src = src[:, pos, :]
        src = src.to(x.dtype).expand_as(x)
        delta = src - x
        if basis is not None:
            b = basis.to(x.dtype)
            delta = (delta @ b.T) @ b
        if unit_mask is not None:
            delta = delta * unit_mask.to(x.device, x.dtype)
        mask = _position_mask(positions, pos, x.shape[0])
        return x + delta * mask[..., None].to(x.dtype)

    return fn


def add(delta: torch.Tensor) -> Intervention:
    """Add ``delta`` ``[B, T, W]``; with ``delta`` a zero tensor that requires grad, the gradient
    of any output with respect to ``delta`` is its gradient with respect to the site."""

    def fn(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return x + delta[:, pos, :].to(x.dtype)

    return fn
