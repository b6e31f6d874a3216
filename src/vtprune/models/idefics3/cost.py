"""Idefics3 / SmolVLM's vision cost, and SmolVLM's real-scale shape."""

from __future__ import annotations

from typing import Any

from ...bench.flops import LayerShape, patch_counts_or_empty


def vision_macs(config: Any, patches_per_image: list[int]) -> int:
    """MACs of the tower (no CLS token; every sub-image attends over its own patches in
    every layer, a plain two-matrix MLP) and of the connector (the pixel shuffle moves
    data; its projection maps each token's s*s patch features, d*s^2 wide, to the text
    width), per sub-image of the given patch count."""
    vision = config.vision_config
    width, scale = vision.hidden_size, int(config.scale_factor)
    layer = LayerShape(width, width, vision.intermediate_size, 2)
    text_width = config.text_config.hidden_size
    total = 0
    for patches in patch_counts_or_empty(patches_per_image):
        tokens = patches // (scale * scale)
        total += vision.num_hidden_layers * layer.macs(patches) + tokens * (width * scale * scale) * text_width
    return total


def smolvlm_2b(layers: int | None = None) -> Any:
    """``HuggingFaceTB/SmolVLM-Instruct`` (SmolVLM 2.2B), published with Idefics3's
    classes. Source: the checkpoint's config.json as published on the Hugging Face hub
    (model_type "idefics3", scale_factor 3, image_token_id 49190; text: Llama, hidden
    2048, 24 layers, 32 heads, 32 kv heads, MLP 8192, vocab 49155, rope_theta 273768,
    16384 positions; vision: SigLIP 384 px, patch 14, width 1152, 27 layers, 16 heads,
    MLP 4304). The search index held no copy of the file: its model card's "81 visual
    tokens to encode image patches of size 384*384" (384 / 14 = 27 patches a side,
    folded by 3) was checked, and an independent reader's test fixture of the pair
    (scale_factor 3, image_size 384, patch_size 14, longest_edge 1536, max_image_size
    384); the other values are as published, not re-read here."""
    import transformers as tf

    text = dict(
        model_type="llama", vocab_size=49155, hidden_size=2048, intermediate_size=8192,
        num_hidden_layers=layers or 24, num_attention_heads=32, num_key_value_heads=32,
        max_position_embeddings=16384, rms_norm_eps=1e-5, rope_theta=273768.0, tie_word_embeddings=False,
        pad_token_id=2,
    )
    vision = dict(
        hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
        image_size=384, patch_size=14,
    )
    return tf.Idefics3Config(
        text_config=text, vision_config=vision, scale_factor=3, image_token_id=49190, pad_token_id=2,
        tie_word_embeddings=False,
    )


def patches_per_image(model: Any, batch: dict) -> list[int]:
    """Vision patches of each real sub-image of a batch: ``pixel_values`` holds each
    prompt's list of sub-images, padded with all-zero ones the model drops."""
    vision = model.config.vision_config
    pixels = batch["pixel_values"].flatten(0, 1)
    real = int((pixels != 0).flatten(1).any(1).sum())
    return [(pixels.shape[-2] // vision.patch_size) * (pixels.shape[-1] // vision.patch_size)] * real
