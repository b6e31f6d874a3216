"""Compaction on hand-built keep masks: right-aligned rows, masks, positions."""

from __future__ import annotations

import torch

from vtprune.runtime.compaction import plan_compaction


def test_rows_are_right_aligned_with_new_left_padding():
    keep = torch.tensor(
        [
            [1, 1, 0, 1, 0, 1],  # 4 kept
            [0, 1, 1, 1, 1, 1],  # 5 kept
            [1, 0, 0, 0, 0, 1],  # 2 kept
        ],
        dtype=torch.bool,
    )
    plan = plan_compaction(keep)
    assert plan.length == 5 and plan.removed
    assert plan.valid.tolist() == [
        [False, True, True, True, True],
        [True, True, True, True, True],
        [False, False, False, True, True],
    ]
    assert plan.index[plan.valid].tolist() == [0, 1, 3, 5, 1, 2, 3, 4, 5, 0, 5]

    values = torch.arange(18.0).view(3, 6, 1).expand(3, 6, 2)
    out = plan.gather(values, seq_dim=1)
    assert out.shape == (3, 5, 2)
    assert out[1, :, 0].tolist() == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert out[2, -2:, 1].tolist() == [12.0, 17.0]

    mask = torch.tensor([[0, 1, 1, 1, 1, 1], [1] * 6, [1] * 6])
    # Row 0 keeps its original padding (position 0) behind one new pad.
    assert plan.mask(mask).tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 1, 1]]
    assert plan.mask(None).tolist() == plan.valid.long().tolist()


def test_multi_row_positions_gather_on_the_last_dim():
    keep = torch.tensor([[1, 0, 1, 1], [1, 1, 1, 0]], dtype=torch.bool)
    plan = plan_compaction(keep)
    positions = torch.stack([torch.arange(4).expand(2, 4) + 10 * r for r in range(3)])  # (3, B, L)
    out = plan.gather(positions, seq_dim=-1)
    assert out.shape == (3, 2, 3)
    assert out[:, 0].tolist() == [[0, 2, 3], [10, 12, 13], [20, 22, 23]]
    assert out[:, 1].tolist() == [[0, 1, 2], [10, 11, 12], [20, 21, 22]]


def test_keep_everything_is_the_identity():
    keep = torch.ones(2, 5, dtype=torch.bool)
    plan = plan_compaction(keep)
    assert not plan.removed and plan.length == 5
    assert plan.index.tolist() == [list(range(5))] * 2
    assert plan.mask(None) is None
    x = torch.randn(2, 5, 3)
    assert torch.equal(plan.gather(x, 1), x)


def test_reordered_moves_the_tokens_not_the_slots():
    keep = torch.tensor([[1, 1, 0, 1, 1], [1, 0, 1, 1, 1]], dtype=torch.bool)
    plan = plan_compaction(keep)
    # Row 0: the tokens at 1 and 4 swap places; row 1: 2, 3, 4 rotate.
    destinations, sources = torch.tensor([4, 1, 7, 8, 9]), torch.tensor([1, 4, 8, 9, 7])
    moved = plan.reordered((destinations, sources), 5)
    values = torch.arange(10).view(2, 5)
    assert moved.gather(values, -1).tolist() == plan.gather(values, -1).tolist() == [[0, 1, 3, 4], [5, 7, 8, 9]]
    assert moved.gather_tokens(values, -1).tolist() == [[0, 4, 3, 1], [5, 8, 9, 7]]
    assert plan.reordered(None, 5) is plan and torch.equal(plan.gather_tokens(values, -1), plan.gather(values, -1))
