"""A tiny Gemma 3 and its fake prompt images: one fixed token grid per image, between
the start- and end-of-image markers, typed 1 at the placeholders."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..fake_batch import IMAGE, Image, ImageTokens, pixel_dtype
from ..tiny import DEFAULT_LAYERS, PAD_ID, finish

# Marker ids of the tiny model's vocabulary (random text is drawn below 240; the real
# tokenizer's <start_of_image>, <end_of_image> and <image_soft_token> are 255999,
# 256000 and 262144).
BOI_ID, EOI_ID, IMAGE_ID = 253, 254, 255


def tiny_gemma3(
    seed: int = 0, dtype: torch.dtype = torch.float32, *, layers: int = DEFAULT_LAYERS, attn: str = "sdpa",
    sliding_window: int = 8, pattern: int = 3,
) -> nn.Module:
    """A Gemma3ForConditionalGeneration: a two-layer SigLIP tower over 32 px images of
    4 px patches (8 x 8), pooled 2 x 2 into 16 tokens, and a Gemma 3 decoder whose every
    ``pattern``-th layer is global, the others sliding-window layers of
    ``sliding_window`` tokens (short, so that the tests' prompts exceed it)."""
    import transformers as tf

    vision = tf.SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=4,
    )
    layer_types = ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(layers)]
    text = tf.Gemma3TextConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16, max_position_embeddings=4096,
        sliding_window=sliding_window, layer_types=layer_types, pad_token_id=PAD_ID,
        rope_parameters={
            "full_attention": {"rope_type": "linear", "rope_theta": 1000000.0, "factor": 8.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        },
    )
    config = tf.Gemma3Config(
        vision_config=vision, text_config=text, mm_tokens_per_image=16, boi_token_index=BOI_ID,
        eoi_token_index=EOI_ID, image_token_index=IMAGE_ID,
    )
    torch.manual_seed(seed)
    model = tf.Gemma3ForConditionalGeneration._from_config(config, attn_implementation=attn)
    return finish(model, seed, dtype)


def image_ids(tokens: int, image_id: int = IMAGE_ID) -> list[int]:
    """An image's prompt tokens as the Gemma 3 processor writes them (its blank lines
    around the markers are text and left out)."""
    return [BOI_ID] + [image_id] * tokens + [EOI_ID]


def image_tokens(model: nn.Module, part: Image, gen: torch.Generator, images_in_prompt: int) -> ImageTokens:
    """The markers and the fixed grid of placeholders (typed 1) over one square of
    random pixels."""
    config = model.config
    ids = image_ids(int(config.mm_tokens_per_image), int(config.image_token_id))
    size = config.vision_config.image_size
    pixels = torch.randn(3, size, size, generator=gen)
    return ImageTokens(ids, [int(i == config.image_token_id) for i in ids], pixels)


def batch_inputs(
    model: nn.Module, images: Sequence[ImageTokens], per_prompt: Sequence[int], token_types: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The images' pixels and the prompts' ``token_type_ids`` (Gemma 3's image blocks)."""
    if not images:
        return {"token_type_ids": token_types}
    return {"pixel_values": torch.stack([i.pixels for i in images]).to(pixel_dtype(model)), "token_type_ids": token_types}


def bench_image(model: nn.Module, grid: tuple[int, int]) -> Image:
    return IMAGE  # the tower's grid is fixed
