"""The package's layers, read from the source: methods know no model, the runtime knows
no family, families know no method, and the runtime reads in short functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vtprune

ROOT = Path(vtprune.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every vtprune module ``path`` imports, at any depth (TYPE_CHECKING and function-
    level imports included), resolved to absolute names."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m == "vtprune" or m.startswith("vtprune.")}


GRAPH = {_module_name(p): _imports(p) for p in ROOT.rglob("*.py")}


def _offending(layer: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    out = {}
    for module, imported in GRAPH.items():
        if module == layer or module.startswith(layer + "."):
            bad = sorted(m for m in imported if any(m == f or m.startswith(f + ".") for f in forbidden))
            if bad:
                out[module] = bad
    return out


@pytest.mark.parametrize("layer", ["vtprune.pruning_methods", "vtprune.configs"])
def test_methods_import_neither_models_nor_the_runtime(layer):
    assert _offending(layer, ("vtprune.models", "vtprune.runtime")) == {}


def test_the_runtime_imports_no_model_family():
    """The runtime reads families through its adapter protocol only."""
    assert _offending("vtprune.runtime", ("vtprune.models",)) == {}


def test_model_families_import_no_method():
    assert _offending("vtprune.models", ("vtprune.pruning_methods", "vtprune.configs")) == {}


def test_the_graph_sees_the_imports_it_checks():
    """The walk itself: relative and TYPE_CHECKING imports are resolved."""
    assert "vtprune.runtime.adapter_protocol" in GRAPH["vtprune.runtime.hooks"]
    assert any(m.startswith("vtprune.runtime") for m in GRAPH["vtprune.models.base"])


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


@pytest.mark.parametrize("path", sorted((ROOT / "runtime").glob("*.py")), ids=lambda p: p.name)
def test_runtime_functions_are_short(path):
    """Every function of the runtime (signature, docstring and body) under 50 lines."""
    long = {name: lines for name, lines in _functions(path) if lines >= 50}
    assert long == {}
