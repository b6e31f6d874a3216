"""A tiny LLaVA-1.5 and its fake prompt images: a fixed square grid per image."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..fake_batch import IMAGE, Image, ImageTokens, pixel_dtype
from ..tiny import DEFAULT_LAYERS, PAD_ID, finish


def tiny_llava(
    seed: int = 0, dtype: torch.dtype = torch.float32, *, grid: int = 8, layers: int = DEFAULT_LAYERS, attn: str = "sdpa"
) -> nn.Module:
    """A LlavaForConditionalGeneration with a ``grid`` x ``grid`` token grid per image.
    The same seed gives the same weights whatever the attention implementation."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    patch = 4
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=grid * patch, patch_size=patch, projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, pad_token_id=PAD_ID,
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=255, vision_feature_layer=-2,
        vision_feature_select_strategy="default", projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration._from_config(config, attn_implementation=attn)
    return finish(model, seed, dtype)


def image_tokens(model: nn.Module, part: Image, gen: torch.Generator, images_in_prompt: int) -> ImageTokens:
    """The tower's fixed grid of placeholders over one square of random pixels."""
    config = model.config
    vision = config.vision_config
    side = vision.image_size // vision.patch_size
    pixels = torch.randn(3, vision.image_size, vision.image_size, generator=gen)
    return ImageTokens([config.image_token_id] * side * side, [0] * side * side, pixels)


def batch_inputs(
    model: nn.Module, images: Sequence[ImageTokens], per_prompt: Sequence[int], token_types: torch.Tensor
) -> dict[str, torch.Tensor]:
    if not images:
        return {}
    return {"pixel_values": torch.stack([i.pixels for i in images]).to(pixel_dtype(model))}


def bench_image(model: nn.Module, grid: tuple[int, int]) -> Image:
    return IMAGE  # the tower's grid is fixed
