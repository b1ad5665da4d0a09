"""The zoo: three model families behind one site interface, compilers with exact ground truth."""

from .compile import FAMILIES, CompileError, compile
from .ground_truth import GroundTruth, Location
from .model import ZooModel
from .reparametrize import reparametrize
from .sites import RunResult, Site, Tap, add, patch
from .store import load

__all__ = ["FAMILIES", "CompileError", "GroundTruth", "Location", "RunResult", "Site", "Tap", "ZooModel", "add", "compile", "load", "patch", "reparametrize"]


def __getattr__(name):
    """``zoo.train`` imports Lightning, which is slow: load it on first use."""
    if name == "train":
        from .training import train

        return train
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
