"""Small linear-algebra helpers for ground-truth bases, shared by the families' reparametrisations."""

from __future__ import annotations

import numpy as np


def random_orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-random ``n x n`` orthogonal matrix (QR of a Gaussian, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))[None, :]


def orthonormal_rows(rows: np.ndarray) -> np.ndarray:
    """An orthonormal basis (rows) of the row space of ``rows``: the rows themselves, normalised,
    when they are already orthogonal (so axis-aligned bases stay axis-aligned), else from an SVD."""
    rows = np.asarray(rows, dtype=np.float64)
    gram = rows @ rows.T
    if np.all(np.diag(gram) > 0) and np.allclose(gram, np.diag(np.diag(gram)), atol=1e-12 * np.abs(gram).max()):
        return rows / np.sqrt(np.diag(gram))[:, None]
    _, s, vt = np.linalg.svd(rows, full_matrices=False)
    return vt[s > 1e-9 * max(1.0, s.max(initial=0.0))]
