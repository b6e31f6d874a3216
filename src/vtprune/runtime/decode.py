"""A later forward of a pruned sequence: the caller's terms mapped onto the compacted cache.

The caller (``generate``, or a hand-written loop) speaks of the unpruned sequence: its
attention mask covers every prompt token, its position ids count them all. The cache
holds the compacted prompt. Two steps translate, each read top to bottom:

* :func:`continuation_positions`, at the multimodal core: a forward that gives no
  position ids gets the unpruned ones (the model would count the compacted cache and
  place the new tokens too early);
* :func:`decode_step`, at the language model: the attention mask over the compacted
  cache, the positions shifted where ``positions="compact"`` renumbered the prompt,
  and the in-LLM stages' per-layer masks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .layer_stages import LayerStages
from .sequence import SequenceState, align_rows

if TYPE_CHECKING:
    from .adapter_protocol import FamilyAdapter


def continuation_positions(
    adapter: "FamilyAdapter", state: SequenceState, tokens: torch.Tensor, past_len: int
) -> torch.Tensor:
    """The unpruned position ids of ``tokens`` (B, L[, D]) that continue ``state``."""
    length = tokens.shape[1]
    offset = past_len - state.compact_len
    steps = torch.arange(offset, offset + length, device=state.next_position.device)
    positions = state.next_position[..., None] + steps
    if positions.dim() == 2 and adapter.position_rows > 1:
        positions = positions.expand(adapter.position_rows, -1, -1)
    return positions


def decode_step(
    kwargs: dict,
    state: SequenceState,
    mask: torch.Tensor | None,
    past_len: int,
    length: int,
    layer_stages: LayerStages | None,
) -> dict:
    """The language model's arguments for a forward with no new images."""
    kwargs = dict(kwargs)
    full_mask = state.cache_mask(mask, past_len, length)
    kwargs["attention_mask"] = full_mask
    if layer_stages is not None:
        new = past_len - state.compact_len + length
        tail = None if full_mask is None else full_mask[:, state.compact_len :]
        layer_stages.begin_decode(state.stage_prefixes, tail, new)
    positions = kwargs.get("position_ids")
    if positions is not None and state.shift is not None:
        kwargs["position_ids"] = positions - align_rows(state.shift, positions)
    if kwargs.get("cache_position") is not None:  # transformers releases that still pass it
        kwargs["cache_position"] = torch.arange(past_len, past_len + length, device=kwargs["cache_position"].device)
    return kwargs
