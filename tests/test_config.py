"""Budget rule and config serialisation."""

from __future__ import annotations

import dataclasses
import json

import pytest

import vtprune
from vtprune import PruneConfig, RandomConfig, UniformConfig, resolve_budget


@pytest.mark.parametrize(
    "keep,tokens,expected",
    [
        (0.222, 576, 128),  # the usual LLaVA-1.5 budgets
        (0.111, 576, 64),
        (0.333, 576, 192),
        (0.25, 576, 144),
        (1.0, 576, 576),
        (0.5, 3, 2),  # 1.5 rounds half up
        (0.001, 576, 1),  # at least one token
        (128, 576, 128),
        (600, 576, 576),  # an int above the count keeps the whole image
        (1, 576, 1),  # int 1 is one token; float 1.0 is everything
    ],
)
def test_budget_rule(keep, tokens, expected):
    assert resolve_budget(keep, tokens) == expected
    assert UniformConfig(keep=keep).budget(tokens) == expected


def test_defaults_and_help():
    config = UniformConfig()
    assert config.keep == 0.222 and config.positions == "original"
    help_text = UniformConfig.field_help()
    assert set(help_text) == {"keep", "positions", "newlines", "videos", "frame_budget"} and all(help_text.values())
    assert "seed" in RandomConfig.field_help()


def test_json_round_trip_dispatches_on_method(tmp_path):
    config = RandomConfig(keep=64, seed=7, positions="compact")
    data = config.to_dict()
    assert data == {
        "method": "random", "keep": 64, "positions": "compact", "newlines": "keep", "videos": "prune",
        "frame_budget": "tokens", "seed": 7,
    }
    assert PruneConfig.from_dict(data) == config
    assert PruneConfig.from_json(config.to_json()) == config
    assert json.loads(config.to_json())["method"] == "random"
    path = tmp_path / "config.json"
    config.save(path)
    loaded = PruneConfig.load(path)
    assert type(loaded) is RandomConfig and loaded == config
    assert RandomConfig.load(path) == config


def test_from_dict_rejects_unknown_fields_and_wrong_class():
    with pytest.raises(ValueError, match="no field"):
        PruneConfig.from_dict({"method": "uniform", "keep": 0.5, "seed": 3})
    with pytest.raises(TypeError, match="not a"):
        UniformConfig.from_dict({"method": "random"})
    with pytest.raises(ValueError, match="method must be one of"):
        PruneConfig.from_dict({"method": "nope"})


def test_validation_on_replace():
    with pytest.raises(ValueError, match="keep"):
        dataclasses.replace(UniformConfig(), keep=0)
    with pytest.raises(TypeError, match="seed"):
        RandomConfig(seed=1.5)


def test_registry_listing():
    rows = {row["name"]: row for row in vtprune.methods()}
    assert {"random", "uniform"} <= set(rows)
    for row in rows.values():
        assert set(row) == {"name", "stage", "needs", "paper", "summary", "config"}
        assert row["paper"] and row["summary"]
    assert rows["uniform"]["stage"] == "pre_llm" and rows["uniform"]["needs"] == []
    assert vtprune.get_method("UNIFORM").config is UniformConfig


@pytest.mark.parametrize(
    "budget,sizes,expected",
    [
        (128, [576], [128]),
        (128, [576, 1872], [30, 98]),  # 128 * 576/2448 = 30.1, 128 * 1872/2448 = 97.9
        (2, [576, 10], [1, 1]),  # every part keeps one token when the budget allows
        (1, [576, 100], [1, 0]),
        (606, [576, 30], [576, 30]),
        (5, [3, 1], [3, 1]),  # more budget than tokens: everything
    ],
)
def test_split_budget_among_parts(budget, sizes, expected):
    from vtprune.config import split_budget

    shares = split_budget(budget, sizes)
    assert shares == expected
    assert sum(shares) == min(budget, sum(sizes))
    assert all(0 <= s <= n for s, n in zip(shares, sizes))


def test_every_config_class_is_exported_and_registered():
    import vtprune.configs

    for name in vtprune.configs.__all__:
        assert name in vtprune.__all__ and getattr(vtprune, name) is getattr(vtprune.configs, name)
    # Configs that tests define register too (tests/probes.py): only the package's count.
    from vtprune.registry import all_methods

    registered = {m.config.__name__ for m in all_methods() if m.config.__module__.startswith("vtprune.")}
    assert registered == set(vtprune.configs.__all__)
    assert {row["config"] for row in vtprune.list_methods()} >= registered


def test_the_listing_and_the_subpackages_have_different_names():
    import importlib

    assert vtprune.methods() == vtprune.list_methods()
    assert importlib.import_module("vtprune.pruning_methods.uniform").UniformConfig is UniformConfig
    assert importlib.import_module("vtprune.configs.uniform").UniformConfig is UniformConfig
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("vtprune.methods")


def test_built_in_stages_import_their_selection_code_when_they_select():
    from vtprune.pruning_methods.sts import select_instruction, select_structure

    first, second = vtprune.get_method("sts").stages(vtprune.STSConfig(layer=3), 32)
    assert (first.select.resolve(), second.select.resolve()) == (select_structure, select_instruction)
    assert second.where == "llm:3" and second.needs == {"attn_rows@llm:3"}


@pytest.fixture
def scratch_registry(monkeypatch):
    """Methods registered by a test are forgotten after it."""
    from vtprune import registry

    registry.all_methods()  # the built-in ones first
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))
    monkeypatch.setattr(registry, "_BY_CONFIG", dict(registry._BY_CONFIG))


def test_defining_a_config_class_registers_its_method_and_checks_its_fields(scratch_registry):
    from vtprune.checks import fraction, integer
    from vtprune.registry import PRE_LLM, Stage

    @dataclasses.dataclass
    class HalfConfig(PruneConfig):
        """Keep the first tokens."""

        method = "first_tokens"
        paper = "none"
        summary = "the first tokens of each image"
        share: float = vtprune.option(0.5, "Share kept.", check=fraction())
        offset: int = vtprune.option(0, "Tokens skipped.", check=integer(0))

        def check_relations(self) -> None:
            if self.share == 0 and self.offset:
                raise ValueError("offset needs a share above 0")

        def stages(self, num_layers):
            return [Stage(PRE_LLM, lambda signals, budget, config: None)]

    assert vtprune.get_method("first_tokens").config is HalfConfig
    assert vtprune.registry.method_for_config(HalfConfig()).summary == "the first tokens of each image"
    with pytest.raises(ValueError, match=r"share must be a number in \[0.0, 1.0\]; got 1.5"):
        HalfConfig(share=1.5)
    with pytest.raises(TypeError, match="offset must be an int >= 0; got 1.0 of type float"):
        HalfConfig(offset=1.0)
    with pytest.raises(ValueError, match="keep"):  # the shared fields keep their checks
        HalfConfig(keep=0)
    with pytest.raises(ValueError, match="offset needs"):
        HalfConfig(share=0.0, offset=2)


def test_a_shared_field_redefined_without_a_check_keeps_the_shared_check():
    with pytest.raises(ValueError, match="keep must be"):
        vtprune.SparseVLMConfig(keep=0)
    with pytest.raises(ValueError, match="positions must be one of"):
        vtprune.PDropConfig(positions="sorted")
