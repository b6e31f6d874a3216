"""Model adapters, one per family, and the lookup from a model instance to its adapter."""

from __future__ import annotations

from torch import nn

from .base import ModelAdapter
from .llava import LlavaAdapter
from .llava_next import LlavaNextAdapter, LlavaOnevisionAdapter
from .qwen2_vl import Qwen2VLAdapter

ADAPTERS: tuple[type[ModelAdapter], ...] = (LlavaAdapter, Qwen2VLAdapter, LlavaNextAdapter, LlavaOnevisionAdapter)


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


__all__ = ["ADAPTERS", "ModelAdapter", "adapter_class_for_config", "adapter_for", "family_support", "supported_families"]
