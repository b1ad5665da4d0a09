"""The ``ssm`` family: stacked selective diagonal state-space blocks in the Mamba style, plain torch.

Parametrisation (one :class:`SSMConfig`; all linear maps carry a bias, float32 throughout)::

    x_0     = tok_embed[token_t] (+ pos_embed[t] when config.pos_embed)   residual stream, d_model
    block l (l = 0 .. n_layers-1), reading the stream x = L{l}.resid:
      u_t     = W_in x_t + b_in                                           d_inner channels
      c_t     = act( sum_{i<d_conv} conv_w[:, i] * u_{t-i} + conv_b )      causal depthwise conv
                (conv_w[:, i] is the weight of lag i; u before t=0 is 0)  -> site L{l}.conv
      delta_t = softplus(W_delta c_t + b_delta)                          per channel, d_inner
      a_t     = exp(-delta_t[:, None] * exp(A_log))                      per (channel, state n)
      B_t     = W_B c_t + b_B,   C_t = W_C c_t + b_C                      N = d_state, shared
      h_t     = a_t * h_{t-1} + (delta_t * c_t)[:, None] * B_t[None, :]  h_{-1} = 0
                                                                          -> site L{l}.state
                (tapped inside the time loop: a patched h_t flows into h_{t+1})
      y_t     = h_t @ C_t + D * c_t
      mixer_t = W_out (y_t * gate(W_z x_t + b_z)) + b_out                  -> site L{l}.mixer
      x      <- x + mixer
      if d_mlp: hidden = relu(W_1 x + b_1) -> L{l}.mlp.hidden; mlp = W_2 hidden + b_2 -> L{l}.mlp
                x <- x + mlp
    logits  = W_U x_{n_layers} + b_U,  x_{n_layers} = L{n_layers}.resid

``act`` and ``gate`` are config choices: ``"silu"`` (Mamba, the default for trained models),
``"relu"`` (compiled models: positively homogeneous, so the reparametrisation may scale
channels) or ``"identity"``. The ReLU MLP sublayer after the mixer (as in Mamba-hybrid models)
is optional (``d_mlp = 0`` leaves it out); compiled models use it for ``Map`` and ``Sum``.
Mamba has no positional embedding; ``pos_embed=True`` adds a learned table, used by compiled
models whose program reads ``Indices``. There is no normalisation layer.

Two equal paths: ``run`` (and ``_forward`` with a tap) runs the recurrence as a Python loop over
time steps, tapping ``L{l}.state`` at every step; a layer whose state is not intervened on
(caching it is fine: the states are tapped whole), and ``forward`` (the fast path used for training), compute all states without
taps (``_scan_states``: the same products and sums, no division by a cumulative product and no
logarithm, so decays of exactly 0 or 1 stay exact) and every other op over the whole sequence. ``tests/test_family_ssm.py`` holds the two paths equal.

Dense random init: :func:`from_config` / :func:`init_weights` (seeded). :func:`reparametrize`
returns a function-equivalent copy: a random orthogonal rotation of the residual stream (every
read and write of it), a random permutation of the d_inner channels of each block (with their
conv, delta, A, D, gate and output weights; B/C read the channels so their columns move too),
positive scaling of channels (when ``act`` and ``gate`` are relu/identity) and a permutation and
positive scaling of MLP hidden units; the ground truth is moved along.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..bases import orthonormal_rows, random_orthogonal
from ..components import moved as moved_partition
from ..ground_truth import Location, Readout
from ..model import Start, ZooModel
from ..sites import NULL_TAP, Site, Tap

ACTIVATIONS = ("silu", "relu", "identity")


@dataclass
class SSMConfig:
    vocab_size: int
    n_classes: int
    max_len: int
    d_model: int = 64
    n_layers: int = 2
    d_inner: int = 128
    d_state: int = 16
    d_conv: int = 4
    d_mlp: int = 0
    pos_embed: bool = False
    act: str = "silu"
    gate: str = "silu"

    def __post_init__(self):
        for k in ("act", "gate"):
            if getattr(self, k) not in ACTIVATIONS:
                raise ValueError(f"SSMConfig.{k} = {getattr(self, k)!r} must be one of {ACTIVATIONS}")
        for k in ("vocab_size", "n_classes", "max_len", "d_model", "d_inner", "d_state", "d_conv"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"SSMConfig.{k} must be >= 1, got {getattr(self, k)}")
        if self.n_layers < 0 or self.d_mlp < 0:
            raise ValueError("SSMConfig.n_layers and d_mlp must be >= 0")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "SSMConfig":
        return cls(**d)


def _act(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "relu":
        return torch.relu(x)
    if name == "silu":
        return F.silu(x)
    return x


class SSMBlock(nn.Module):
    def __init__(self, cfg: SSMConfig):
        super().__init__()
        D, E, N, K = cfg.d_model, cfg.d_inner, cfg.d_state, cfg.d_conv
        self.in_proj = nn.Linear(D, E)
        self.conv_w = nn.Parameter(torch.zeros(E, K))  # conv_w[:, i] multiplies u_{t-i}
        self.conv_b = nn.Parameter(torch.zeros(E))
        self.delta_proj = nn.Linear(E, E)
        self.B_proj = nn.Linear(E, N)
        self.C_proj = nn.Linear(E, N)
        self.A_log = nn.Parameter(torch.zeros(E, N))
        self.D = nn.Parameter(torch.zeros(E))
        self.z_proj = nn.Linear(D, E)
        self.out_proj = nn.Linear(E, D)
        if cfg.d_mlp:
            self.fc1 = nn.Linear(D, cfg.d_mlp)
            self.fc2 = nn.Linear(cfg.d_mlp, D)


class SSM(ZooModel):
    family = "ssm"
    resumes_positions = True
    config_class = SSMConfig

    def __init__(self, config: SSMConfig):
        super().__init__()
        self.config = config
        self.vocab_size, self.max_len, self.n_classes = config.vocab_size, config.max_len, config.n_classes
        self.tok_embed = nn.Parameter(torch.zeros(config.vocab_size, config.d_model))
        if config.pos_embed:
            self.pos_embed = nn.Parameter(torch.zeros(config.max_len, config.d_model))
        self.blocks = nn.ModuleList(SSMBlock(config) for _ in range(config.n_layers))
        self.unembed = nn.Linear(config.d_model, config.n_classes)

    # -- sites -------------------------------------------------------------------------------
    def site_list(self) -> list[Site]:
        c = self.config
        sites = []
        for l in range(c.n_layers):
            sites += [
                Site(f"L{l}.resid", l, "resid", c.d_model),
                Site(f"L{l}.conv", l, "conv", c.d_inner),
                Site(f"L{l}.state", l, "state", c.d_inner * c.d_state, recurrent=True),
                Site(f"L{l}.mixer", l, "mixer", c.d_model),
            ]
            if c.d_mlp:
                sites += [Site(f"L{l}.mlp.hidden", l, "mlp_hidden", c.d_mlp), Site(f"L{l}.mlp", l, "mlp", c.d_model)]
        sites.append(Site(f"L{c.n_layers}.resid", c.n_layers, "resid", c.d_model))
        return sites

    # -- forward -----------------------------------------------------------------------------
    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tok_embed[tokens]
        if self.config.pos_embed:
            x = x + self.pos_embed[: tokens.shape[1]][None]
        return x

    def _conv(self, blk: SSMBlock, u: torch.Tensor) -> torch.Tensor:
        T = u.shape[1]
        out = u * blk.conv_w[:, 0] + blk.conv_b
        for i in range(1, min(self.config.d_conv, T)):
            out = out + F.pad(u[:, :-i], (0, 0, i, 0)) * blk.conv_w[:, i]
        return _act(self.config.act, out)

    def _scan_loop(self, l: int, delta, c, Bm, Cm, A, tap: Tap, h0=None, t0: int = 0) -> torch.Tensor:
        Bsz, T, E = c.shape
        N = A.shape[1]
        h = c.new_zeros(Bsz, E, N) if h0 is None else h0
        w = (delta * c)[..., None] * Bm[:, :, None, :]  # [B, T, E, N]
        a = torch.exp(-delta[..., None] * A)
        ys = []
        name = f"L{l}.state"
        for t, (a_t, w_t, c_t) in enumerate(zip(a.unbind(1), w.unbind(1), Cm.unbind(1))):
            h = a_t * h + w_t
            h = tap(name, h.reshape(Bsz, E * N), t=t0 + t).reshape(Bsz, E, N)
            ys.append((h * c_t[:, None, :]).sum(-1))
        return torch.stack(ys, dim=1)

    @staticmethod
    def _scan_states(delta, c, Bm, Cm, A, h0=None) -> torch.Tensor:
        """All states h_t ``[B, T, E, N]``, stepping h_t = a_t h_{t-1} + w_t without taps: the same
        operations in the same order as :meth:`_scan_loop`, so the two paths agree bit for bit.
        For the short sequences of the zoo (T <= 64) this beats a log-depth associative scan by
        ~2x on CPU, forward and backward (O(T) work on [B, E, N] slices instead of O(T log T) on
        padded [B, T, E, N] copies). Time slices come from ``unbind``, whose backward is one
        ``stack``; indexing ``a[:, t]`` would cost a zero-filled ``[B, T, E, N]`` gradient per step."""
        a = torch.exp(-delta[..., None] * A).unbind(1)  # T x [B, E, N]
        w = ((delta * c)[..., None] * Bm[:, :, None, :]).unbind(1)
        h = w[0] if h0 is None else a[0] * h0 + w[0]
        states = [h]
        for t in range(1, c.shape[1]):
            h = a[t] * h + w[t]
            states.append(h)
        return torch.stack(states, dim=1)

    def resume_sites(self) -> list[str]:
        return [f"L{l}.{kind}" for l in range(self.config.n_layers) for kind in ("resid", "state")] + [f"L{self.config.n_layers}.resid"]

    def _forward(self, tokens: torch.Tensor, tap: Tap, start: Start | None = None) -> torch.Tensor:
        """The tapped path. With ``start`` (layer l0, position j0), blocks below l0 and positions
        before j0 come from the clean run: the convolution reads the clean inputs before j0 and
        each state resumes from its clean value at j0-1."""
        cfg = self.config
        T = tokens.shape[1]
        l0, j0 = (0, 0) if start is None else (min(start.layer, cfg.n_layers), min(start.position, T))
        x = self._embed(tokens)[:, j0:] if start is None else start.act(f"L{l0}.resid")[:, j0:]
        for l in range(l0, cfg.n_layers):
            blk = self.blocks[l]
            x = tap(f"L{l}.resid", x, start=j0)
            u = blk.in_proj(x)
            lead = max(0, j0 - cfg.d_conv + 1)  # clean positions the convolution still reads
            if j0 > lead:
                u = torch.cat([blk.in_proj(start.act(f"L{l}.resid")[:, lead:j0]), u], dim=1)
            c = tap(f"L{l}.conv", self._conv(blk, u)[:, j0 - lead :], start=j0)
            delta = F.softplus(blk.delta_proj(c))
            Bm, Cm, A = blk.B_proj(c), blk.C_proj(c), torch.exp(blk.A_log)
            name = f"L{l}.state"
            h0 = None if j0 == 0 else start.act(name)[:, j0 - 1].reshape(-1, *A.shape)
            if tap.intervenes(name):  # a patched h_t must flow into h_{t+1}: step by step
                y = self._scan_loop(l, delta, c, Bm, Cm, A, tap, h0=h0, t0=j0)
            else:
                states = self._scan_states(delta, c, Bm, Cm, A, h0=h0)
                B_, T_, E_, N_ = states.shape
                states = tap(name, states.reshape(B_, T_, E_ * N_), start=j0).reshape(B_, T_, E_, N_)
                y = (states * Cm[:, :, None, :]).sum(-1)
            y = y + blk.D * c
            m = tap(f"L{l}.mixer", blk.out_proj(y * _act(cfg.gate, blk.z_proj(x))), start=j0)
            x = x + m
            if cfg.d_mlp:
                hid = tap(f"L{l}.mlp.hidden", torch.relu(blk.fc1(x)), start=j0)
                x = x + tap(f"L{l}.mlp", blk.fc2(hid), start=j0)
        x = tap(f"L{cfg.n_layers}.resid", x, start=j0)
        logits = self.unembed(x)
        if j0 > 0:
            logits = torch.cat([start.logits[:, :j0], logits], dim=1)
        return logits

    def forward_loop(self, tokens: torch.Tensor) -> torch.Tensor:
        """The reference path: the time loop in every layer (as when every state is tapped)."""
        tokens = self.check_tokens(tokens)
        identity = {f"L{l}.state": (lambda x, pos: x) for l in range(self.config.n_layers)}
        tap = Tap(self.site_list(), interventions=identity)
        return self._forward(tokens, tap)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, T, n_classes]`` by the vectorised scan (no taps)."""
        return self._forward(self.check_tokens(tokens), NULL_TAP)


SLOWEST_TIMESCALE = 1e-4  # the smallest per-channel factor on A at init


def init_weights(model: SSM, seed: int) -> SSM:
    """Dense random init (seeded), Mamba-like: dt bias so that softplus gives steps in
    [1e-3, 1e-1], A = -s (1..N) with a per-channel s log-uniform in [1e-4, 1], D = 1, small
    Gaussian projections."""
    cfg = model.config
    g = torch.Generator().manual_seed(int(seed))

    def normal(shape, std):
        return torch.randn(*shape, generator=g) * std

    with torch.no_grad():
        model.tok_embed.copy_(normal(model.tok_embed.shape, 1.0))
        if cfg.pos_embed:
            model.pos_embed.copy_(normal(model.pos_embed.shape, 0.1))
        for blk in model.blocks:
            for lin in (blk.in_proj, blk.delta_proj, blk.B_proj, blk.C_proj, blk.z_proj, blk.out_proj) + ((blk.fc1, blk.fc2) if cfg.d_mlp else ()):
                lin.weight.copy_(normal(lin.weight.shape, 1.0 / math.sqrt(lin.in_features)))
                lin.bias.zero_()
            blk.conv_w.copy_(normal(blk.conv_w.shape, 1.0 / math.sqrt(cfg.d_conv)))
            blk.conv_b.zero_()
            blk.delta_proj.weight.mul_(0.1)
            dt = torch.exp(torch.rand(cfg.d_inner, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            blk.delta_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
            # S4D-real's A = -(1..N), times a per-channel timescale log-uniform in [1e-4, 1]: some
            # channels start as near-perfect accumulators (a count or a sum over the whole sequence
            # needs decay ~1, which Adam would otherwise reach only after thousands of steps)
            scale = torch.rand(cfg.d_inner, 1, generator=g) * math.log(SLOWEST_TIMESCALE)
            blk.A_log.copy_(torch.log(torch.arange(1, cfg.d_state + 1, dtype=torch.float32))[None, :] + scale)
            blk.D.fill_(1.0)
        model.unembed.weight.copy_(normal(model.unembed.weight.shape, 1.0 / math.sqrt(cfg.d_model)))
        model.unembed.bias.zero_()
    return model


def from_config(config: SSMConfig | dict, seed: int = 0) -> SSM:
    config = SSMConfig(**config) if isinstance(config, dict) else config
    return init_weights(SSM(config), seed)


# -- reparametrisation ---------------------------------------------------------------------------
STREAM_SITE_KINDS = ("resid", "mixer", "mlp")


def reparametrize(model: SSM, seed: int = 0) -> SSM:
    """A function-equivalent copy with rotated/permuted/scaled hidden bases, ground truth moved along.

    - residual stream: x -> R x for a random orthogonal R (embeddings, every reader W -> W R^T,
      every writer W -> R W, b -> R b); ground-truth bases at resid/mixer/mlp sites -> basis R^T;
    - each block's d_inner channels: a random permutation P (in_proj rows, conv, delta_proj rows
      and columns, A_log, D, z_proj rows, out_proj columns, B/C_proj columns), and, when ``act``
      and ``gate`` are positively homogeneous (relu/identity), positive scales s of the channels
      (in_proj row and conv bias * s, reads of c / s; z_proj row * r, out_proj column / r);
      bases at conv and state sites move with P and s;
    - MLP hidden units: a random permutation and positive scales (fc1 row * s, fc2 column / s).
    """
    rng = np.random.default_rng(seed)
    new = copy.deepcopy(model)
    cfg = new.config
    R = torch.as_tensor(random_orthogonal(cfg.d_model, rng), dtype=torch.float32)
    homogeneous = cfg.act in ("relu", "identity") and cfg.gate in ("relu", "identity")
    site_maps = {}  # site -> function mapping a basis [k, width] (numpy) to the new coordinates
    unit_moves = {}  # site -> new index of each old unit (the partition's blocks move with them)
    Rn = R.double().numpy()

    def stream(b):
        return b @ Rn.T

    with torch.no_grad():
        new.tok_embed.copy_(new.tok_embed @ R.T)
        if cfg.pos_embed:
            new.pos_embed.copy_(new.pos_embed @ R.T)
        new.unembed.weight.copy_(new.unembed.weight @ R.T)
        for l, blk in enumerate(new.blocks):
            for site in (f"L{l}.resid", f"L{l}.mixer", f"L{l}.mlp"):
                site_maps[site] = stream
            blk.in_proj.weight.copy_(blk.in_proj.weight @ R.T)
            blk.z_proj.weight.copy_(blk.z_proj.weight @ R.T)
            blk.out_proj.weight.copy_(R @ blk.out_proj.weight)
            blk.out_proj.bias.copy_(R @ blk.out_proj.bias)
            # channels: permutation and scale
            E, N = cfg.d_inner, cfg.d_state
            perm = torch.as_tensor(rng.permutation(E))
            s = torch.as_tensor(np.exp(rng.uniform(-1, 1, E)) if homogeneous else np.ones(E), dtype=torch.float32)
            r = torch.as_tensor(np.exp(rng.uniform(-1, 1, E)) if homogeneous else np.ones(E), dtype=torch.float32)
            blk.in_proj.weight.copy_((blk.in_proj.weight * s[:, None])[perm])
            blk.in_proj.bias.copy_((blk.in_proj.bias * s)[perm])
            blk.conv_w.copy_(blk.conv_w[perm])
            blk.conv_b.copy_((blk.conv_b * s)[perm])
            blk.delta_proj.weight.copy_((blk.delta_proj.weight / s[None, :])[perm][:, perm])
            blk.delta_proj.bias.copy_(blk.delta_proj.bias[perm])
            for lin in (blk.B_proj, blk.C_proj):
                lin.weight.copy_((lin.weight / s[None, :])[:, perm])
            blk.A_log.copy_(blk.A_log[perm])
            blk.D.copy_(blk.D[perm])
            blk.z_proj.weight.copy_((blk.z_proj.weight * r[:, None])[perm])
            blk.z_proj.bias.copy_((blk.z_proj.bias * r)[perm])
            blk.out_proj.weight.copy_((blk.out_proj.weight / (s * r)[None, :])[:, perm])
            pn, sn = perm.numpy(), s.double().numpy()
            unit_moves[f"L{l}.conv"] = np.argsort(pn)
            unit_moves[f"L{l}.state"] = (np.argsort(pn)[:, None] * N + np.arange(N)[None, :]).reshape(-1)
            site_maps[f"L{l}.conv"] = lambda b, pn=pn, sn=sn: orthonormal_rows((b * sn[None, :])[:, pn])
            site_maps[f"L{l}.state"] = lambda b, pn=pn, sn=sn, N=N: orthonormal_rows(
                (b.reshape(b.shape[0], -1, N) * sn[None, :, None])[:, pn].reshape(b.shape[0], -1))
            if cfg.d_mlp:
                hp = torch.as_tensor(rng.permutation(cfg.d_mlp))
                hs = torch.as_tensor(np.exp(rng.uniform(-1, 1, cfg.d_mlp)), dtype=torch.float32)
                blk.fc1.weight.copy_(((blk.fc1.weight @ R.T) * hs[:, None])[hp])
                blk.fc1.bias.copy_((blk.fc1.bias * hs)[hp])
                blk.fc2.weight.copy_((R @ blk.fc2.weight / hs[None, :])[:, hp])
                blk.fc2.bias.copy_(R @ blk.fc2.bias)
                hpn, hsn = hp.numpy(), hs.double().numpy()
                unit_moves[f"L{l}.mlp.hidden"] = np.argsort(hpn)
                site_maps[f"L{l}.mlp.hidden"] = lambda b, hpn=hpn, hsn=hsn: orthonormal_rows((b * hsn[None, :])[:, hpn])
        site_maps[f"L{cfg.n_layers}.resid"] = stream
    new.partition, renamed = moved_partition(model.partition, unit_moves)
    gt = model.ground_truth
    if gt is not None:
        def move(loc: Location) -> Location:
            if loc.site not in site_maps:
                raise ValueError(f"reparametrize: no basis map for site {loc.site!r}")
            return Location(loc.site, site_maps[loc.site](np.asarray(loc.basis, dtype=np.float64)), loc.lag)

        readouts = {k: Readout(r.site, site_maps[r.site](r.weight), r.bias, r.values) for k, r in gt.readouts.items()}  # stream sites: a rotation
        new.ground_truth = replace(gt, variables={name: move(loc) for name, loc in gt.variables.items()}, readouts=readouts,
                                   stages={name: move(loc) for name, loc in gt.stages.items()}).renamed(components=renamed)
    new.meta = dict(model.meta, reparametrized=int(seed))
    return new
