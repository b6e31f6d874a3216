"""A tiny Mistral 3 model and its fake prompt images: a token grid of any size, each
row of image placeholders closed by a break token, the image by an end token."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..fake_batch import Image, ImageTokens, pixel_dtype
from ..tiny import DEFAULT_LAYERS, PAD_ID, finish

# Token ids of the tiny model's image markers, outside the random text ids (the real
# tokenizer's [IMG], [IMG_BREAK] and [IMG_END] are 10, 12 and 13).
IMAGE_ID, IMAGE_BREAK_ID, IMAGE_END_ID = 250, 251, 252


def tiny_mistral3(
    seed: int = 0, dtype: torch.dtype = torch.float32, *, layers: int = DEFAULT_LAYERS, attn: str = "sdpa",
    sliding_window: int | None = None, feature_layer: int = -1,
) -> nn.Module:
    """A Mistral3ForConditionalGeneration: a two-layer Pixtral tower with 4-pixel
    patches (an LLM token is 8 x 8 pixels after the 2x2 merger) and a Mistral decoder,
    full attention unless ``sliding_window`` is given."""
    import transformers as tf

    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=128,
        patch_size=4, hidden_act="silu", rope_parameters={"rope_type": "axial", "rope_theta": 10000.0},
    )
    text = dict(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=4096, sliding_window=sliding_window,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, pad_token_id=PAD_ID,
    )
    config = tf.Mistral3Config(
        vision_config=tf.PixtralVisionConfig(**vision), text_config=tf.MistralConfig(**text),
        image_token_index=IMAGE_ID, spatial_merge_size=2, vision_feature_layer=feature_layer,
        projector_hidden_act="gelu", multimodal_projector_bias=False, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = tf.Mistral3ForConditionalGeneration._from_config(config, attn_implementation=attn)
    return finish(model, seed, dtype)


def token_cell(model: nn.Module) -> int:
    """Pixels per LLM token side: patch size times the merge."""
    return int(model.config.vision_config.patch_size) * int(model.config.spatial_merge_size)


def image_ids(rows: int, cols: int, image_id: int, break_id: int, end_id: int) -> list[int]:
    """An image's prompt tokens as the Pixtral processor writes them: each row of
    ``cols`` image tokens and a break, the last break replaced by the end token."""
    ids = ([image_id] * cols + [break_id]) * rows
    ids[-1] = end_id
    return ids


def image_tokens(model: nn.Module, part: Image, gen: torch.Generator, images_in_prompt: int) -> ImageTokens:
    """Random pixels for a ``part.rows`` x ``part.cols`` token grid, its placeholders,
    breaks and end token (typed 1 at the placeholders), and its (height, width)."""
    if part.rows < 1 or part.cols < 1:
        raise ValueError("a Mistral 3 image needs its token grid: Image(rows, cols)")
    cell = token_cell(model)
    height, width = part.rows * cell, part.cols * cell
    pixels = torch.randn(3, height, width, generator=gen)
    ids = image_ids(part.rows, part.cols, model.config.image_token_id, IMAGE_BREAK_ID, IMAGE_END_ID)
    types = [int(i == model.config.image_token_id) for i in ids]
    return ImageTokens(ids, types, pixels, [height, width])


def batch_inputs(
    model: nn.Module, images: Sequence[ImageTokens], per_prompt: Sequence[int], token_types: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The images padded at the bottom and right to the largest (as the Pixtral image
    processor pads a batch), with their sizes."""
    if not images:
        return {}
    height = max(i.extra[0] for i in images)
    width = max(i.extra[1] for i in images)
    pixels = torch.zeros(len(images), 3, height, width)
    for n, image in enumerate(images):
        pixels[n, :, : image.extra[0], : image.extra[1]] = image.pixels
    return {"pixel_values": pixels.to(pixel_dtype(model)), "image_sizes": torch.tensor([i.extra for i in images])}


def bench_image(model: nn.Module, grid: tuple[int, int]) -> Image:
    return Image(*grid)
