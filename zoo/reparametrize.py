"""``reparametrize(model, seed)``: a function-equivalent copy with hidden bases moved.

Each family rotates, permutes and scales what its architecture allows (a residual stream by a
random orthogonal matrix; ReLU units by a permutation and positive scales; see each family's
``reparametrize``) and moves the ground truth along, so a method cannot win by reading
axis-aligned one-hot units. The copy records ``meta["reparametrized"] = seed``.
"""

from __future__ import annotations

import importlib

from .families import FAMILY_MODULES
from .model import ZooModel


def reparametrize(model: ZooModel, seed: int = 0) -> ZooModel:
    if model.family not in FAMILY_MODULES:
        raise ValueError(f"cannot reparametrize a model of family {model.family!r}; families: {', '.join(FAMILY_MODULES)}")
    module = importlib.import_module(FAMILY_MODULES[model.family])
    new = module.reparametrize(model, seed=seed)
    new.meta.pop("reparametrized_seed", None)
    new.meta["reparametrized"] = int(seed)
    return new
