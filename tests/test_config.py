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
    assert set(help_text) == {"keep", "positions", "newlines"} and all(help_text.values())
    assert "seed" in RandomConfig.field_help()


def test_json_round_trip_dispatches_on_method(tmp_path):
    config = RandomConfig(keep=64, seed=7, positions="compact")
    data = config.to_dict()
    assert data == {"method": "random", "keep": 64, "positions": "compact", "newlines": "keep", "seed": 7}
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
