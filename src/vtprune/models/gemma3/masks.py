"""The mask dict Gemma 3's language model takes, rebuilt for the tokens it is given.

Gemma 3's core turns the 2-D padding mask into one mask per layer type before its
language model runs: ``full_attention`` (causal) and ``sliding_attention`` (causal
within ``sliding_window`` tokens), each with bidirectional attention inside every
image block when ``token_type_ids`` are given (a run of image tokens attends to all of
itself). Built for the unpruned prompt, those masks have the wrong length once tokens
are dropped, so the runtime hands the adapter the compacted 2-D mask and the adapter
builds them again here, with the model's own mask builder, over the kept tokens: an
image block is then the run of its kept tokens, and the window counts kept tokens, as
it would for a language model given only those.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch


def mask_builder(model_class: type) -> Any:
    """The model class's ``create_masks_for_generate`` (what ``generate`` and the core
    build Gemma 3's masks with), and the keyword names it takes."""
    build = getattr(model_class, "create_masks_for_generate")
    return build, set(inspect.signature(build).parameters)


def layer_masks(
    build: Any,
    parameters: set[str],
    text_config: Any,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor | None,
    past_key_values: Any,
    position_ids: torch.Tensor | None,
    token_type_ids: torch.Tensor | None,
) -> Any:
    """The masks per layer type for ``inputs_embeds`` over the cache and this chunk
    (``attention_mask``), image blocks where ``token_type_ids`` is 1 (``None``: plain
    causal masks, as the core builds them for a forward without image tokens)."""
    arguments = dict(
        config=text_config, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
        past_key_values=past_key_values, position_ids=position_ids, token_type_ids=token_type_ids,
        is_first_iteration=token_type_ids is not None,
    )
    if "cache_position" in parameters:  # transformers releases that still take it
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        arguments["cache_position"] = torch.arange(past, past + inputs_embeds.shape[1], device=inputs_embeds.device)
    return build(**{k: v for k, v in arguments.items() if k in parameters})
