"""The ``rnn`` family: an embedding, a multi-layer Elman RNN with ReLU, and a linear readout.

Parametrisation (exactly ``torch.nn.RNN(nonlinearity="relu", batch_first=True)``)::

    x^0_t = embed.weight[token_t]                                   (site ``embed``)
    h^k_t = relu(W_ih^k x^k_t + b_ih^k + W_hh^k h^k_{t-1} + b_hh^k),  h^k_{-1} = 0
    x^{k+1}_t = h^k_t                                               (site ``L{k}.hidden``)
    logits_t = readout.weight h^{K-1}_t + readout.bias

with parameters named and shaped as torch.nn.RNN's (``weight_ih_l{k}`` ``[H, in_k]``,
``weight_hh_l{k}`` ``[H, H]``, ``bias_ih_l{k}``, ``bias_hh_l{k}``; every layer has the same
hidden size H; ``in_0`` is the embedding width). :meth:`RNN.to_torch_rnn` returns a
``torch.nn.RNN`` carrying the same weights.

Sites: ``embed`` (kind "embed", ``[B, T, E]``) and ``L{k}.hidden`` (kind "hidden",
``recurrent=True``, ``[B, T, H]``). The tapped path (:meth:`RNN._forward`) runs its own time loop
in every layer whose state is intervened on and calls ``tap(f"L{k}.hidden", h, t=t)`` on every
step *inside* the loop, so a patched state at time t is what the recurrence reads at t+1 (and
what layer k+1 reads at t); a layer that is only cached runs the fused kernel and is tapped whole
(``forward_loop`` forces the loop everywhere). The fast path
(:meth:`RNN.forward`) runs torch's fused ReLU-RNN kernel; a hypothesis test in
``tests/test_family_rnn.py`` holds the two equal. The family has no residual stream, so a
ground truth has no edges: components are ``embed`` and the layers.

:func:`from_config` (or :func:`init_weights`) gives the dense random init used for training;
:func:`reparametrize` returns a function-equivalent copy with every layer's hidden units
permuted and positively scaled and the embedding space rotated by a random orthogonal matrix,
the ground-truth bases moved along (see its docstring for why the moved bases stay exact).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn

from ..bases import orthonormal_rows
from ..components import moved as moved_partition
from ..ground_truth import Location, Readout
from ..model import Start, ZooModel
from ..sites import NULL_TAP, Site, Tap


@dataclass
class RNNConfig:
    """JSON-serialisable configuration of an :class:`RNN`."""

    vocab_size: int
    n_classes: int
    max_len: int
    hidden_size: int = 64
    num_layers: int = 2
    embed_dim: int | None = None  # width of the embedding; None: hidden_size

    @property
    def input_size(self) -> int:
        return self.embed_dim if self.embed_dim is not None else self.hidden_size

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "RNNConfig":
        return cls(**d)


class RNN(ZooModel):
    """Embedding -> multi-layer Elman RNN (ReLU) -> linear readout; see the module docstring."""

    family = "rnn"
    resumes_positions = True
    config_class = RNNConfig

    def __init__(self, config: RNNConfig):
        super().__init__()
        if config.num_layers < 1 or config.hidden_size < 1:
            raise ValueError(f"an RNN needs num_layers >= 1 and hidden_size >= 1, got {config.num_layers}, {config.hidden_size}")
        self.config = config
        self.vocab_size = int(config.vocab_size)
        self.max_len = int(config.max_len)
        self.n_classes = int(config.n_classes)
        H, E = config.hidden_size, config.input_size
        self.embed = nn.Embedding(config.vocab_size, E)
        for k in range(config.num_layers):
            width_in = E if k == 0 else H
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.zeros(H, width_in)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.zeros(H, H)))
            self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.zeros(H)))
            self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.zeros(H)))
        self.readout = nn.Linear(H, config.n_classes)

    # -- structure -----------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def layer_params(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return (getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}"), getattr(self, f"bias_ih_l{k}"), getattr(self, f"bias_hh_l{k}"))

    def site_list(self) -> list[Site]:
        sites = [Site("embed", 0, "embed", self.config.input_size)]
        sites += [Site(f"L{k}.hidden", k, "hidden", self.hidden_size, recurrent=True) for k in range(self.num_layers)]
        return sites

    # -- forward passes ------------------------------------------------------------------------
    def resume_sites(self) -> list[str]:
        return [f"L{k}.hidden" for k in range(self.num_layers)]

    def _forward(self, tokens: torch.Tensor, tap: Tap, start: Start | None = None) -> torch.Tensor:
        """The tapped path. With ``start`` (layer k0, position j0), layers below k0 and time steps
        before j0 come from the clean run: layer k0 reads the clean layer k0-1 from j0 on, and
        every layer's state at j0-1 is the clean one."""
        B, T = tokens.shape
        k0, j0 = (0, 0) if start is None else (min(start.layer, self.num_layers), min(start.position, T))
        if k0 == 0:
            x = tap("embed", self.embed(tokens))[:, j0:]
        else:
            x = start.act(f"L{k0 - 1}.hidden")[:, j0:]
        for k in range(k0, self.num_layers):
            name = f"L{k}.hidden"
            h0 = x.new_zeros(B, self.hidden_size) if j0 == 0 else start.act(name)[:, j0 - 1]
            if x.shape[1] == 0:
                break
            if not tap.intervenes(name):  # only cached, or untouched: fused kernel, tapped whole
                x = tap(name, self._fused_layer(x, k, h0), start=j0)
                continue
            w_ih, w_hh, b_ih, b_hh = self.layer_params(k)
            pre = x @ w_ih.T + (b_ih + b_hh)  # [B, T, H]: the input part of every step at once
            w_hh_t = w_hh.T
            h, states = h0, []
            for t, pre_t in enumerate(pre.unbind(1)):  # unbind: one stack in backward, not a zeroed [B, T, H] per step
                h = torch.relu(torch.addmm(pre_t, h, w_hh_t))
                h = tap(name, h, t=j0 + t)
                states.append(h)
            x = torch.stack(states, dim=1)
        logits = self.readout(x if x.shape[1] else x.new_zeros(B, 0, self.hidden_size))
        if j0 > 0:
            logits = torch.cat([start.logits[:, :j0], logits], dim=1)
        return logits

    def _fused_layer(self, x: torch.Tensor, k: int, h0: torch.Tensor | None = None) -> torch.Tensor:
        """Layer k over the whole sequence by torch's fused ReLU-RNN kernel, from state ``h0``."""
        h0 = x.new_zeros(x.shape[0], self.hidden_size) if h0 is None else h0
        out, _ = torch._VF.rnn_relu(x, h0[None].contiguous(), list(self.layer_params(k)), True, 1, 0.0, self.training, False, True)
        return out

    def forward_loop(self, tokens: torch.Tensor) -> torch.Tensor:
        """The reference path: our own time loop in every layer (as when every state is patched)."""
        identity = {f"L{k}.hidden": (lambda x, pos: x) for k in range(self.num_layers)}
        return self.run(tokens, interventions=identity).logits

    def _flat_weights(self) -> list[torch.Tensor]:
        out = []
        for k in range(self.num_layers):
            out.extend(self.layer_params(k))
        return out

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """The fast path: torch's fused ReLU-RNN kernel (equal to the tapped path)."""
        tokens = self.check_tokens(tokens)
        if tokens.shape[1] == 0:  # the fused kernel refuses empty sequences
            return self._forward(tokens, NULL_TAP)
        x = self.embed(tokens)
        h0 = x.new_zeros(self.num_layers, tokens.shape[0], self.hidden_size)
        out, _ = torch._VF.rnn_relu(x, h0, self._flat_weights(), True, self.num_layers, 0.0, self.training, False, True)
        return self.readout(out)

    def to_torch_rnn(self) -> nn.RNN:
        """A ``torch.nn.RNN(nonlinearity="relu", batch_first=True)`` with this model's weights."""
        E = self.config.input_size
        rnn = nn.RNN(E, self.hidden_size, num_layers=self.num_layers, nonlinearity="relu", bias=True, batch_first=True)
        with torch.no_grad():
            for k in range(self.num_layers):
                for name, p in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), self.layer_params(k)):
                    getattr(rnn, f"{name}_l{k}").copy_(p)
        return rnn.to(self.readout.weight.dtype)


def init_weights(model: RNN, seed: int) -> RNN:
    """Dense random init (torch.nn.RNN's uniform(-1/sqrt(H), 1/sqrt(H)); normal embedding)."""
    g = torch.Generator().manual_seed(int(seed))
    bound = 1.0 / float(np.sqrt(model.hidden_size))
    with torch.no_grad():
        model.embed.weight.copy_(torch.randn(model.embed.weight.shape, generator=g))
        for k in range(model.num_layers):
            for p in model.layer_params(k):
                p.copy_(torch.rand(p.shape, generator=g) * 2 * bound - bound)
        model.readout.weight.copy_(torch.rand(model.readout.weight.shape, generator=g) * 2 * bound - bound)
        model.readout.bias.copy_(torch.rand(model.readout.bias.shape, generator=g) * 2 * bound - bound)
    return model


def from_config(config: RNNConfig | dict, seed: int = 0) -> RNN:
    """A randomly initialised RNN (for training) from a config or its JSON dict."""
    if isinstance(config, dict):
        config = RNNConfig.from_json(config)
    return init_weights(RNN(config), seed)


def reparametrize(model: RNN, seed: int = 0, scale_range: tuple[float, float] = (0.5, 2.0)) -> RNN:
    """A function-equivalent copy with hidden bases permuted/scaled and the embedding rotated.

    Layer k's state becomes ``h' = A_k h`` with ``A_k = D_k P_k`` (a random permutation, then a
    positive diagonal scaling, log-uniform in ``scale_range``); ReLU commutes with ``A_k``, so
    ``W_ih'^k = A_k W_ih^k A_{k-1}^{-1}``, ``W_hh'^k = A_k W_hh^k A_k^{-1}``, ``b' = A_k b`` and
    the readout ``W' = W A_{K-1}^{-1}`` give the same logits. The embedding space is rotated by
    a random orthogonal ``R`` (``A_{-1} = R``).

    Ground truth: a compiled variable's subspace is the span of the linear functionals that
    every downstream computation reads it through (a group-sum direction, a counter unit...).
    A functional ``w`` reading ``h`` reads ``h' = A h`` as ``A^{-T} w``, so each basis is mapped
    row-wise by ``A^{-T}`` and re-orthonormalised. Patching the new subspace then sets every
    reading functional to the source's value (they lie in it) and patching its complement
    leaves them alone (they are orthogonal to it), exactly as before: functionals of different
    variables sit on disjoint units and stay orthogonal under a diagonal scaling. (Mapping the
    bases by ``A`` instead would be wrong inside a unit group: the image of a group-sum
    direction under a non-uniform scaling is not the direction the next layer reads.)
    """
    rng = np.random.default_rng(int(seed))
    new = copy.deepcopy(model)
    H, E = model.hidden_size, model.config.input_size
    lo, hi = np.log(scale_range[0]), np.log(scale_range[1])
    q, r = np.linalg.qr(rng.standard_normal((E, E)))
    R = q * np.sign(np.diag(r))[None, :]  # a Haar-random orthogonal matrix
    A = [R]
    A_inv = [R.T]
    perms = []
    for _ in range(model.num_layers):
        perm = rng.permutation(H)
        perms.append(perm)
        P = np.eye(H)[perm]
        d = np.exp(rng.uniform(lo, hi, size=H))
        A.append(d[:, None] * P)
        A_inv.append(P.T / d[None, :])
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    with torch.no_grad():
        emb = model.embed.weight.double()
        new.embed.weight.copy_((emb @ t(R).T).float())
        for k in range(model.num_layers):
            w_ih, w_hh, b_ih, b_hh = (p.double() for p in model.layer_params(k))
            n_ih, n_hh, n_bih, n_bhh = new.layer_params(k)
            Ak, Ak_inv, Aprev_inv = t(A[k + 1]), t(A_inv[k + 1]), t(A_inv[k])
            n_ih.copy_((Ak @ w_ih @ Aprev_inv).float())
            n_hh.copy_((Ak @ w_hh @ Ak_inv).float())
            n_bih.copy_((Ak @ b_ih).float())
            n_bhh.copy_((Ak @ b_hh).float())
        new.readout.weight.copy_((model.readout.weight.double() @ t(A_inv[-1])).float())
    new.partition, renamed = moved_partition(model.partition, {f"L{k}.hidden": np.argsort(perms[k]) for k in range(model.num_layers)})
    gt = model.ground_truth
    if gt is not None:
        def move(loc: Location) -> Location:
            k = -1 if loc.site == "embed" else int(loc.site.split(".")[0][1:])
            basis = loc.basis @ A_inv[k + 1]  # rows w -> A^{-T} w
            return Location(loc.site, orthonormal_rows(basis), loc.lag)

        readouts = {}
        for name, r in gt.readouts.items():  # functionals, mapped as the readout's weight
            k = -1 if r.site == "embed" else int(r.site.split(".")[0][1:])
            readouts[name] = Readout(r.site, r.weight @ A_inv[k + 1], r.bias, r.values)
        new.ground_truth = replace(gt, variables={name: move(loc) for name, loc in gt.variables.items()}, readouts=readouts,
                                   stages={name: move(loc) for name, loc in gt.stages.items()}).renamed(components=renamed)
    new.meta = dict(model.meta, reparametrized=int(seed))
    return new
