"""Tensor operations the selection functions share: cosines, prompt vectors, normalisation.

All of them are batched over the I images of a group and compute in float32, so that
bf16 / fp16 inputs rank tokens as float32 inputs would.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config import round_half_up  # noqa: F401 - the selection code's rounding, beside its other helpers
from ..signals import Signals

_EPS = 1e-12


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 with every vector along the last axis scaled to length 1."""
    return F.normalize(x.float(), dim=-1, eps=_EPS)


def cosine_matrix(x: torch.Tensor) -> torch.Tensor:
    """(I, N, D) -> (I, N, N) float32 cosine similarity between every pair of tokens."""
    unit = unit_rows(x)
    return unit @ unit.transpose(1, 2)


def prompt_vector(text_embeds: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """(I, T, D), (I, T) -> (I, D): mean of each image's real (unpadded) instruction embeddings."""
    weights = text_mask.float()
    total = (text_embeds.float() * weights[..., None]).sum(dim=1)
    return total / weights.sum(dim=1, keepdim=True).clamp(min=1.0)


def prompt_relevance(visual: torch.Tensor, text_embeds: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """(I, N) cosine between each visual token and the mean of its prompt's embeddings."""
    prompt = unit_rows(prompt_vector(text_embeds, text_mask))
    return (unit_rows(visual) * prompt[:, None, :]).sum(dim=-1)


def signal_prompt_relevance(signals: Signals) -> torch.Tensor:
    """:func:`prompt_relevance` over a stage's declared ``visual`` and ``text_embeds``."""
    return prompt_relevance(signals.visual, signals["text_embeds"], signals["text_mask"])


def minmax(scores: torch.Tensor) -> torch.Tensor:
    """Each image's scores (last axis) rescaled to [0, 1]; a constant row becomes zeros."""
    scores = scores.float()
    low = scores.amin(dim=-1, keepdim=True)
    span = scores.amax(dim=-1, keepdim=True) - low
    return torch.where(span > 0, (scores - low) / span.clamp(min=_EPS), torch.zeros_like(scores))


def keep_all(signals: Signals) -> torch.Tensor:
    """(I, N) every current token: what a stage returns when its budget covers them all."""
    n = signals.num_tokens
    return torch.arange(n, device=signals.device).expand(signals.num_images, n)


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(I, N, D) gathered at (I, k) token indices -> (I, k, D)."""
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


def floor_count(x: float) -> int:
    """``floor(x)`` of a non-negative token count computed in floating point, tolerant of
    representation error (0.29 * 100 is 28.999...96, meant as 29)."""
    return math.floor(x + 1e-9)
