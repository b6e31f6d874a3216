"""A tiny InternVL model and its fake prompt images: an image of a given size becomes the
tiles (and thumbnail) InternVL's processor would cut it into, each tile's placeholders
between ``<img>`` and ``</img>`` markers, as the processor writes them."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..fake_batch import Image, ImageTokens, pixel_dtype
from ..tiny import DEFAULT_LAYERS, PAD_ID, finish
from .tiling import tile_count, tile_layout

IMAGE_TOKEN_ID = 250  # IMG_CONTEXT
IMAGE_START_ID, IMAGE_END_ID = 251, 252  # <img>, </img>: text tokens, never pruned
TILE = 48  # pixels per tile side (448 in InternVL3)
PATCH = 4  # 12 x 12 patches per tile, pixel-shuffled to 6 x 6 tokens
MAX_TILES = 12  # the processor's max_patches (InternVL3's)


def tiny_internvl(
    seed: int = 0, dtype: torch.dtype = torch.float32, *, layers: int = DEFAULT_LAYERS, attn: str = "sdpa",
    feature_layer: int = -1, text: str = "qwen2",
) -> nn.Module:
    """An InternVLForConditionalGeneration: a 2-layer InternViT with a CLS token and q/k
    norms on 48 px tiles (36 tokens each after pixel shuffle), reading the layer
    ``feature_layer`` (-1 as InternVL3 does), and a Qwen2 (or ``text="qwen3"``) decoder."""
    import transformers as tf

    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=TILE,
        patch_size=PATCH, use_qk_norm=True, attention_bias=True,
    )
    language = dict(
        model_type=text, vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096, pad_token_id=PAD_ID,
    )
    tokens = (TILE // PATCH // 2) ** 2
    config = tf.InternVLConfig(
        vision_config=vision, text_config=language, image_token_id=IMAGE_TOKEN_ID, image_seq_length=tokens,
        downsample_ratio=0.5, vision_feature_layer=feature_layer, vision_feature_select_strategy="default",
        projector_hidden_act="gelu", tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = tf.InternVLForConditionalGeneration._from_config(config, attn_implementation=attn)
    return finish(model, seed, dtype)


def tiles_of(size: tuple[int, int], tile: int = TILE) -> int:
    """Tiles (thumbnail included) InternVL's processor cuts an image of ``size``
    (height, width) into, for tiles of ``tile`` pixels."""
    return tile_count(*tile_layout(size[0], size[1], (tile, tile), 1, MAX_TILES))


def image_tokens(model: nn.Module, part: Image, gen: torch.Generator, images_in_prompt: int) -> ImageTokens:
    """``<img>``, the placeholders of every tile, ``</img>``, and random pixels per tile."""
    if part.size is None:
        raise ValueError("an InternVL image needs its size: Image(size=(height, width))")
    config = model.config
    tile = int(config.vision_config.image_size[0])
    tiles = tiles_of(part.size, tile)
    tokens = tiles * int(config.image_seq_length)
    pixels = torch.randn(tiles, 3, tile, tile, generator=gen)
    ids = [IMAGE_START_ID] + [config.image_token_id] * tokens + [IMAGE_END_ID]
    return ImageTokens(ids, [0] + [1] * tokens + [0], pixels, tiles)


def batch_inputs(
    model: nn.Module, images: Sequence[ImageTokens], per_prompt: Sequence[int], token_types: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Every image's tiles, one row each, in prompt order (as the processor returns them)."""
    if not images:
        return {}
    return {"pixel_values": torch.cat([i.pixels for i in images]).to(pixel_dtype(model))}


def bench_image(model: nn.Module, grid: tuple[int, int]) -> Image:
    """A picture of about ``grid`` (rows, cols) tokens' worth of pixels (a token covers
    2 x 2 patches), tiled as the processor tiles it."""
    cell = int(model.config.vision_config.patch_size[0]) * 2
    return Image(size=(grid[0] * cell, grid[1] * cell))
