"""Model families: one package per family (``models/<family>/``), each registering its
:class:`~.family.Family`, and the lookups from a model or a config to its adapter.

Every subpackage here is a family package, registered (its ``record.py`` imported)
in name order when the lookups are first used. A family package holds:

    names.py     its names, torch-free: family, model classes, signals, architectures
    adapter.py   the ModelAdapter: where the image tokens are, their grids, positions
    tiny.py      a tiny random-weight model, and how a fake prompt's image becomes inputs
    geometry.py  which pixels each token covers, from the family's image processor
    cost.py      vision MACs, and the published configs of real-scale architectures
    record.py    the Family record, registered

The model tests run on every registered family's tiny models, so a new family is its
package, its own tests, and its row in the README.

Importing this package costs nothing: the adapters (and torch) load on first use of
the lookups below, and ``listing.py`` names every family without them.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(f"{__name__}.lookup"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
