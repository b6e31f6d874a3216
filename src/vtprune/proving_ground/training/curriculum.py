"""A curriculum on how many visual tokens the language model sees.

A language model trained from scratch on 576 visual tokens per question learns only
answer priors for thousands of steps: the few tokens of the object a question names
get ~1/150 of the attention, so the gradient that would teach it to look there is
faint. Early steps therefore show it a subset of each image's tokens: every token
of an object or tile, filled up to ``tokens`` with random background tokens, all at
their own positions (as a pruned prompt). The subset grows to all 576, after which
the model trains, and is used, on whole images. Short sequences also make the early
steps several times cheaper.
"""

from __future__ import annotations

import torch

from ..scenes import GRID


def visible_tokens(step: int, start: int, hold: int, ramp: int) -> int:
    """Visual tokens per image at ``step``: ``start`` for ``hold`` steps, then growing
    linearly to all of them over ``ramp`` steps."""
    total = GRID * GRID
    if step < hold:
        return min(start, total)
    if step >= hold + ramp:
        return total
    return min(total, round(start + (total - start) * (step - hold) / ramp))


def choose_visual_tokens(patch_targets: torch.Tensor, tokens: int, generator: torch.Generator) -> torch.Tensor | None:
    """(B, tokens) sorted indices: object and tile tokens first, then random background.

    ``patch_targets`` (B, 576, k) marks object and tile tokens by a non-zero label.
    Returns None when ``tokens`` covers the whole image.
    """
    total = patch_targets.shape[1]
    if tokens >= total:
        return None
    occupied = (patch_targets > 0).any(dim=-1).float()
    # Occupied tokens outrank every background token; random order within each group.
    score = occupied + torch.rand(occupied.shape, generator=generator) * 0.5
    return score.topk(tokens, dim=1).indices.sort(dim=1).values
