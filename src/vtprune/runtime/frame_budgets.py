"""How a video's budget is shared among its frames (``frame_budget``), before the LLM.

A video is one layout unit whose grid stacks ``frames`` equal frame grids (for Qwen a
frame is a temporal patch: two video frames merged by the patch embedding). Stages
before the language model select in each frame on its own; this module gives each
frame its share of the video's budget, for every stage of the run:

* ``"tokens"`` (default): in proportion to the frames' tokens (equal frames get equal
  shares, the remainder to the first ones), as LLaVA-NeXT's base and high-resolution
  grids share an image's budget (:func:`vtprune.config.split_budget`).
* ``"novelty"``: in the spirit of vLLM's EVS (efficient video sampling), a frame that
  repeats the previous one gets less. Token i of frame f >= 1 has the novelty
  ``1 - cos(x[f, i], x[f - 1, i])`` (its LLM-input features against the same position
  of the previous frame); every token of the first frame ranks above all others (3, above
  any novelty). The video's tokens are ranked by novelty, descending, ties in sequence
  order (a stable sort), and a frame's share of a budget B is the number of its tokens
  among the first B. Shares add up to B and never exceed a frame's tokens; a frame
  identical to the previous one gets nothing unless B exceeds the other frames' tokens.

Everything is computed per group of videos with the same frames and grid, vectorised;
the shares become host integers (what stages and groups are sized by) in one transfer
per group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..config import split_budget

if TYPE_CHECKING:
    from ..config import PruneConfig
    from .token_view import TokenView

FIRST_FRAME_NOVELTY = 3.0  # above any 1 - cosine (at most 2): the first frame ranks first


def frame_novelty(features: torch.Tensor, frames: int) -> torch.Tensor:
    """(I, frames * n) novelty of each token of I videos, from their (I, frames * n, D)
    features in frame order (see the module docstring)."""
    videos, tokens, width = features.shape
    per_frame = features.float().view(videos, frames, tokens // frames, width)
    similarity = torch.nn.functional.cosine_similarity(per_frame[:, 1:], per_frame[:, :-1], dim=-1)
    first = torch.full_like(per_frame[:, :1, :, 0], FIRST_FRAME_NOVELTY)
    return torch.cat((first, 1.0 - similarity), dim=1).reshape(videos, tokens)


def novelty_shares(novelty: torch.Tensor, frames: int, budgets: torch.Tensor) -> torch.Tensor:
    """(S, I, frames) shares of budgets (S, I) (S stages' budgets for each of I videos):
    each frame's tokens among the ``budget`` most novel of its video."""
    videos, tokens = novelty.shape
    order = torch.argsort(novelty, dim=1, descending=True, stable=True)
    frame_of = torch.div(order, tokens // frames, rounding_mode="floor")  # (I, tokens), by rank
    ranked = torch.arange(tokens, device=novelty.device)
    taken = (ranked[None, None, :] < budgets[..., None]).long()  # (S, I, tokens)
    shares = torch.zeros(*budgets.shape, frames, dtype=torch.long, device=novelty.device)
    return shares.scatter_add_(2, frame_of.expand_as(taken), taken)


def frame_shares(
    level: "TokenView", config: "PruneConfig", budgets: list[tuple[int, ...]]
) -> dict[int, list[tuple[int, ...]]]:
    """Per unit of ``level`` that stacks several frames: per frame, its share of each
    stage's budget of the unit (``budgets[unit]``, one per stage). ``level`` is the
    language model's input, where every unit still has all its tokens."""
    layout = level.layout
    framed = [u for u, frames in enumerate(layout.frames) if frames > 1]
    if not framed:
        return {}
    if config.frame_budget == "tokens":
        out = {}
        for unit in framed:
            frames = layout.frames[unit]
            rows, cols = layout.grids[unit]
            per_stage = [split_budget(b, [rows // frames * cols] * frames) for b in budgets[unit]]
            out[unit] = list(zip(*per_stage))
        return out
    groups: dict[tuple, list[int]] = {}
    for unit in framed:
        groups.setdefault((layout.frames[unit], layout.grids[unit]), []).append(unit)
    out = {}
    for (frames, _), units in groups.items():
        positions = layout.image_positions(units)
        features = level.features.reshape(-1, level.features.shape[-1])[positions]
        novelty = frame_novelty(features, frames)
        stage_budgets = torch.tensor([budgets[u] for u in units], device=novelty.device).T  # (S, I)
        shares = novelty_shares(novelty, frames, stage_budgets).tolist()  # one transfer per group
        for i, unit in enumerate(units):
            out[unit] = [tuple(shares[s][i][f] for s in range(len(shares))) for f in range(frames)]
    return out
