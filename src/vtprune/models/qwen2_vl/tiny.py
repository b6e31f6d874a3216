"""Tiny Qwen2-VL and Qwen2.5-VL models, and their fake prompt images: a token grid of
any size, between vision start and end markers."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..fake_batch import Image, ImageTokens, Video, pixel_dtype
from ..tiny import DEFAULT_LAYERS, PAD_ID, finish


def tiny_qwen2_vl(
    seed: int = 0, dtype: torch.dtype = torch.float32, *, version: str = "2.5", layers: int = DEFAULT_LAYERS, attn: str = "sdpa"
) -> nn.Module:
    """A Qwen2-VL (``version="2"``) or Qwen2.5-VL (``"2.5"``) model with M-RoPE."""
    import transformers as tf

    text = dict(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        pad_token_id=PAD_ID, bos_token_id=1, eos_token_id=2,
    )
    ids = dict(image_token_id=250, video_token_id=251, vision_start_token_id=252, vision_end_token_id=253)
    if version == "2":
        vision = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, patch_size=4, spatial_merge_size=2,
                      temporal_patch_size=2, mlp_ratio=2)
        config = tf.Qwen2VLConfig(text_config=text, vision_config=vision, **ids)
        cls = tf.Qwen2VLForConditionalGeneration
    elif version == "2.5":
        vision = dict(depth=2, hidden_size=32, out_hidden_size=64, intermediate_size=64, num_heads=2, patch_size=4,
                      spatial_merge_size=2, temporal_patch_size=2, window_size=16, fullatt_block_indexes=[1])
        config = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
        cls = tf.Qwen2_5_VLForConditionalGeneration
    else:
        raise ValueError(f"version must be '2' or '2.5'; got {version!r}")
    torch.manual_seed(seed)
    model = cls._from_config(config, attn_implementation=attn)
    return finish(model, seed, dtype)


def image_tokens(model: nn.Module, part: Image | Video, gen: torch.Generator, images_in_prompt: int) -> ImageTokens:
    """Random patches for a ``part.rows`` x ``part.cols`` token grid (one frame), the
    placeholders between the vision markers, typed 1 for M-RoPE's position ids; a video's
    frames are one run of placeholders between the markers, typed 2."""
    if isinstance(part, Video):
        return video_tokens(model, part, gen)
    if part.rows < 1 or part.cols < 1:
        raise ValueError("a Qwen2-VL image needs its token grid: Image(rows, cols)")
    config = model.config
    vision = config.vision_config
    merge = vision.spatial_merge_size
    patches = part.rows * merge * part.cols * merge
    width = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    pixels = torch.randn(patches, width, generator=gen)
    tokens = part.rows * part.cols
    ids = [config.vision_start_token_id] + [config.image_token_id] * tokens + [config.vision_end_token_id]
    return ImageTokens(ids, [0] + [1] * tokens + [0], pixels, [1, merge * part.rows, merge * part.cols])


def video_pixels(model: nn.Module, part: Video, gen: torch.Generator) -> tuple[torch.Tensor, list[int]]:
    """Random patches of a video, and its (t, h, w) grid in vision patches."""
    if part.frames < 1 or part.rows < 1 or part.cols < 1:
        raise ValueError("a video needs frames and its token grid: Video(frames, rows, cols)")
    vision = model.config.vision_config
    merge = vision.spatial_merge_size
    width = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    pixels = torch.randn(part.frames * part.rows * merge * part.cols * merge, width, generator=gen)
    return pixels, [part.frames, merge * part.rows, merge * part.cols]


def video_tokens(model: nn.Module, part: Video, gen: torch.Generator) -> ImageTokens:
    """A Qwen2-VL / Qwen2.5-VL video: all frames' placeholders between one pair of markers."""
    config = model.config
    pixels, thw = video_pixels(model, part, gen)
    tokens = part.frames * part.rows * part.cols
    ids = [config.vision_start_token_id] + [config.video_token_id] * tokens + [config.vision_end_token_id]
    return ImageTokens(ids, [0] + [2] * tokens + [0], pixels, (thw, part.seconds), video=True)


def batch_inputs(
    model: nn.Module, images: Sequence[ImageTokens], per_prompt: Sequence[int], token_types: torch.Tensor
) -> dict[str, torch.Tensor]:
    inputs = {"mm_token_type_ids": token_types}
    stills = [i for i in images if not i.video]
    videos = [i for i in images if i.video]
    if stills:
        inputs["pixel_values"] = torch.cat([i.pixels for i in stills]).to(pixel_dtype(model))
        inputs["image_grid_thw"] = torch.tensor([i.extra for i in stills])
    if videos:
        inputs["pixel_values_videos"] = torch.cat([v.pixels for v in videos]).to(pixel_dtype(model))
        inputs["video_grid_thw"] = torch.tensor([v.extra[0] for v in videos])
        if model.config.model_type == "qwen2_5_vl":
            inputs["second_per_grid_ts"] = torch.tensor([v.extra[1] for v in videos])
    return inputs


def bench_image(model: nn.Module, grid: tuple[int, int]) -> Image:
    return Image(*grid)
