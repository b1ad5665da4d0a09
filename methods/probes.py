"""Linear probes per (variable, site) -> Alignment.

For every program variable and every site, a ridge-regression probe (closed form, float64, so
deterministic) is fit from the site's activation at position t to the variable's value at t:
positions 1.. (BOS is never intervened on); one-hot targets for a categorical variable (prediction: the argmax), the value itself for a
numerical one (prediction: the rounded value). Its held-out accuracy is the probe's score. Per
variable, the chosen site is the earliest (in the model's site order) whose accuracy is within
``tol`` of the best: where the variable first becomes linearly readable. The basis is the probe's
weight rows orthonormalised (for a categorical probe, the class weights minus their mean, since a
shift shared by every class changes no prediction).

``budget``: the number of sampled inputs for fitting, and as many held out (default 64).
``meta["accuracy"]`` holds every (variable, site) accuracy.
"""

from __future__ import annotations

import numpy as np

from .finding import AlignedVariable, Alignment
from .patching import cache, site_names


def orthonormal_rows(M: np.ndarray, rtol: float = 1e-6) -> np.ndarray:
    """An orthonormal basis ``[k, W]`` of the row space of ``M`` (SVD, small singular values dropped)."""
    _, s, vt = np.linalg.svd(np.atleast_2d(M), full_matrices=False)
    if s.size == 0 or s[0] == 0:
        return vt[:1]
    return vt[s > rtol * s[0]]


def flat(acts) -> np.ndarray:
    """Activations ``[N, T, W]`` at positions 1.. (BOS left out: it is never intervened on) as
    float64 rows ``[N * (T - 1), W]``."""
    return acts[:, 1:].reshape(-1, acts.shape[-1]).double().cpu().numpy()


def _targets(y: np.ndarray, values: tuple[int, ...], numerical: bool) -> np.ndarray:
    return y[:, None].astype(np.float64) if numerical else (y[:, None] == np.asarray(values)[None, :]).astype(np.float64)


def fit_probes(X: np.ndarray, targets: list[tuple[np.ndarray, tuple[int, ...], bool]], ridge: float = 1e-3) -> list:
    """Ridge probes of several variables from one site's activations ``X`` ``[N, W]``: the Gram
    matrix is the same for all, so one solve serves every target. ``targets``: (values ``[N]``,
    value set, numerical) per variable; returns (weights ``[W, C]``, predict(X) -> values) each."""
    mu = X.mean(0)
    Xc = X - mu
    Ys = [_targets(y, values, numerical) for y, values, numerical in targets]
    Y = np.concatenate(Ys, axis=1)
    ym = Y.mean(0)
    G = Xc.T @ Xc
    scale = max(np.trace(G) / X.shape[1], 1e-12)  # ridge relative to the activations' scale
    A = G + ridge * scale * np.eye(X.shape[1])
    W_all = np.linalg.solve(A, Xc.T @ (Y - ym))
    out, start = [], 0
    for (_, values, numerical), Yv in zip(targets, Ys):
        cols = slice(start, start + Yv.shape[1])
        start += Yv.shape[1]
        Wt, m = W_all[:, cols], ym[cols]

        def predict(Z: np.ndarray, Wt=Wt, m=m, values=values, numerical=numerical) -> np.ndarray:
            pred = (Z - mu) @ Wt + m
            if numerical:
                return np.rint(pred[:, 0]).astype(np.int64)
            return np.asarray(values)[pred.argmax(1)]

        out.append((Wt, predict))
    return out


def fit_probe(X: np.ndarray, y: np.ndarray, values: tuple[int, ...], numerical: bool, ridge: float = 1e-3):
    """Ridge probe; returns (weights ``[W, C]`` (``[W, 1]`` if numerical), predict(X) -> values)."""
    return fit_probes(X, [(y, values, numerical)], ridge)[0]


def probes(model, task, *, seed: int = 0, budget: int | None = None, sites=None, variables=None, length: int | None = None,
           ridge: float = 1e-3, tol: float = 0.01) -> Alignment:
    n = int(budget or 64)
    length = length or task.max_len
    names = site_names(model, sites)
    variables = list(variables or task.program.names)
    train = task.sample(n, seed=seed, length=length).tokens
    test = task.sample(n, seed=seed + 1, length=length).tokens
    vtrain, vtest = task.run(train), task.run(test)
    _, atrain = cache(model, train, names)
    _, atest = cache(model, test, names)
    accuracy: dict[str, dict[str, float]] = {var: {} for var in variables}
    weights: dict[str, dict[str, np.ndarray]] = {var: {} for var in variables}
    sets = {var: task.program[var].value_set for var in variables}
    for s in names:  # every variable's probe at a site from one solve
        X, Xt = flat(atrain[s]), flat(atest[s])
        fits = fit_probes(X, [(vtrain[var][:, 1:].reshape(-1), sets[var].values, sets[var].is_numerical) for var in variables], ridge)
        for var, (Wt, predict) in zip(variables, fits):
            weights[var][s] = Wt
            accuracy[var][s] = float((predict(Xt) == vtest[var][:, 1:].reshape(-1)).mean())
    out = {}
    for var in variables:
        vs = sets[var]
        fits = {s: (weights[var][s], accuracy[var][s]) for s in names}
        best = max(accuracy[var].values())
        site = next(s for s in names if accuracy[var][s] >= best - tol)
        Wt = fits[site][0]
        M = Wt.T if vs.is_numerical else (Wt - Wt.mean(1, keepdims=True)).T
        if not np.abs(M).max() > 0:
            M = Wt.T if np.abs(Wt).max() > 0 else np.eye(1, Wt.shape[0])
        out[var] = AlignedVariable(site, orthonormal_rows(M), "all", 0, score=fits[site][1])
    return Alignment(out, "probes", {"accuracy": accuracy, "n": n, "seed": seed})
