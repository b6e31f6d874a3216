"""The novelty allocation of a video's budget among its frames (``frame_budget="novelty"``),
on hand-built frames whose right shares are known."""

from __future__ import annotations

import torch

from vtprune.runtime.frame_budgets import frame_novelty, novelty_shares


def test_novelty_ranks_first_frame_then_changed_tokens():
    """Hand-built frames: frame 1 repeats frame 0 except token 2 (orthogonal: novelty 1);
    frame 2 is frame 1 negated (novelty 2). The first frame ranks first, then frame 2,
    then frame 1's changed token, then its repeated ones."""
    base = torch.eye(4)[:3]  # three tokens of frame 0: e0, e1, e2
    frame1 = base.clone()
    frame1[2] = torch.tensor([0.0, 0.0, 0.0, 1.0])
    frame2 = -frame1
    features = torch.cat((base, frame1, frame2))[None]  # (1, 9, 4)
    novelty = frame_novelty(features, 3)
    torch.testing.assert_close(novelty, torch.tensor([[3.0, 3, 3, 0, 0, 1, 2, 2, 2]]))
    budgets = torch.tensor([[1, 3, 4, 6, 7, 9]]).T  # (S, I)
    shares = novelty_shares(novelty, 3, budgets)[:, 0].tolist()
    assert shares == [[1, 0, 0], [3, 0, 0], [3, 0, 1], [3, 0, 3], [3, 1, 3], [3, 3, 3]]


def test_novelty_ties_go_in_sequence_order_and_videos_are_independent():
    features = torch.ones(2, 8, 3)  # every frame repeats the first: novelty 0 after it
    features[1, 4:] = -1.0  # second video: its frames 2 and 3 negated (frame 2: novelty 2)
    novelty = frame_novelty(features, 4)
    shares = novelty_shares(novelty, 4, torch.tensor([[5, 5]])).tolist()
    # Video 0: the first frame, then the ties in order (frame 1's two, frame 2's first).
    # Video 1: the first frame, frame 2, then frame 1's first token.
    assert shares == [[[2, 2, 1, 0], [2, 1, 2, 0]]]
