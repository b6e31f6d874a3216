"""Greedy farthest-point selection by cosine similarity, batched over images.

Each step adds, for every image at once, the token whose *largest* similarity to the
tokens already kept is smallest (max-min diversity on cosine distance 1 - cos). The
running maximum is one tensor update per step, so a step costs O(I * N).
"""

from __future__ import annotations

import torch


def farthest_point_fill(similarity: torch.Tensor, seeds: torch.Tensor, count: int) -> torch.Tensor:
    """Extend ``seeds`` (I, s) to ``count`` tokens per image by farthest-point steps.

    similarity: (I, N, N) symmetric float32 cosine similarity of the tokens.
    Returns (I, count): the seeds first, then the added tokens in the order chosen.
    """
    num_images, n, _ = similarity.shape
    count = min(count, n)
    rows = torch.arange(num_images, device=similarity.device)
    kept = torch.zeros(num_images, n, dtype=torch.bool, device=similarity.device)
    kept[rows[:, None], seeds] = True
    # closest[i, j]: largest similarity of token j to any kept token of image i
    closest = similarity.masked_fill(~kept[:, None, :], float("-inf")).amax(dim=-1)
    picks = [seeds]
    for _ in range(count - seeds.shape[1]):
        token = closest.masked_fill(kept, float("inf")).argmin(dim=1)
        picks.append(token[:, None])
        kept[rows, token] = True
        closest = torch.maximum(closest, similarity[rows, token])
    return torch.cat(picks, dim=1)
