"""Tiny random-weight models of each supported family, and batches of prompts for them.

Built from configs in code, with no download, through the same model classes as
real checkpoints: vtprune's tests use them, and so can users testing their own code.

A prompt is a list of parts: an ``int`` n is n random text tokens, ``IMAGE`` is one
image (LLaVA: a fixed grid; Qwen2-VL: ``Image(rows, cols)`` in LLM tokens). Batches
are left-padded, as for generation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import torch
from torch import nn

PAD_ID = 0
TEXT_IDS = (3, 240)  # random text tokens are drawn from this id range
# Decoder layers of the tiny models: deep enough for every method's defaults (in-LLM
# stages after layer 2; PDrop's stages averaging keep=0.222 down).
DEFAULT_LAYERS = 6


@dataclass(frozen=True)
class Image:
    """An image in a prompt. ``rows`` x ``cols`` is its grid of LLM tokens (Qwen2-VL);
    ``size`` its (height, width) in pixels (LLaVA-NeXT / OneVision, which tile it by
    size); LLaVA-1.5 images always have the vision tower's fixed grid."""

    rows: int = 0
    cols: int = 0
    size: tuple[int, int] | None = None


IMAGE = Image()
Part = Union[int, Image]


def _finish(model: nn.Module, seed: int, dtype: torch.dtype, scale: float) -> nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2:  # matrices: larger than the default init so logits separate
                param.normal_(0.0, scale / param.shape[-1] ** 0.5)
    model = model.to(dtype).eval()
    model.generation_config.eos_token_id = None  # generate exactly max_new_tokens
    model.generation_config.pad_token_id = PAD_ID
    return model


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
    return _finish(model, seed, dtype, scale=2.0)


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
    return _finish(model, seed, dtype, scale=2.0)


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
    return _finish(model, seed, dtype, scale=2.0)


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
    return _finish(model, seed, dtype, scale=2.0)


def make_batch(
    model: nn.Module, prompts: Sequence[Sequence[Part]], seeds: Sequence[int] | None = None
) -> dict[str, torch.Tensor]:
    """Inputs for ``model`` (a tiny or real LLaVA / Qwen2-VL) from prompt descriptions.

    Text tokens and pixels are random but a pure function of each prompt's seed
    (default: its index), so ``make_batch(m, [p], seeds=[i])`` is sample i of
    ``make_batch(m, prompts)`` on its own.
    """
    seeds = list(range(len(prompts))) if seeds is None else list(seeds)
    config = model.config
    qwen = hasattr(config.vision_config, "spatial_merge_size")
    anyres = getattr(config, "image_grid_pinpoints", None) is not None
    dtype = next(model.parameters()).dtype
    rows, pixels, grids, types, sizes, per_prompt = [], [], [], [], [], []
    for seed, prompt in zip(seeds, prompts):
        gen = torch.Generator().manual_seed(seed)
        ids: list[int] = []
        kinds: list[int] = []
        images_here = sum(1 for part in prompt if not isinstance(part, int))
        per_prompt.append(images_here)
        for part in prompt:
            if isinstance(part, int):
                ids += torch.randint(*TEXT_IDS, (part,), generator=gen).tolist()
                kinds += [0] * part
            elif anyres:
                tiles, tokens = _anyres_image(model, part, gen, images_here)
                pixels.append(tiles)
                sizes.append(list(part.size))
                ids += [config.image_token_id] * tokens
                kinds += [1] * tokens
            elif qwen:
                patches, tokens = _qwen_image(config, part, gen)
                pixels.append(patches)
                grids.append([1, 2 * part.rows, 2 * part.cols] if part.rows else None)
                ids += [config.vision_start_token_id] + [config.image_token_id] * tokens + [config.vision_end_token_id]
                kinds += [0] + [1] * tokens + [0]
            else:
                vision = config.vision_config
                side = vision.image_size // vision.patch_size
                pixels.append(torch.randn(3, vision.image_size, vision.image_size, generator=gen))
                ids += [config.image_token_id] * side * side
                kinds += [0] * side * side
        rows.append(ids)
        types.append(kinds)

    length = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), PAD_ID, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    token_types = torch.zeros((len(rows), length), dtype=torch.long)
    for b, (ids, kinds) in enumerate(zip(rows, types)):
        input_ids[b, length - len(ids):] = torch.tensor(ids)
        attention_mask[b, length - len(ids):] = 1
        token_types[b, length - len(ids):] = torch.tensor(kinds)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if anyres:
        if pixels:
            most = max(t.shape[0] for t in pixels)
            padded = torch.zeros(len(pixels), most, *pixels[0].shape[1:])
            for i, tiles in enumerate(pixels):
                padded[i, : tiles.shape[0]] = tiles
            batch["pixel_values"] = padded.to(dtype)
            batch["image_sizes"] = torch.tensor(sizes)
            if "Onevision" in type(model).__name__:
                batch["batch_num_images"] = torch.tensor(per_prompt)
    elif qwen:
        batch["mm_token_type_ids"] = token_types
        if pixels:
            batch["pixel_values"] = torch.cat(pixels).to(dtype)
            batch["image_grid_thw"] = torch.tensor(grids)
    elif pixels:
        batch["pixel_values"] = torch.stack(pixels).to(dtype)
    return batch


def _anyres_image(model: nn.Module, part: Image, gen: torch.Generator, images_in_prompt: int) -> tuple[torch.Tensor, int]:
    """Random tiles for an image of ``part.size`` and its placeholder count, both as the
    model computes them (OneVision tiles only prompts with one image)."""
    from .models import adapter_for

    if part.size is None:
        raise ValueError("a LLaVA-NeXT / OneVision image needs its size: Image(size=(height, width))")
    adapter = adapter_for(model)
    tiled = images_in_prompt == 1 or "Onevision" not in type(model).__name__
    tiles, _, _ = adapter.image_grids(tuple(part.size), tiled)
    side = model.config.vision_config.image_size
    return torch.randn(tiles, 3, side, side, generator=gen), adapter.token_count(part.size, tiled)


def _qwen_image(config, part: Image, gen: torch.Generator) -> tuple[torch.Tensor, int]:
    if part.rows < 1 or part.cols < 1:
        raise ValueError("a Qwen2-VL image needs its token grid: Image(rows, cols)")
    vision = config.vision_config
    merge = vision.spatial_merge_size
    patches = part.rows * merge * part.cols * merge
    width = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    return torch.randn(patches, width, generator=gen), part.rows * part.cols
