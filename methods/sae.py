"""A sparse-dictionary method: a TopK SAE per site whose features are matched to program variables -> Alignment.

Per site, a TopK sparse autoencoder (``f = topk(relu((x - b_dec) W_enc + b_enc))``,
``x_hat = f W_dec + b_dec``, unit-norm decoder rows, ``m = expansion x width`` features) is
trained on the site's activations (positions 1..) with Adam on the reconstruction error. A
variable is matched to features by correlation: for a categorical variable, the feature most
correlated with each value's indicator (the match score is their mean correlation), together
with every feature correlated with some value at least ``share`` (0.5) as much as that value's
best one (a dictionary often splits a value over several features); for a numerical variable
the same with the value itself (absolute correlation). The variable's site is the earliest
whose match score is within ``tol`` of the best. The finding carries the dictionary as a
:class:`~methods.finding.Featurizer` (the intervention swaps the matched features and keeps the
base's reconstruction error) and, as the basis, the matched decoder rows orthonormalised.

``budget``: sampled inputs to train on (default 64); ``steps`` Adam steps (default 200).
"""

from __future__ import annotations

import numpy as np
import torch

from .finding import AlignedVariable, Alignment, Featurizer
from .patching import cache, site_names
from .progress import report
from .probes import orthonormal_rows


def train_topk_sae(X: torch.Tensor, m: int, k: int, steps: int, lr: float, seed: int) -> dict[str, torch.Tensor]:
    """A TopK SAE on rows ``X`` ``[N, W]``; returns its parameters (float32 tensors)."""
    g = torch.Generator().manual_seed(seed)
    W = X.shape[1]
    W_dec = torch.randn(m, W, generator=g)
    W_dec = W_dec / W_dec.norm(dim=1, keepdim=True)
    params = {"W_enc": W_dec.T.clone().requires_grad_(True), "b_enc": torch.zeros(m, requires_grad=True),
              "W_dec": W_dec.clone().requires_grad_(True), "b_dec": X.mean(0).clone().requires_grad_(True)}
    opt = torch.optim.Adam(params.values(), lr=lr)
    scale = X.var(0).sum().clamp_min(1e-12)
    for _ in range(steps):
        pre = torch.relu((X - params["b_dec"]) @ params["W_enc"] + params["b_enc"])
        top = pre.topk(k, dim=-1)
        f = torch.zeros_like(pre).scatter(-1, top.indices, top.values)
        loss = ((f @ params["W_dec"] + params["b_dec"] - X) ** 2).sum(-1).mean() / scale
        grads = torch.autograd.grad(loss, list(params.values()))
        for p, gr in zip(params.values(), grads):
            p.grad = gr
        opt.step()
        with torch.no_grad():
            params["W_dec"] /= params["W_dec"].norm(dim=1, keepdim=True).clamp_min(1e-8)
    return {k_: v.detach() for k_, v in params.items()}


def _corr(F: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of ``F`` with ``y`` (0 where either is constant)."""
    Fc, yc = F - F.mean(0), y - y.mean()
    den = np.sqrt((Fc**2).sum(0) * (yc**2).sum())
    return np.where(den > 1e-12, (Fc * yc[:, None]).sum(0) / np.maximum(den, 1e-12), 0.0)


def sae(model, task, *, seed: int = 0, budget: int | None = None, sites=None, variables=None, length: int | None = None,
        expansion: int = 4, k: int | None = None, steps: int = 200, lr: float = 0.01, tol: float = 0.01, share: float = 0.5) -> Alignment:
    n = int(budget or 64)
    length = length or task.max_len
    names = site_names(model, sites)
    variables = list(variables or task.program.names)
    tokens = task.sample(n, seed=seed, length=length).tokens
    values = task.run(tokens)
    _, acts = cache(model, tokens, names)
    dicts, feats = {}, {}
    for i, s in enumerate(names):
        report(i, len(names), f"dictionary for {s}")
        X = acts[s][:, 1:].reshape(-1, acts[s].shape[-1]).float().cpu()
        W = X.shape[1]
        m = expansion * W
        kk = min(m, int(k) if k else default_k(W))
        with torch.enable_grad():
            dicts[s] = train_topk_sae(X, m, kk, steps, lr, seed * 1000 + i)
        fz = Featurizer(dicts[s]["W_enc"].numpy(), dicts[s]["b_enc"].numpy(), dicts[s]["W_dec"].numpy(), dicts[s]["b_dec"].numpy(), kk, (0,))
        feats[s] = fz.encode(X).numpy().astype(np.float64)
    match: dict[str, dict[str, float]] = {}
    out = {}
    for var in variables:
        vs = task.program[var].value_set
        y = values[var][:, 1:].reshape(-1)
        chosen: dict[str, tuple[float, tuple[int, ...]]] = {}
        for s in names:
            F = feats[s]
            if vs.is_numerical:
                corr = np.abs(_corr(F, y.astype(np.float64)))[None, :]
            else:
                present = [v for v in vs.values if (y == v).any() and not (y == v).all()]
                if not present:
                    chosen[s] = (0.0, (0,))
                    continue
                corr = np.stack([_corr(F, (y == v).astype(np.float64)) for v in present])  # [values, m]
            score = float(corr.max(1).mean())
            # every feature that tracks the variable: a value's best feature, and any feature
            # correlated with some value at least ``share`` as much as that value's best
            best = corr.max(1, keepdims=True)
            picked = np.flatnonzero(((corr >= share * best) & (corr > 0.1)).any(0) | np.isin(np.arange(F.shape[1]), corr.argmax(1)))
            chosen[s] = (score, tuple(int(f) for f in picked))
        match[var] = {s: c[0] for s, c in chosen.items()}
        top = max(match[var].values())
        site = next(s for s in names if match[var][s] >= top - tol)
        d = dicts[site]
        features = chosen[site][1]
        fz = Featurizer(d["W_enc"].numpy(), d["b_enc"].numpy(), d["W_dec"].numpy(), d["b_dec"].numpy(), fz_k(d, k), features)
        basis = orthonormal_rows(d["W_dec"].numpy().astype(np.float64)[list(features)])
        out[var] = AlignedVariable(site, basis, "all", 0, fz, score=match[var][site])
    return Alignment(out, "sae", {"match": match, "n": n, "seed": seed, "steps": steps})


def fz_k(d: dict, k: int | None) -> int:
    W, m = d["W_enc"].shape
    return min(m, int(k) if k else default_k(W))


def default_k(width: int) -> int:
    """Active features per position: about one per eight dimensions, at least two."""
    return max(2, -(-width // 8))
