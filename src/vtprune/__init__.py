"""vtprune: training-free visual token pruning for Hugging Face vision-language models.

    import vtprune
    handle = vtprune.prune(model, "uniform", keep=0.25)  # or a config object
    model.generate(**inputs)                            # same call, fewer visual tokens
    handle.remove()                                     # the original model again

The public names are imported on first use, so that ``import vtprune`` (and the
command line's help and argument errors) do not wait for torch and transformers.
Every method's config is public here; :func:`list_methods` (also ``methods``) lists
the methods, :mod:`vtprune.configs` holds the configs and :mod:`vtprune.pruning_methods`
their selection code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_PUBLIC = {
    "PruneConfig": "config",
    "option": "config",
    "resolve_budget": "config",
    # every method's config (a test checks this is all of vtprune.configs)
    **dict.fromkeys(
        (
            "ATPConfig", "CDPrunerConfig", "COASTConfig", "DARTConfig", "DivPruneConfig", "FastVConfig", "PDropConfig",
            "RandomConfig", "SPprunerConfig", "STSConfig", "SparseVLMConfig", "UniformConfig", "VisionZipConfig",
            "ZSPAPruneConfig",
        ),
        "configs",
    ),  # fmt: skip
    "supported_families": "models",
    "LazySelect": "registry",
    "ModelShape": "registry",
    "Selection": "registry",
    "Stage": "registry",
    "get_method": "registry",
    "lazy_select": "registry",
    "list_methods": "registry",
    "register": "registry",
    "PruneStats": "runtime.last_forward",
    "Signals": "signals",
    "PruneHandle": "api",
    "active_handle": "api",
    "disabled": "api",
    "prune": "api",
    "validate": "api",
}

__all__ = sorted([*_PUBLIC, "methods"])

if TYPE_CHECKING:
    from .api import PruneHandle, active_handle, disabled, prune, validate
    from .config import PruneConfig, option, resolve_budget
    from .configs import (
        ATPConfig,
        CDPrunerConfig,
        COASTConfig,
        DARTConfig,
        DivPruneConfig,
        FastVConfig,
        PDropConfig,
        RandomConfig,
        SparseVLMConfig,
        SPprunerConfig,
        STSConfig,
        UniformConfig,
        VisionZipConfig,
        ZSPAPruneConfig,
    )
    from .models import supported_families
    from .registry import LazySelect, ModelShape, Selection, Stage, get_method, lazy_select, list_methods, register
    from .runtime.last_forward import PruneStats
    from .signals import Signals


def methods() -> list[dict[str, object]]:
    """Every registered method (:func:`list_methods`, by its first name)."""
    from .registry import list_methods as listing

    return listing()


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        if name.startswith("_"):
            raise AttributeError(f"module 'vtprune' has no attribute {name!r}")
        try:  # a subpackage, as ``vtprune.models``
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'vtprune' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
