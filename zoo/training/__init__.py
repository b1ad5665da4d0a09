"""Trained models for the zoo: Lightning training with the program's algorithm planted (IIT + strict SIIT).

``train(task, arch, plant=True, seed=0, ...)`` returns a model of the family's own class with its
dense init, ``ground_truth`` set to the planted alignment and a model card in ``meta``;
``build(...)`` fills a store directory with the compiled and trained grid (skip/resume/shard).
Modules: :mod:`.alignment` (where each variable goes), :mod:`.strict` (what the strict term
patches around it, and the blocks that carry a variable), :mod:`.iit` (the objective),
:mod:`.datamodule`, :mod:`.lightning_module`, :mod:`.train`, :mod:`.card`, :mod:`.build`,
:mod:`.cli`.

Lightning takes seconds to import, so this package does not import it: ``train`` and ``build``
load their modules on first use, and the CLI's argument parser (:mod:`.cli`) and the store's
paths (:mod:`.build`) stay light.
"""

import sys
import types

__all__ = ["train", "build"]


class _Package(types.ModuleType):
    """``zoo.training.train`` and ``.build`` are the functions, loaded on first use.

    Each shares its name with its submodule, and importing a submodule binds it on the package:
    the setters drop that binding, so the names stay the functions however the modules were
    imported (``importlib.import_module("zoo.training.train")`` still gives the module)."""

    @property
    def train(self):
        from .train import train

        return train

    @train.setter
    def train(self, _module) -> None:
        pass

    @property
    def build(self):
        from .build import build

        return build

    @build.setter
    def build(self, _module) -> None:
        pass


sys.modules[__name__].__class__ = _Package
