"""Pruning methods: one module each, pure functions over tensors, no model code.

Each module registers its method when it is imported (see :mod:`vtprune.registry`);
:func:`load_all` imports every one. Importing this package alone imports none of
them, so that ``import vtprune`` stays light.
"""

from __future__ import annotations

import importlib

MODULES = (
    "atp",
    "cdpruner",
    "coast",
    "dart",
    "divprune",
    "fastv",
    "pdrop",
    "random",
    "sparsevlm",
    "sppruner",
    "sts",
    "uniform",
    "visionzip",
    "zspaprune",
)


def load_all() -> None:
    """Import (and so register) every method module."""
    for name in MODULES:
        importlib.import_module(f"{__name__}.{name}")
