"""The base class every family derives from: sites, ``run`` with cache and interventions.

A family implements ``_forward(tokens, tap)`` calling ``tap`` on every site (inside the time loop
for recurrent states) and ``site_list()``; ``forward(tokens)`` is the plain (fast) path and may be
overridden with a vectorised implementation, which a hypothesis test holds equal to ``run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import torch
from torch import nn

from .components import Component, component_list
from .ground_truth import GroundTruth
from .sites import NULL_TAP, Intervention, RunResult, Site, Tap


@dataclass
class Prefix:
    """A clean run kept so that patched runs can resume from it (see :meth:`ZooModel.run`)."""

    tokens: torch.Tensor  # [B, T]
    logits: torch.Tensor  # [B, T, C]
    acts: dict  # the family's resume sites -> [B, T, W]


@dataclass
class Start:
    """Resume a run from ``prefix``: rows ``rows`` of its batch (None: all), recomputing only
    layers >= ``layer`` at positions >= ``position`` and taking the rest from the clean run.

    Valid when every intervention of the run touches sites of layer >= ``layer`` at positions
    >= ``position`` only: then the result equals a full run (a hypothesis test holds the
    families to it). A family that does not resume simply runs in full.
    """

    prefix: Prefix
    layer: int = 0
    position: int = 0
    rows: torch.Tensor | None = None

    def act(self, name: str) -> torch.Tensor:
        a = self.prefix.acts[name]
        return a if self.rows is None else a[self.rows]

    @property
    def logits(self) -> torch.Tensor:
        lg = self.prefix.logits
        return lg if self.rows is None else lg[self.rows]


class ZooModel(nn.Module):
    family: str = "?"
    config_class: type  # the family's config dataclass; ``cls(config)`` builds a model
    vocab_size: int  # set by each family from its config
    max_len: int

    def __init__(self):
        super().__init__()
        self.ground_truth: GroundTruth | None = None
        self.meta: dict = {}  # task name, how it was made (compiled / trained), card
        self.partition: dict[str, list[list[int]]] = {}  # site -> unit blocks (zoo.components)

    # -- to implement ----------------------------------------------------------------------
    def site_list(self) -> list[Site]:
        raise NotImplementedError

    def _forward(self, tokens: torch.Tensor, tap: Tap, start: Start | None = None) -> torch.Tensor:
        raise NotImplementedError

    resumes_positions: bool = False  # whether a Start's position skips time steps (recurrent families)

    def resume_sites(self) -> list[str]:
        """The sites a :class:`Prefix` keeps so that runs can resume from it (none: no resuming)."""
        return []

    # -- shared ------------------------------------------------------------------------------
    @property
    def sites(self) -> tuple[Site, ...]:
        return tuple(self.site_list())

    def site(self, name: str) -> Site:
        for s in self.site_list():
            if s.name == name:
                return s
        raise KeyError(f"unknown site {name!r}; this model's sites: {', '.join(s.name for s in self.site_list())}")

    @property
    def components(self) -> tuple[Component, ...]:
        """The model's components (heads, unit blocks, channel groups): see :mod:`zoo.components`."""
        return tuple(component_list(self.site_list(), self.partition))

    def component(self, name: str) -> Component:
        for c in self.components:
            if c.name == name:
                return c
        raise KeyError(f"unknown component {name!r}; this model's components: {', '.join(c.name for c in self.components)}")

    def check_tokens(self, tokens) -> torch.Tensor:
        """``tokens`` as a LongTensor ``[B, T]``, or a ValueError naming the bad value and the limit."""
        tokens = torch.as_tensor(tokens)
        if tokens.dim() == 1:
            tokens = tokens[None, :]
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"tokens must be an integer tensor [B, T], got {tuple(tokens.shape)} {tokens.dtype}")
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds this model's max_len {self.max_len}; shorten the input or compile for a longer max_len")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            bad = tokens[(tokens < 0) | (tokens >= self.vocab_size)][0].item()
            raise ValueError(f"token id {bad} is outside this model's vocabulary (valid ids 0..{self.vocab_size - 1})")
        return tokens.long()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, T, n_classes]``."""
        return self._forward(self.check_tokens(tokens), NULL_TAP)

    def run(self, tokens: torch.Tensor, cache: Iterable[str] = (), interventions: Mapping[str, Intervention] | None = None, start: Start | None = None) -> RunResult:
        """Logits and the cached activations, with interventions applied inside the computation.

        ``start`` resumes from a clean :meth:`prefix` run instead of computing from scratch
        (see :class:`Start`); it cannot be combined with ``cache``.
        """
        tap = Tap(self.site_list(), cache, interventions)
        tokens = self.check_tokens(tokens)
        if start is not None:
            if tap.wanted:
                raise ValueError("run(start=...) recomputes part of the model only: it cannot also cache sites")
            if not self.resume_sites():
                start = None
        logits = self._forward(tokens, tap, start) if start is not None else self._forward(tokens, tap)
        return RunResult(logits, tap.collect())

    def prefix(self, tokens: torch.Tensor) -> Prefix:
        """A clean run of ``tokens`` keeping what :class:`Start` needs to resume from it."""
        tokens = self.check_tokens(tokens)
        with torch.no_grad():
            res = self.run(tokens, cache=self.resume_sites())
        return Prefix(tokens, res.logits, res.cache)

    def save(self, directory):
        """Write safetensors weights, a JSON config and the JSON ground truth (see zoo.store)."""
        from .store import save

        return save(self, directory)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def predict(self, tokens: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self(tokens).argmax(-1)
