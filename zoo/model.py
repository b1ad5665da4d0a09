"""The base class every family derives from: sites, ``run`` with cache and interventions.

A family implements ``_forward(tokens, tap)`` calling ``tap`` on every site (inside the time loop
for recurrent states) and ``site_list()``; ``forward(tokens)`` is the plain (fast) path and may be
overridden with a vectorised implementation, which a hypothesis test holds equal to ``run``.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import nn

from .ground_truth import GroundTruth
from .sites import NULL_TAP, Intervention, RunResult, Site, Tap


class ZooModel(nn.Module):
    family: str = "?"
    config_class: type  # the family's config dataclass; ``cls(config)`` builds a model
    vocab_size: int  # set by each family from its config
    max_len: int

    def __init__(self):
        super().__init__()
        self.ground_truth: GroundTruth | None = None
        self.meta: dict = {}  # task name, how it was made (compiled / trained), card

    # -- to implement ----------------------------------------------------------------------
    def site_list(self) -> list[Site]:
        raise NotImplementedError

    def _forward(self, tokens: torch.Tensor, tap: Tap) -> torch.Tensor:
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------
    @property
    def sites(self) -> tuple[Site, ...]:
        return tuple(self.site_list())

    def site(self, name: str) -> Site:
        for s in self.site_list():
            if s.name == name:
                return s
        raise KeyError(f"unknown site {name!r}; this model's sites: {', '.join(s.name for s in self.site_list())}")

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

    def run(self, tokens: torch.Tensor, cache: Iterable[str] = (), interventions: Mapping[str, Intervention] | None = None) -> RunResult:
        """Logits and the cached activations, with interventions applied inside the computation."""
        tap = Tap(self.site_list(), cache, interventions)
        logits = self._forward(self.check_tokens(tokens), tap)
        return RunResult(logits, tap.collect())

    def save(self, directory):
        """Write safetensors weights, a JSON config and the JSON ground truth (see zoo.store)."""
        from .store import save

        return save(self, directory)

    def predict(self, tokens: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self(tokens).argmax(-1)
