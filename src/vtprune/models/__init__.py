"""Model families: one package per family (``models/<family>/``), each registering its
:class:`~.family.Family`, and the lookups from a model or a config to its adapter.

Every subpackage here is a family package, imported (so registered) in name order
when this package is first imported: a new family is a new package, nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil

from torch import nn

from .base import ModelAdapter
from .family import Family, family_of, registered

for _package in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg):
    importlib.import_module(f"{__name__}.{_package}")

ADAPTERS: tuple[type[ModelAdapter], ...] = tuple(family.adapter for family in registered())


def registered_families() -> tuple[Family, ...]:
    """Every registered family, in order."""
    return registered()


def supported_families() -> dict[str, tuple[str, ...]]:
    """Family name -> model class names it handles."""
    return {adapter.family: adapter.model_classes for adapter in ADAPTERS}


def family_support() -> list[tuple[str, tuple[str, ...], list[str]]]:
    """(family, model classes, signals its adapter provides) for every family."""
    return [(a.family, a.model_classes, sorted(a.signals)) for a in ADAPTERS]


def adapter_class_for_config(config: object) -> type[ModelAdapter]:
    """The adapter class for a model with this transformers config (nothing is loaded);
    ``TypeError`` naming the supported families otherwise."""
    for adapter in ADAPTERS:
        if adapter.handles_config(config):
            return adapter
    accepted = ", ".join(f"{t!r}" for adapter in ADAPTERS for t in adapter.model_types)
    model_type = getattr(config, "model_type", None)
    raise TypeError(f"a model of type {model_type!r} is not supported; supported model types: {accepted}")


def adapter_for(model: object) -> ModelAdapter:
    """The adapter for ``model``; ``TypeError`` naming the supported classes otherwise."""
    if isinstance(model, nn.Module):
        for adapter in ADAPTERS:
            if adapter.handles(model):
                return adapter(model)
    accepted = "; ".join(f"{family}: {', '.join(classes)}" for family, classes in supported_families().items())
    raise TypeError(f"model of type {type(model).__name__} is not supported; supported families: {accepted}")


__all__ = [
    "ADAPTERS",
    "Family",
    "ModelAdapter",
    "adapter_class_for_config",
    "adapter_for",
    "family_of",
    "family_support",
    "registered_families",
    "supported_families",
]
