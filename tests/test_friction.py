"""Friction a newcomer met (issue 33, item 4): each fix with a test that fails without it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def _modules_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter holds after running ``code``."""
    probe = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(proc.stdout.split())


def test_zoo_help_and_the_evaluator_do_not_import_lightning():
    help_only = "import zoo.cli\ntry:\n    zoo.cli.main(['--help'])\nexcept SystemExit:\n    pass"
    assert "lightning" not in _modules_after(help_only)
    # the evaluator reads the store's paths from zoo.training.build
    assert "lightning" not in _modules_after("import evaluation.grid, zoo.training.build, zoo.training.cli")


def test_training_names_stay_the_functions_however_their_modules_were_imported():
    import importlib

    import zoo
    import zoo.training
    import zoo.training.build  # binds the submodule on the package: the name must stay the function
    import zoo.training.train

    assert callable(zoo.training.train) and callable(zoo.training.build)
    assert zoo.training.train.__module__ == "zoo.training.train" and zoo.training.build.__module__ == "zoo.training.build"
    assert zoo.train is zoo.training.train
    assert hasattr(importlib.import_module("zoo.training.train"), "LEARNING_RATE")
