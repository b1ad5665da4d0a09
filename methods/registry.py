"""The method interface and registry.

A method is a callable ``(model, task, *, seed=0, budget=None, **options) -> Finding``.
``budget`` is an int scaling the method's work (the number of sampled inputs or pairs, and the
optimisation steps of the trained methods); None picks the method's default. A method sees the
model's sites, ``model.run`` with cache/interventions, gradients through them, and the task's
sampler and program; it must not read ``model.ground_truth``.

- ``get(name)``: a built-in name, a name registered with :func:`register`, an import path
  ``"pkg.module:function"``, or a name in the entry-point group ``circuit_zoo.methods``
  (a third-party package declares ``[project.entry-points."circuit_zoo.methods"]
  my_method = "pkg.module:function"``). A callable is returned as is.
- ``names()``: every name ``get`` accepts without an import path.
- ``run(name_or_fn, model, task, seed=, budget=, **options)``: runs the method on a guarded view
  of the model whose ``.ground_truth`` raises PermissionError (only a method marked with
  :func:`reads_ground_truth`, the oracle, gets the real model) and validates the finding.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from importlib import metadata
from typing import Callable

from .finding import FINDING_TYPES, FindingError

ENTRY_POINT_GROUP = "circuit_zoo.methods"

BUILTIN: dict[str, str] = {
    "activation_patching": "methods.activation_patching:activation_patching",
    "mean_ablation": "methods.activation_patching:mean_ablation",
    "resample_ablation": "methods.activation_patching:resample_ablation",
    "zero_ablation": "methods.activation_patching:zero_ablation",
    "attribution_patching": "methods.attribution:attribution_patching",
    "integrated_gradients": "methods.attribution:integrated_gradients",
    "probes": "methods.probes:probes",
    "das": "methods.das:das",
    "sae": "methods.sae:sae",
    "acdc": "methods.acdc:acdc",
    "subnetwork_probing": "methods.subnetwork_probing:subnetwork_probing",
    "random": "methods.controls:random",
    "random_alignment": "methods.controls:random_alignment",
    "random_circuit": "methods.controls:random_circuit",
    "oracle": "methods.controls:oracle",
    "oracle_alignment": "methods.controls:oracle_alignment",
    "oracle_circuit": "methods.controls:oracle_circuit",
    "constant": "methods.baselines:constant",
    "layer_order": "methods.baselines:layer_order",
    "site_width": "methods.baselines:site_width",
    "activation_variance": "methods.baselines:activation_variance",
    "activation_norm": "methods.baselines:activation_norm",
    "full_site_alignment": "methods.baselines:full_site_alignment",
    "keep_all_circuit": "methods.baselines:keep_all_circuit",
}
# the controls: methods that find nothing on purpose (random, the degenerate baselines) or read
# the ground truth (the oracles); the evaluator runs them beside every method
RANDOM_CONTROLS = ("random", "random_alignment", "random_circuit")
ORACLES = ("oracle", "oracle_alignment", "oracle_circuit")
DEGENERATE = ("constant", "layer_order", "site_width", "activation_variance", "activation_norm", "full_site_alignment", "keep_all_circuit")
CONTROLS = RANDOM_CONTROLS + ORACLES + DEGENERATE

_REGISTERED: dict[str, Callable] = {}


def reads_ground_truth(fn: Callable) -> Callable:
    """Mark a method as allowed to read ``model.ground_truth`` (controls only)."""
    fn.reads_ground_truth = True
    return fn


def register(name: str, fn: Callable | None = None):
    """Register ``fn`` under ``name`` (usable as a decorator: ``@register("my_method")``)."""

    def deco(f: Callable) -> Callable:
        if not callable(f):
            raise TypeError(f"method {name!r} must be callable, got {type(f).__name__}")
        _REGISTERED[name] = f
        return f

    return deco(fn) if fn is not None else deco


def _entry_points() -> dict:
    try:
        eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    except TypeError:  # very old importlib.metadata
        eps = metadata.entry_points().get(ENTRY_POINT_GROUP, [])
    return {ep.name: ep for ep in eps}


def names() -> tuple[str, ...]:
    """Built-in, registered and entry-point method names."""
    out = list(BUILTIN) + [n for n in _REGISTERED if n not in BUILTIN]
    out += [n for n in _entry_points() if n not in out]
    return tuple(out)


def _import_here_or_on_path(module_name: str):
    """Import ``module_name``; a top-level module not on ``sys.path`` is looked for in the current
    folder too, as ``python -m`` does (the ``zoo`` script, unlike ``python -m``, does not put the
    current folder on ``sys.path``). The folder goes last on ``sys.path``, so it shadows nothing."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        top = module_name.split(".")[0]
        here = os.getcwd()
        if e.name != top or here in sys.path or not _holds_module(here, top):
            raise
        sys.path.append(here)
        return importlib.import_module(module_name)


def _holds_module(folder: str, name: str) -> bool:
    return os.path.isfile(os.path.join(folder, name + ".py")) or os.path.isdir(os.path.join(folder, name))


def _load_path(path: str) -> Callable:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"import path {path!r} must look like 'package.module:function'")
    try:
        module = _import_here_or_on_path(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import module {module_name!r} for method {path!r}: {e} (looked on sys.path and in the current folder {os.getcwd()}; "
                         "run from the folder that holds it or add that folder to PYTHONPATH)") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module {module_name!r} has no attribute {attr!r} (method {path!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"method {path!r} is a {type(obj).__name__}, not a callable")
    return obj


def get(name) -> Callable:
    """The method called ``name`` (see module doc); a one-line ValueError for unknown names."""
    if callable(name):
        return name
    if not isinstance(name, str):
        raise ValueError(f"a method is a name, an import path 'pkg.mod:fn' or a callable, got {type(name).__name__}")
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in BUILTIN:
        return _load_path(BUILTIN[name])
    if ":" in name:
        return _load_path(name)
    eps = _entry_points()
    if name in eps:
        fn = eps[name].load()
        if not callable(fn):
            raise ValueError(f"entry point {name!r} ({eps[name].value}) is not callable")
        return fn
    valid = names()
    close = difflib.get_close_matches(name, valid, n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ValueError(f"unknown method {name!r}; {hint}valid: {', '.join(valid)} (or an import path 'pkg.mod:fn')")


def method_name(name_or_fn) -> str:
    if isinstance(name_or_fn, str):
        return name_or_fn
    return getattr(name_or_fn, "__name__", type(name_or_fn).__name__)


class GuardedModel:
    """A view of a model for methods: everything but ``ground_truth``, which raises PermissionError."""

    __slots__ = ("_GuardedModel__model",)

    def __init__(self, model):
        object.__setattr__(self, "_GuardedModel__model", model)

    @property
    def ground_truth(self):
        raise PermissionError("methods must not read model.ground_truth (only the oracle control may); use the model's sites, run() and the task")

    def __getattr__(self, name):
        return getattr(self.__model, name)

    def __setattr__(self, name, value):
        if name == "ground_truth":
            raise PermissionError("methods must not touch model.ground_truth")
        setattr(self.__model, name, value)

    def __call__(self, *args, **kwargs):
        return self.__model(*args, **kwargs)

    def __repr__(self) -> str:
        return f"GuardedModel({type(self.__model).__name__})"


def guard(model):
    return model if isinstance(model, GuardedModel) else GuardedModel(model)


def run(name_or_fn, model, task, *, seed: int = 0, budget: int | None = None, **options):
    """Run a method on a guarded view of ``model`` and validate its finding."""
    fn = get(name_or_fn)
    view = model if getattr(fn, "reads_ground_truth", False) else guard(model)
    from zoo.threads import one_blas_thread

    with one_blas_thread():
        finding = fn(view, task, seed=seed, budget=budget, **options)
    if not isinstance(finding, FINDING_TYPES):
        raise FindingError(f"method {method_name(name_or_fn)!r} returned a {type(finding).__name__}; a method returns a SiteScores, Alignment or Circuit")
    if not finding.method:
        finding.method = method_name(name_or_fn)
    finding.validate(model, task) if finding.kind == "alignment" else finding.validate(model)
    return finding
