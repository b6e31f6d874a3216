"""A tiny LLaVA-NeXT and a tiny LLaVA-OneVision, and their fake prompt images: tiles
of random pixels for an image of a given size, as many as the model cuts it into."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..fake_batch import Image, ImageTokens, Video, pixel_dtype
from ..tiny import DEFAULT_LAYERS, PAD_ID, finish

ANYRES_PINPOINTS = [[24, 48], [48, 24], [48, 48], [24, 72], [72, 24]]


def tiny_llava_next(seed: int = 0, dtype: torch.dtype = torch.float32, *, layers: int = DEFAULT_LAYERS, attn: str = "sdpa") -> nn.Module:
    """A LlavaNextForConditionalGeneration: CLIP tiles of 24 px (6 x 6 tokens), anyres."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration

    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=24, patch_size=4,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, pad_token_id=PAD_ID,
    )
    config = LlavaNextConfig(
        vision_config=vision, text_config=text, image_token_index=255, image_grid_pinpoints=ANYRES_PINPOINTS,
        vision_feature_layer=-2, vision_feature_select_strategy="default", projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration._from_config(config, attn_implementation=attn)
    return finish(model, seed, dtype)


def tiny_llava_onevision(
    seed: int = 0, dtype: torch.dtype = torch.float32, *, layers: int = DEFAULT_LAYERS, attn: str = "sdpa"
) -> nn.Module:
    """A LlavaOnevisionForConditionalGeneration: SigLIP tiles (no CLS) of 24 px, a Qwen2
    language model, anyres with "anyres_max_2" so large images are also shrunk."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, Qwen2Config, SiglipVisionConfig

    vision = SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=24, patch_size=4,
        vision_use_head=False,
    )
    text = Qwen2Config(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, pad_token_id=PAD_ID,
    )
    config = LlavaOnevisionConfig(
        vision_config=vision, text_config=text, image_token_index=255, video_token_index=254,
        image_grid_pinpoints=ANYRES_PINPOINTS, vision_feature_layer=-1, vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_2",
    )
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration._from_config(config, attn_implementation=attn)
    return finish(model, seed, dtype)


def _image_tokens(model: nn.Module, part: Image, gen: torch.Generator, tiled: bool) -> ImageTokens:
    """Random tiles for an image of ``part.size`` and its placeholders, both counted as
    the model counts them."""
    from .. import adapter_for

    if part.size is None:
        raise ValueError("a LLaVA-NeXT / OneVision image needs its size: Image(size=(height, width))")
    adapter = adapter_for(model)
    tiles, _, _ = adapter.image_grids(tuple(part.size), tiled)
    side = model.config.vision_config.image_size
    tokens = adapter.token_count(part.size, tiled)
    pixels = torch.randn(tiles, 3, side, side, generator=gen)
    return ImageTokens([model.config.image_token_id] * tokens, [1] * tokens, pixels, list(part.size))


def next_image_tokens(model: nn.Module, part: Image, gen: torch.Generator, images_in_prompt: int) -> ImageTokens:
    return _image_tokens(model, part, gen, tiled=True)


def onevision_image_tokens(model: nn.Module, part: Image | Video, gen: torch.Generator, images_in_prompt: int) -> ImageTokens:
    if isinstance(part, Video):
        return onevision_video_tokens(model, part, gen)
    return _image_tokens(model, part, gen, tiled=images_in_prompt == 1)  # OneVision tiles lone images only


def onevision_video_tokens(model: nn.Module, part: Video, gen: torch.Generator) -> ImageTokens:
    """A video of ``part.frames`` random frames (one tile each): each frame pooled to a
    ceil(side / 2) square grid, then one newline. ``part.rows`` / ``cols`` must be that
    pooled side (the model fixes it)."""
    side = int(model.config.vision_config.image_size) // int(model.config.vision_config.patch_size)
    pooled = -(-side // 2)
    if (part.rows, part.cols) != (pooled, pooled):
        raise ValueError(f"this model's video frames are {pooled} x {pooled} tokens; got Video(rows={part.rows}, cols={part.cols})")
    size = int(model.config.vision_config.image_size)
    pixels = torch.randn(part.frames, 3, size, size, generator=gen)
    tokens = part.frames * pooled * pooled + 1
    return ImageTokens([model.config.video_token_id] * tokens, [2] * tokens, pixels, part.frames, video=True)


def next_inputs(
    model: nn.Module, images: Sequence[ImageTokens], per_prompt: Sequence[int], token_types: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Every image's tiles, padded to the most tiles, and the images' sizes."""
    if not images:
        return {}
    most = max(i.pixels.shape[0] for i in images)
    padded = torch.zeros(len(images), most, *images[0].pixels.shape[1:])
    for i, image in enumerate(images):
        padded[i, : image.pixels.shape[0]] = image.pixels
    return {"pixel_values": padded.to(pixel_dtype(model)), "image_sizes": torch.tensor([i.extra for i in images])}


def onevision_inputs(
    model: nn.Module, images: Sequence[ImageTokens], per_prompt: Sequence[int], token_types: torch.Tensor
) -> dict[str, torch.Tensor]:
    """LLaVA-NeXT's, and the images per prompt (which decide the tiling); the videos'
    frames (videos, frames, C, H, W: every video of a batch has as many frames)."""
    stills = [i for i in images if not i.video]
    videos = [v for v in images if v.video]
    inputs = next_inputs(model, stills, per_prompt, token_types)
    if inputs:
        inputs["batch_num_images"] = torch.tensor(list(per_prompt))
    if videos:
        if len({v.pixels.shape[0] for v in videos}) > 1:
            raise ValueError("the videos of a LLaVA-OneVision batch must have as many frames")
        inputs["pixel_values_videos"] = torch.stack([v.pixels for v in videos]).to(pixel_dtype(model))
    return inputs


def bench_image(model: nn.Module, grid: tuple[int, int]) -> Image:
    """A picture of ``grid`` patches (rows x cols of the tower's patch side), tiled as
    the model tiles it."""
    patch = int(model.config.vision_config.patch_size)
    return Image(size=(grid[0] * patch, grid[1] * patch))
