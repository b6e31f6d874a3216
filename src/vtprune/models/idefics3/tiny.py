"""A tiny Idefics3 and a tiny SmolVLM, and their fake prompt images.

A fake image ``Image(rows, cols)`` is split into rows x cols sub-images plus its global
image (``Image()``: the global image alone, an image the processor does not split),
written between the processor's markers, with random pixels per sub-image. The
prompts' ``pixel_values`` are (prompts, most sub-images, 3, S, S), padded with all-zero
images, with their ``pixel_attention_mask``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..fake_batch import Image, ImageTokens, pixel_dtype
from ..tiny import DEFAULT_LAYERS, PAD_ID, finish

# Marker ids of the tiny models' vocabulary (random text is drawn below 240).
ROW_COL = 240  # <row_r_col_c>: ROW_COL + (r - 1) * MAX_COLS + (c - 1)
MAX_COLS = 4
NEWLINE = 252
GLOBAL_IMG = 253
FAKE_AROUND = 254  # <fake_token_around_image>
IMAGE_ID = 255
MAX_SUB_IMAGES = (NEWLINE - ROW_COL)  # 3 rows x 4 columns


def _config(config_class, vision_class, text_class, layers: int, scale: int, patch: int, image_size: int):
    vision = vision_class(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=image_size, patch_size=patch,
    )
    text = text_class(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, pad_token_id=PAD_ID,
    )
    return config_class(
        vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_id=IMAGE_ID,
        scale_factor=scale, pad_token_id=PAD_ID,
    )


def tiny_idefics3(
    seed: int = 0, dtype: torch.dtype = torch.float32, *, layers: int = DEFAULT_LAYERS, attn: str = "sdpa",
    scale: int = 2,
) -> nn.Module:
    """An Idefics3ForConditionalGeneration: 16 px sub-images of 2 px patches (8 x 8),
    pixel-shuffled by ``scale`` (2: 4 x 4 tokens per sub-image), a Llama decoder."""
    import transformers as tf

    config = _config(tf.Idefics3Config, tf.Idefics3VisionConfig, tf.LlamaConfig, layers, scale, 2, 16)
    torch.manual_seed(seed)
    model = tf.Idefics3ForConditionalGeneration._from_config(config, attn_implementation=attn)
    return finish(model, seed, dtype)


def tiny_smolvlm(
    seed: int = 0, dtype: torch.dtype = torch.float32, *, layers: int = DEFAULT_LAYERS, attn: str = "sdpa",
    scale: int = 3,
) -> nn.Module:
    """A SmolVLMForConditionalGeneration: 18 px sub-images of 2 px patches (9 x 9),
    pixel-shuffled by ``scale`` (3, as SmolVLM: 3 x 3 tokens per sub-image)."""
    import transformers as tf

    config = _config(tf.SmolVLMConfig, tf.SmolVLMVisionConfig, tf.LlamaConfig, layers, scale, 2, 18)
    torch.manual_seed(seed)
    model = tf.SmolVLMForConditionalGeneration._from_config(config, attn_implementation=attn)
    return finish(model, seed, dtype)


def image_ids(rows: int, cols: int, per_unit: int, image_id: int = IMAGE_ID) -> tuple[list[int], list[int]]:
    """The processor's prompt for an image of rows x cols sub-images (0 x 0: not split)
    and whether each id is an image placeholder (``image_id``)."""
    if rows * cols > MAX_SUB_IMAGES or cols > MAX_COLS:
        raise ValueError(f"the tiny models have markers for up to 3 x {MAX_COLS} sub-images; got {rows} x {cols}")
    ids: list[int] = []
    for r in range(rows):
        for c in range(cols):
            ids += [FAKE_AROUND, ROW_COL + r * MAX_COLS + c] + [image_id] * per_unit
        ids.append(NEWLINE)
    if rows:
        ids.append(NEWLINE)
    ids += [FAKE_AROUND, GLOBAL_IMG] + [image_id] * per_unit + [FAKE_AROUND]
    return ids, [int(i == image_id) for i in ids]


def image_tokens(model: nn.Module, part: Image, gen: torch.Generator, images_in_prompt: int) -> ImageTokens:
    """Markers and placeholders of an image of ``part.rows`` x ``part.cols`` sub-images,
    and random pixels for each sub-image and the global image."""
    from .adapter import tokens_per_side

    config = model.config
    side = tokens_per_side(config)
    ids, types = image_ids(part.rows, part.cols, side * side, int(config.image_token_id))
    size = config.vision_config.image_size
    pixels = torch.randn(part.rows * part.cols + 1, 3, size, size, generator=gen)
    return ImageTokens(ids, types, pixels)


def batch_inputs(
    model: nn.Module, images: Sequence[ImageTokens], per_prompt: Sequence[int], token_types: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Each prompt's sub-images in order, padded to the most with all-zero images (which
    the model drops), and the pixel attention mask (1 on real sub-images)."""
    if not images:
        return {}
    groups, start = [], 0
    for count in per_prompt:
        groups.append(torch.cat([i.pixels for i in images[start : start + count]]) if count else None)
        start += count
    most = max(g.shape[0] for g in groups if g is not None)
    size = images[0].pixels.shape[-1]
    pixels = torch.zeros(len(groups), most, 3, size, size)
    mask = torch.zeros(len(groups), most, size, size, dtype=torch.long)
    for b, group in enumerate(groups):
        if group is not None:
            pixels[b, : group.shape[0]] = group
            mask[b, : group.shape[0]] = 1
    return {"pixel_values": pixels.to(pixel_dtype(model)), "pixel_attention_mask": mask}


def bench_image(model: nn.Module, grid: tuple[int, int]) -> Image:
    """An image split into about ``grid`` tokens: the sub-image rows and columns that
    cover it (at least 1 x 1), plus the global image."""
    from .adapter import tokens_per_side

    side = tokens_per_side(model.config)
    rows = min(3, max(1, round(grid[0] / side)))
    return Image(rows, min(MAX_SUB_IMAGES // rows, MAX_COLS, max(1, round(grid[1] / side))))
