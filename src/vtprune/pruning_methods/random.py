"""``random``: a uniformly random subset of each image's tokens, seeded.

The baseline every pruning paper reports against. The draw is a counter-based hash of
(seed, image ordinal in its prompt, token index), so it is vectorised, identical on
CPU and GPU, and an image gets the same subset alone or inside any batch.
"""

from __future__ import annotations

import torch

from ..configs.random import RandomConfig
from ..signals import Signals

_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for x in [0, 2**32) without int64 overflow: split c in halves."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _MASK32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixer (lowbias32) over an int64 tensor; values in [0, 2**32)."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def random_scores(token_index: torch.Tensor, ordinal: torch.Tensor, seed: int) -> torch.Tensor:
    """(I, N) pseudo-random int64 scores, a pure function of (seed, ordinal, token index)."""
    key = hash32(torch.full_like(ordinal, seed & _MASK32) ^ hash32(ordinal + 0x9E3779B9))
    return hash32(hash32(token_index) ^ key[:, None])


def select_random(signals: Signals, budget: int, config: RandomConfig) -> torch.Tensor:
    scores = random_scores(signals.token_index, signals.ordinal, config.seed)
    return scores.topk(budget, dim=1).indices
