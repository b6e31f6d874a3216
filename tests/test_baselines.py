"""The random and uniform baselines on hand-built signals."""

from __future__ import annotations

import pytest
import torch

from vtprune import RandomConfig, Signals, UniformConfig
from vtprune.pruning_methods.random import select_random
from vtprune.pruning_methods.uniform import lattice_indices, select_uniform


def test_uniform_quarter_keeps_every_other_row_and_column():
    kept = lattice_indices(24, 24, 144)
    rows = sorted({k // 24 for k in kept})
    cols = sorted({k % 24 for k in kept})
    assert rows == list(range(1, 24, 2)) and cols == list(range(1, 24, 2))


@pytest.mark.parametrize("rows,cols", [(24, 24), (7, 13), (1, 9), (16, 3)])
def test_uniform_keeps_exactly_the_budget_spread_over_the_grid(rows, cols):
    n = rows * cols
    for budget in range(1, n + 1):
        kept = lattice_indices(rows, cols, budget)
        assert len(kept) == len(set(kept)) == budget
        assert list(kept) == sorted(kept) and 0 <= kept[0] and kept[-1] < n
    # Coverage: at a quarter of the grid no cell is far from a kept token.
    budget = max(1, n // 4)
    kept = torch.tensor(lattice_indices(rows, cols, budget))
    cells = torch.stack(torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij"), -1).view(-1, 2).float()
    points = torch.stack((kept // cols, kept % cols), -1).float()
    assert torch.cdist(cells, points).min(1).values.max() <= 2.3


def test_uniform_selection_is_batched():
    signals = Signals.from_tensors((6, 8), ordinal=torch.tensor([0, 1, 0]))
    out = select_uniform(signals, 12, UniformConfig(keep=12))
    assert out.shape == (3, 12)
    assert out[0].tolist() == list(lattice_indices(6, 8, 12)) == out[2].tolist()


def test_random_is_seeded_per_image_and_batch_agnostic():
    config = RandomConfig(keep=10, seed=5)
    batch = Signals.from_tensors((8, 8), ordinal=torch.tensor([0, 1, 0, 2]))
    out = select_random(batch, 10, config)
    assert out.shape == (4, 10)
    for row in out:
        assert len(set(row.tolist())) == 10 and row.min() >= 0 and row.max() < 64
    assert torch.equal(out[0], out[2])  # same ordinal, same seed: same subset
    assert not torch.equal(out[0], out[1])
    alone = select_random(Signals.from_tensors((8, 8), ordinal=torch.tensor([1])), 10, config)
    assert torch.equal(alone[0], out[1])
    other = select_random(batch, 10, RandomConfig(keep=10, seed=6))
    assert not torch.equal(other[0], out[0])


def test_random_is_roughly_uniform():
    """Over many seeds every token is kept about budget/N of the time."""
    hits = torch.zeros(64)
    signals = Signals.from_tensors((8, 8), ordinal=torch.tensor([0]))
    for seed in range(2000):
        hits[select_random(signals, 16, RandomConfig(keep=16, seed=seed))[0]] += 1
    share = hits / 2000
    assert (share - 0.25).abs().max() < 0.05
