"""The ``transformer`` family: a decoder-only transformer in plain torch, for compiled and trained models.

Parametrisation (one :class:`TransformerConfig`; float32 throughout; row vectors, ``x @ W``)::

    x_0   = embed[token_t] + pos_embed[t]                                  residual stream, d_model
    block l (l = 0 .. n_layers-1), reading x = L{l}.resid:
      h        = LN1_l(x)                       (identity unless config.layer_norm)
      q, k, v  = h @ W_Q[l, i], h @ W_K[l, i], h @ W_V[l, i]                per head i, d_head
      A        = softmax(attn_scale[l] * q k^T + causal mask)               j <= t only
      head_i   = (A v) @ W_O[l, i]                                          -> L{l}.attn.head{i}
      x       <- x + sum_i head_i                                           -> L{l}.resid_mid
      hidden   = relu(LN2_l(x) @ W_in[l] + b_in[l])                         -> L{l}.mlp.hidden
      mlp      = hidden @ W_out[l] + b_out[l]                               -> L{l}.mlp
      x       <- x + mlp                                                    -> L{l+1}.resid
    logits = LN_f(x) @ W_U + b_U,  x = L{n_layers}.resid

``attn_scale`` is a stored per-layer buffer (``1/sqrt(d_head)`` for trained models, ``1`` for
compiled ones, whose weights carry large scores themselves). Attention has no biases: a compiled
model reads a constant direction of the residual instead. LayerNorm (pre-LN, with a final LN) is
a config flag, off for compiled models.

Sites (deterministic names): ``L{l}.resid`` for l = 0..n_layers, ``L{l}.attn.head{i}`` (head i's
contribution to the residual, width d_model), ``L{l}.resid_mid``, ``L{l}.mlp.hidden`` (post-ReLU
units), ``L{l}.mlp`` (the MLP's contribution). Components are the heads and MLPs; edges run from
a writer (``"embed"``, a head, an MLP) to a reader (a head, an MLP, ``"logits"``) through the
residual stream.

Two equal paths: ``run``/``_forward`` taps every site (heads are split to be tapped one by one);
``forward`` (the fast path for training) merges the heads into one matmul and calls no taps.
``tests/test_family_transformer.py`` holds them equal on random and compiled models.

Dense random init: :func:`from_config` / :func:`init_weights` (seeded, GPT-2 style normal init).
:func:`reparametrize` returns a function-equivalent copy: a random orthogonal rotation of the
residual stream applied to every read (W_Q, W_K, W_V, W_in, W_U) and write (embed, pos_embed,
W_O, W_out, b_out), random orthogonal rotations inside each head's query/key and value/output
spaces, and a random permutation and positive scaling of each MLP's hidden units (W_in columns
and b_in scaled by s, W_out rows by 1/s). Ground-truth bases at residual-width sites are rotated
along; a basis at ``L{l}.mlp.hidden`` is permuted, scaled and re-orthonormalised (exact for
unit-aligned bases, which is all a compiled model uses there: its variables live in the residual
stream). Reparametrisation needs ``layer_norm=False`` (a rotation does not commute with LN's
mean subtraction).
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
from ..components import moved
from ..ground_truth import Location, Readout
from ..model import Start, ZooModel
from ..sites import Site, Tap


@dataclass
class TransformerConfig:
    vocab_size: int
    n_classes: int
    max_len: int
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_head: int = 16
    d_mlp: int = 128
    layer_norm: bool = False

    def __post_init__(self):
        for k in ("vocab_size", "n_classes", "max_len", "d_model", "n_heads", "d_head", "d_mlp"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"TransformerConfig.{k} must be >= 1, got {getattr(self, k)}")
        if int(self.n_layers) < 0:
            raise ValueError(f"TransformerConfig.n_layers must be >= 0, got {self.n_layers}")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "TransformerConfig":
        return cls(**d)


class Transformer(ZooModel):
    family = "transformer"
    config_class = TransformerConfig

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if isinstance(config, dict):
            config = TransformerConfig(**config)
        self.config = config
        c = config
        self.vocab_size, self.max_len, self.n_classes = c.vocab_size, c.max_len, c.n_classes
        nl, H, D, dh, M = c.n_layers, c.n_heads, c.d_model, c.d_head, c.d_mlp
        z = lambda *shape: nn.Parameter(torch.zeros(*shape))  # noqa: E731
        self.embed = z(c.vocab_size, D)
        self.pos_embed = z(c.max_len, D)
        self.W_Q, self.W_K, self.W_V = z(nl, H, D, dh), z(nl, H, D, dh), z(nl, H, D, dh)
        self.W_O = z(nl, H, dh, D)
        self.W_in, self.b_in = z(nl, D, M), z(nl, M)
        self.W_out, self.b_out = z(nl, M, D), z(nl, D)
        self.W_U, self.b_U = z(D, c.n_classes), z(c.n_classes)
        self.register_buffer("attn_scale", torch.full((nl,), 1.0 / math.sqrt(dh)))
        if c.layer_norm:
            self.ln1_w, self.ln1_b = nn.Parameter(torch.ones(nl, D)), z(nl, D)
            self.ln2_w, self.ln2_b = nn.Parameter(torch.ones(nl, D)), z(nl, D)
            self.lnf_w, self.lnf_b = nn.Parameter(torch.ones(D)), z(D)

    # -- sites -------------------------------------------------------------------------------
    def site_list(self) -> list[Site]:
        c = self.config
        sites = []
        for l in range(c.n_layers):
            sites.append(Site(f"L{l}.resid", l, "resid", c.d_model))
            sites += [Site(f"L{l}.attn.head{h}", l, "head", c.d_model) for h in range(c.n_heads)]
            sites.append(Site(f"L{l}.resid_mid", l, "resid", c.d_model))
            sites.append(Site(f"L{l}.mlp.hidden", l, "mlp_hidden", c.d_mlp))
            sites.append(Site(f"L{l}.mlp", l, "mlp", c.d_model))
        sites.append(Site(f"L{c.n_layers}.resid", c.n_layers, "resid", c.d_model))
        return sites

    # -- pieces ------------------------------------------------------------------------------
    def _ln(self, x: torch.Tensor, which: str, l: int | None = None) -> torch.Tensor:
        if not self.config.layer_norm:
            return x
        w, b = getattr(self, f"{which}_w"), getattr(self, f"{which}_b")
        if l is not None:
            w, b = w[l], b[l]
        return F.layer_norm(x, (x.shape[-1],), w, b)

    def _attention(self, x: torch.Tensor, l: int) -> torch.Tensor:
        """Per-head mixed values ``[B, H, T, d_head]`` (before W_O)."""
        h = self._ln(x, "ln1", l)
        q = torch.einsum("btd,hde->bhte", h, self.W_Q[l])
        k = torch.einsum("btd,hde->bhte", h, self.W_K[l])
        v = torch.einsum("btd,hde->bhte", h, self.W_V[l])
        T = x.shape[1]
        scores = torch.einsum("bhte,bhse->bhts", q, k) * self.attn_scale[l]
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        return torch.softmax(scores, dim=-1) @ v

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embed[tokens] + self.pos_embed[: tokens.shape[1]]

    def _unembed(self, x: torch.Tensor) -> torch.Tensor:
        return self._ln(x, "lnf") @ self.W_U + self.b_U

    # -- the tapped path ---------------------------------------------------------------------
    def resume_sites(self) -> list[str]:
        return [f"L{l}.resid" for l in range(self.config.n_layers + 1)]

    def _forward(self, tokens: torch.Tensor, tap: Tap, start: Start | None = None) -> torch.Tensor:
        """The tapped path; with ``start``, layers below ``start.layer`` come from the clean run
        (every position is recomputed from there: attention mixes them)."""
        first = 0 if start is None else min(start.layer, self.config.n_layers)
        x = self._embed(tokens) if start is None else start.act(f"L{first}.resid")
        for l in range(first, self.config.n_layers):
            x = tap(f"L{l}.resid", x)
            z = self._attention(x, l)
            heads = torch.einsum("bhte,hed->bhtd", z, self.W_O[l])
            for h in range(self.config.n_heads):
                x = x + tap(f"L{l}.attn.head{h}", heads[:, h])
            x = tap(f"L{l}.resid_mid", x)
            hidden = torch.relu(self._ln(x, "ln2", l) @ self.W_in[l] + self.b_in[l])
            hidden = tap(f"L{l}.mlp.hidden", hidden)
            x = x + tap(f"L{l}.mlp", hidden @ self.W_out[l] + self.b_out[l])
        x = tap(f"L{self.config.n_layers}.resid", x)
        return self._unembed(x)

    # -- the fast path -----------------------------------------------------------------------
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, T, n_classes]`` without taps; heads merged into one matmul."""
        tokens = self.check_tokens(tokens)
        c = self.config
        x = self._embed(tokens)
        B, T = tokens.shape
        for l in range(c.n_layers):
            z = self._attention(x, l).transpose(1, 2).reshape(B, T, c.n_heads * c.d_head)
            x = x + z @ self.W_O[l].reshape(c.n_heads * c.d_head, c.d_model)
            x = x + torch.relu(self._ln(x, "ln2", l) @ self.W_in[l] + self.b_in[l]) @ self.W_out[l] + self.b_out[l]
        return self._unembed(x)


# -- dense random init -------------------------------------------------------------------------
def init_weights(model: Transformer, seed: int) -> Transformer:
    """GPT-2 style init: normal(0, 0.02) reads and embeddings, output projections scaled by depth."""
    g = torch.Generator().manual_seed(int(seed))
    c = model.config
    out_std = 0.02 / math.sqrt(2 * max(c.n_layers, 1))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("ln") or name.startswith("b_"):
                continue
            std = out_std if name in ("W_O", "W_out") else 0.02
            p.copy_(torch.randn(p.shape, generator=g) * std)
        model.attn_scale.fill_(1.0 / math.sqrt(c.d_head))
    return model


def from_config(config: TransformerConfig | dict, seed: int = 0) -> Transformer:
    """A freshly initialised (dense, random, seeded) transformer."""
    config = TransformerConfig(**config) if isinstance(config, dict) else config
    return init_weights(Transformer(config), seed)


# -- reparametrisation ---------------------------------------------------------------------------
def reparametrize(model: Transformer, seed: int = 0) -> Transformer:
    """A function-equivalent copy with rotated residual/head bases and permuted, scaled MLP units.

    The residual stream is rotated by a random orthogonal ``R`` (``x' = x R``), each head's
    query/key space by ``U`` and value/output space by ``V`` (orthogonal), and each MLP's hidden
    units permuted and scaled by ``s`` in [0.5, 2]. ``model.ground_truth`` is moved along.
    """
    c = model.config
    if c.layer_norm:
        raise ValueError("reparametrize needs layer_norm=False: a rotation of the residual stream does not commute with LayerNorm")
    rng = np.random.default_rng(seed)
    D, H, dh, M, nl = c.d_model, c.n_heads, c.d_head, c.d_mlp, c.n_layers
    R = random_orthogonal(D, rng)
    sd = {k: v.detach().double().numpy().copy() for k, v in model.state_dict().items()}
    new = {}
    new["embed"] = sd["embed"] @ R
    new["pos_embed"] = sd["pos_embed"] @ R
    new["W_U"], new["b_U"] = R.T @ sd["W_U"], sd["b_U"]
    W_Q, W_K, W_V, W_O = (np.empty_like(sd[k]) for k in ("W_Q", "W_K", "W_V", "W_O"))
    W_in, b_in, W_out, b_out = (np.empty_like(sd[k]) for k in ("W_in", "b_in", "W_out", "b_out"))
    perms, scales = [], []
    head_sites = {}  # old head site -> new: heads are permuted within each layer
    for l in range(nl):
        hperm = rng.permutation(H)  # new head h is old head hperm[h]
        for h in range(H):
            old = int(hperm[h])
            head_sites[f"L{l}.attn.head{old}"] = f"L{l}.attn.head{h}"
            U, V = random_orthogonal(dh, rng), random_orthogonal(dh, rng)
            W_Q[l, h] = R.T @ sd["W_Q"][l, old] @ U
            W_K[l, h] = R.T @ sd["W_K"][l, old] @ U
            W_V[l, h] = R.T @ sd["W_V"][l, old] @ V
            W_O[l, h] = V.T @ sd["W_O"][l, old] @ R
        perm = rng.permutation(M)
        s = rng.uniform(0.5, 2.0, size=M)
        W_in[l] = (R.T @ sd["W_in"][l])[:, perm] * s[None, :]
        b_in[l] = sd["b_in"][l][perm] * s
        W_out[l] = (sd["W_out"][l][perm, :] / s[:, None]) @ R
        b_out[l] = sd["b_out"][l] @ R
        perms.append(perm)
        scales.append(s)
    new.update(W_Q=W_Q, W_K=W_K, W_V=W_V, W_O=W_O, W_in=W_in, b_in=b_in, W_out=W_out, b_out=b_out)
    new["attn_scale"] = sd["attn_scale"]
    out = Transformer(copy.deepcopy(c))
    out.load_state_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in new.items()})
    out.meta = dict(model.meta, reparametrized_seed=int(seed))
    out.partition, renamed = moved(model.partition, {f"L{l}.mlp.hidden": np.argsort(perms[l]) for l in range(nl)})
    gt = model.ground_truth
    if gt is not None:
        widths = {s.name: s for s in model.site_list()}

        def move(loc: Location) -> Location:
            site = widths[loc.site]
            if site.kind == "mlp_hidden":
                l = site.layer
                b = loc.basis[:, perms[l]] * scales[l][None, :]  # activation coordinates move as h'_i = s_i h_{perm(i)}
                return Location(loc.site, orthonormal_rows(b), loc.lag)
            return Location(loc.site, loc.basis @ R, loc.lag)

        readouts = {k: Readout(r.site, r.weight @ R, r.bias, r.values) for k, r in gt.readouts.items()}  # at stream sites
        out.ground_truth = replace(gt, variables={k: move(v) for k, v in gt.variables.items()}, readouts=readouts,
                                   stages={k: move(v) for k, v in gt.stages.items()}).renamed(head_sites, renamed)
    return out
