"""Trained models for the zoo: Lightning training with the program's algorithm planted (IIT + strict SIIT).

``train(task, arch, plant=True, seed=0, ...)`` returns a model of the family's own class with its
dense init, ``ground_truth`` set to the planted alignment and a model card in ``meta``;
``build(...)`` fills a store directory with the compiled and trained grid (skip/resume/shard).
Modules: :mod:`.alignment` (where each variable goes), :mod:`.strict` (what the strict term
patches around it, and the blocks that carry a variable), :mod:`.iit` (the objective),
:mod:`.datamodule`, :mod:`.lightning_module`, :mod:`.train`, :mod:`.card`, :mod:`.build`,
:mod:`.cli`.
"""

import warnings

# lightning 2.6 warns about a torch pytree deprecation on import, once per process (every
# `zoo build --workers` process): noise for our users, nothing they can act on
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")

from .train import train  # noqa: E402

__all__ = ["train", "build"]


def build(*args, **kwargs):
    from .build import build as _build

    return _build(*args, **kwargs)
