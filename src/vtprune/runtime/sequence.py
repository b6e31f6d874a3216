"""How a pruned sequence's compacted cache relates to the unpruned sequence.

``generate`` (and any caller) keeps speaking of the unpruned sequence: its attention
mask covers every token of the prompt, its position ids count them all. The cache
holds fewer. This state translates one into the other at every later forward.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch


def cache_length(cache: Any) -> int:
    """Tokens already in a transformers cache (0 for none)."""
    return 0 if cache is None else int(cache.get_seq_length())


@dataclass
class SequenceState:
    """How the cache of a pruned sequence relates to the unpruned sequence.

    The first ``full_len`` tokens of the unpruned sequence sit in the first
    ``compact_len`` cache slots, with attention mask ``prefix`` (``None``: all ones).
    Every later token (decoded, or a chunk with no images) takes one slot each.
    """

    full_len: int
    compact_len: int
    prefix: torch.Tensor | None
    next_position: torch.Tensor  # original-space id of the next token, per position row
    shift: torch.Tensor | None  # positions="compact": original id minus compact id
    cache_ref: Any = None

    def covers(self, cache: Any) -> bool:
        """Whether ``cache`` is the one this state describes. The first cache seen after
        the prefill is adopted (a direct ``model(...)`` call creates its cache inside)."""
        if cache is None:
            return False
        if self.cache_ref is None:
            self.cache_ref = weakref.ref(cache)
            return True
        return self.cache_ref() is cache

    def tokens_before(self, past_len: int) -> int:
        """Unpruned tokens before a forward whose cache holds ``past_len`` slots."""
        return self.full_len + past_len - self.compact_len

    def cache_mask(self, mask: torch.Tensor | None, past_len: int, length: int) -> torch.Tensor | None:
        """The attention mask over the compacted cache plus ``length`` new tokens,
        from the caller's mask over the unpruned sequence (or ``None``)."""
        new = past_len - self.compact_len + length  # slots after the pruned prefix
        if mask is None:
            if self.prefix is None:
                return None
            return torch.cat((self.prefix, self.prefix.new_ones(self.prefix.shape[0], new)), dim=1)
        tail = mask[:, self.full_len :]
        if tail.shape[1] != new:
            raise RuntimeError(
                f"attention_mask covers {mask.shape[1]} tokens, but the pruned sequence has "
                f"{self.tokens_before(past_len) + length}: the cache and the mask do not belong "
                "to the same sequence"
            )
        prefix = self.prefix if self.prefix is not None else mask.new_ones(mask.shape[0], self.compact_len)
        return torch.cat((prefix.to(mask.dtype), tail), dim=1)


def align_rows(per_row: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-row, per-sample value (R, B) or (B,) over positions (..., B, q)."""
    if per_row.shape == positions.shape[:-1]:
        return per_row[..., None]
    return per_row.reshape(-1, positions.shape[-2])[-1][:, None]
