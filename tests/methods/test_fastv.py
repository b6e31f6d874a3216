import torch

from vtprune.pruning_methods.fastv import FastVConfig, select_fastv
from vtprune.registry import get_method
from vtprune.signals import Signals


def test_keeps_the_top_budget_by_last_token_attention() -> None:
    attention = torch.tensor([[0.05, 0.30, 0.01, 0.20, 0.15, 0.29], [0.50, 0.12, 0.20, 0.05, 0.10, 0.03]])
    signals = Signals.from_tensors((2, 3), **{"attn_last@llm:2": attention})
    keep = select_fastv(signals, 3, FastVConfig(keep=3))
    assert [set(row.tolist()) for row in keep] == [{1, 5, 3}, {0, 2, 1}]


def test_layer_field_places_the_stage() -> None:
    (stage,) = get_method("fastv").stages(FastVConfig(layer=5), 32)
    assert stage.where == "llm:5" and stage.needs == {"attn_last@llm:5"}
    attention = torch.tensor([[0.1, 0.4, 0.2, 0.3]])
    signals = Signals.from_tensors((2, 2), **{"attn_last@llm:5": attention})
    assert set(stage.select(signals, 2, FastVConfig(layer=5)).flatten().tolist()) == {1, 3}
