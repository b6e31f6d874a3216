"""What the command line says of each model family, without importing torch.

Each family package states its names in ``names.py`` (family, model classes, config
types, signals, bench architectures): its adapter and its record read them from there,
and ``vtprune methods`` / ``vtprune bench --help`` list them without loading the
adapters.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from pathlib import Path
from typing import NamedTuple


class FamilyNames(NamedTuple):
    name: str
    model_classes: tuple[str, ...]
    model_types: tuple[str, ...]  # the ``model_type`` of the family's transformers configs
    signals: frozenset[str]
    architectures: tuple[str, ...] = ()  # its architectures for ``vtprune bench --arch``


def family_packages() -> list[str]:
    """The family packages under ``vtprune/models``, in name order."""
    return sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.ispkg)


@cache
def all_names() -> tuple[FamilyNames, ...]:
    """Every family's names, package by package in name order."""
    return tuple(
        names for package in family_packages()
        for names in importlib.import_module(f"{__package__}.{package}.names").FAMILIES
    )  # fmt: skip


def family_support() -> list[tuple[str, tuple[str, ...], list[str]]]:
    """(family, model classes, signals it provides) for every family."""
    return [(f.name, f.model_classes, sorted(f.signals)) for f in all_names()]


def architecture_names() -> tuple[str, ...]:
    """The names ``vtprune bench --arch`` accepts."""
    return tuple(arch for f in all_names() for arch in f.architectures)
