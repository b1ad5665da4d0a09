"""The three model families, one module each; ``family_class(name)`` returns a family's class.

Every family class derives from :class:`zoo.model.ZooModel`, is built as ``cls(config)`` from
its config dataclass ``cls.config_class``, and names itself in ``cls.family``.
"""

from __future__ import annotations

import importlib

FAMILY_MODULES = {"transformer": "zoo.families.transformer", "rnn": "zoo.families.rnn", "ssm": "zoo.families.ssm"}


def family_class(name: str):
    if name not in FAMILY_MODULES:
        raise ValueError(f"unknown model family {name!r}; valid: {', '.join(FAMILY_MODULES)}")
    from ..model import ZooModel

    module = importlib.import_module(FAMILY_MODULES[name])
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, ZooModel) and getattr(obj, "family", None) == name:
            if "config_class" not in vars(obj):
                obj.config_class = getattr(module, f"{obj.__name__}Config")
            return obj
    raise ImportError(f"{FAMILY_MODULES[name]} defines no ZooModel subclass with family = {name!r}")
