"""Where transformers releases differ, in one place: vtprune supports all of 5.x.

Each shim names what changed and answers for the installed release; callers never
test versions themselves.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Mapping

import torch
from torch import nn


@functools.cache
def _mask_parameters() -> frozenset[str]:
    from transformers.masking_utils import create_causal_mask

    return frozenset(inspect.signature(create_causal_mask).parameters)


# transformers 5.24 renamed ``past_key_values`` to ``cache`` in every ``forward``, decoder
# layer, output and in ``create_causal_mask``; ``forward`` still accepts the old name
# (with a warning) and outputs still answer to it, but a hook that reads a layer's
# keyword arguments sees only the name the model itself passes.
def cache_argument() -> str:
    """The KV cache's keyword under the installed transformers."""
    return "cache" if "cache" in _mask_parameters() else "past_key_values"


def cache_in(arguments: Mapping[str, Any]) -> Any:
    """The cache among a call's keyword arguments, under either name (None: no cache)."""
    cache = arguments.get("cache")
    return cache if cache is not None else arguments.get("past_key_values")


def cache_of(output: Any) -> Any:
    """The cache a model output returns."""
    return getattr(output, cache_argument(), None)


def masks_per_layer() -> bool:
    """Whether transformers can size a causal mask to one layer's cache (5.14+), which
    pruning inside the language model needs (layers after a stage hold fewer tokens)."""
    return "layer_idx" in _mask_parameters()


def vision_model(tower: nn.Module) -> nn.Module:
    """A CLIP / SigLIP tower's transformer (nested as ``vision_model`` in older releases)."""
    return getattr(tower, "vision_model", tower)


def mrope_section(text_config: Any) -> list[int]:
    """Qwen2-VL's M-RoPE split of the head dimension (``rope_scaling`` in older releases)."""
    parameters = getattr(text_config, "rope_parameters", None) or getattr(text_config, "rope_scaling", None) or {}
    return list(parameters["mrope_section"])


def vision_window_index(visual: nn.Module, grid_thw: torch.Tensor) -> torch.Tensor:
    """Qwen2.5-VL's ViT token order (attention windows): a method of the tower in older
    releases, a function of ``transformers.vision_utils`` since."""
    if hasattr(visual, "get_window_index"):
        return visual.get_window_index(grid_thw)[0]
    from transformers.vision_utils import get_vision_window_index

    return get_vision_window_index(grid_thw, visual.spatial_merge_size, visual.window_size, visual.patch_size)[0]
