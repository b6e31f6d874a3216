"""``divprune``: DivPrune, max-min diversity of the kept visual tokens.

Paper: "DivPrune: Diversity-based Visual Token Pruning for Large Multimodal Models",
arXiv 2503.02175 (CVPR 2025; official code: github.com/vbdi/divprune).

Pruning as a max-min diversity problem on the cosine distance (1 - cos) of the LLM
input features: greedily add the token farthest from everything kept so far, which
keeps the set spread over the image's content. Nothing is rebuilt. As in the official
code, the first token is the one whose nearest other token is farthest (the most
isolated), and each later token maximises its minimum distance to the kept set.
"""

from __future__ import annotations

import torch

from ..configs.divprune import DivPruneConfig
from ..signals import Signals
from .greedy import farthest_point_fill
from .scoring import cosine_matrix, keep_all


def most_isolated(similarity: torch.Tensor) -> torch.Tensor:
    """(I,) the token whose most similar *other* token is least similar to it."""
    eye = torch.eye(similarity.shape[-1], dtype=torch.bool, device=similarity.device)
    return similarity.masked_fill(eye, float("-inf")).amax(dim=-1).argmin(dim=1)


def select_divprune(signals: Signals, budget: int, config: DivPruneConfig) -> torch.Tensor:
    n = signals.num_tokens
    if budget >= n:
        return keep_all(signals)
    similarity = cosine_matrix(signals.visual)
    return farthest_point_fill(similarity, most_isolated(similarity)[:, None], budget)
