"""Model families: one package per family (``models/<family>/``), each registering its
:class:`~.family.Family`, and the lookups from a model or a config to its adapter.

Every subpackage here is a family package, imported (so registered) in name order
when this package is first imported. A family package holds:

    adapter.py   the ModelAdapter: where the image tokens are, their grids, positions
    tiny.py      a tiny random-weight model, and how a fake prompt's image becomes inputs
    geometry.py  which pixels each token covers, from the family's image processor
    cost.py      vision MACs, and the published configs of real-scale architectures
    __init__.py  the Family record, registered

The model tests run on every registered family's tiny models, so a new family is its
package, its own tests, and its row in the README (plus its architecture names in
``bench.architectures.ARCHITECTURES`` if it has any, which the command line lists
without importing torch).
"""

from __future__ import annotations

import importlib
import pkgutil

from torch import nn

from .base import ModelAdapter
from .family import Family, family_of
from .family import registered as registered_families

for _package in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg):
    importlib.import_module(f"{__name__}.{_package}")

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
