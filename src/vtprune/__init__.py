"""vtprune: training-free visual token pruning for Hugging Face vision-language models.

    import vtprune
    handle = vtprune.prune(model, "uniform", keep=0.25)  # or a config object
    model.generate(**inputs)                            # same call, fewer visual tokens
    handle.remove()                                     # the original model again

The public names are imported on first use, so that ``import vtprune`` (and the
command line's help and argument errors) do not wait for torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The methods subpackage is bound now, and light (it imports no method until the
# registry asks): the public name ``methods`` is the function that lists them.
from . import methods as _methods_package  # noqa: F401

__version__ = "0.1.0"

# public name -> module that defines it
_PUBLIC = {
    "PruneConfig": "config",
    "resolve_budget": "config",
    "RandomConfig": "methods.random",
    "UniformConfig": "methods.uniform",
    "supported_families": "models",
    "Selection": "registry",
    "Stage": "registry",
    "get_method": "registry",
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
    from .config import PruneConfig, resolve_budget
    from .methods.random import RandomConfig
    from .methods.uniform import UniformConfig
    from .models import supported_families
    from .registry import Selection, Stage, get_method, register
    from .runtime.last_forward import PruneStats
    from .signals import Signals


def methods() -> list[dict[str, object]]:
    """Every registered method: name, stage(s), signals it needs, paper, summary."""
    from .api import methods as listing

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
