"""How a pruned sequence's compacted cache relates to the unpruned sequence.

``generate`` (and any caller) keeps speaking of the unpruned sequence: its attention
mask covers every token of the prompt, its position ids count them all. The cache
holds fewer. This state translates one into the other at every later forward, and it
is kept with the cache object it describes (:class:`CacheMaps`): a later forward
that brings that cache finds it, any other cache is a sequence of its own.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import torch


def cache_length(cache: Any) -> int:
    """Tokens already in a transformers cache (0 for none)."""
    return 0 if cache is None else int(cache.get_seq_length())


@dataclass
class StagePrefix:
    """Attention mask of the cached prompt in the layers from ``start`` on (an in-LLM
    stage: those layers' caches hold only what it kept)."""

    start: int
    mask: torch.Tensor | None  # (B, length); None: all real
    length: int
    shift: torch.Tensor | None = None  # (B,) positions="compact": input id minus this stage's id


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
    stage_prefixes: list[StagePrefix] = field(default_factory=list)  # in-LLM stages, in layer order

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


class CacheMaps:
    """The :class:`SequenceState` of every live cache a pruned forward wrote into.

    Bound when the language model returns (a direct ``model(...)`` call creates its
    cache inside), weakly: a cache that is dropped takes its state with it."""

    def __init__(self) -> None:
        self._states: weakref.WeakKeyDictionary[Any, SequenceState] = weakref.WeakKeyDictionary()

    def bind(self, cache: Any, state: SequenceState) -> None:
        self._states[cache] = state

    def state_of(self, cache: Any) -> SequenceState | None:
        """The state of a cache that already holds a pruned sequence, else ``None``."""
        if cache is None or cache_length(cache) == 0:
            return None
        return self._states.get(cache)

    def clear(self) -> None:
        self._states.clear()


def align_rows(per_row: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-row, per-sample value (R, B) or (B,) over positions (..., B, q)."""
    if per_row.shape == positions.shape[:-1]:
        return per_row[..., None]
    return per_row.reshape(-1, positions.shape[-2])[-1][:, None]


def consecutive_ids(renumber_from: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(..., L) ids renumbered consecutively over each row's real tokens, from the row's
    first real id (padding keeps its id): ``positions="compact"`` on 1-D RoPE."""
    rank = real.long().cumsum(-1) - 1
    first = renumber_from.gather(-1, real.long().argmax(-1, keepdim=True))
    return torch.where(real, first + rank, renumber_from)


def next_id(positions: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(..., ) the id after each row's last real token."""
    return positions.masked_fill(~real, -1).amax(-1) + 1
