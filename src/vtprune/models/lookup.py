"""The registered families, and the lookups from a model or a config to its adapter.

Imports every family package's ``record.py`` (so registers its family) in the
packages' name order.
"""

from __future__ import annotations

import importlib

from torch import nn

from .base import ModelAdapter
from .family import Family, family_of
from .family import registered as registered_families
from .listing import family_packages

for _package in family_packages():
    importlib.import_module(f"{__package__}.{_package}.record")

ADAPTERS: tuple[type[ModelAdapter], ...] = tuple(family.adapter for family in registered_families())


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
