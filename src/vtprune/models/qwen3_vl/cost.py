"""Qwen3-VL's vision cost and real-scale shapes."""

from __future__ import annotations

from typing import Any

from ...bench.flops import LayerShape, patch_counts_or_empty


def vision_macs(config: Any, patches_per_image: list[int]) -> int:
    """MACs of the ViT (full attention over each image in every block, a plain two-matrix
    MLP), of the 2x2 patch merger, and of one more merger per DeepStack block, per image."""
    vision = config.vision_config
    width = vision.hidden_size
    layer = LayerShape(width, width, vision.intermediate_size, 2)
    unit = vision.spatial_merge_size**2
    mergers = 1 + len(getattr(vision, "deepstack_visual_indexes", None) or ())
    total = 0
    for patches in patch_counts_or_empty(patches_per_image):
        total += vision.depth * layer.macs(patches)
        merged = patches // unit
        total += mergers * (merged * (unit * width) * (unit * width) + merged * (unit * width) * vision.out_hidden_size)
    return total


def qwen3_vl_8b(layers: int | None = None) -> Any:
    """``Qwen/Qwen3-VL-8B-Instruct``'s published config. Source: the checkpoint's
    config.json as published on the Hugging Face hub (text: hidden 4096, 36 layers, 32
    heads, 8 kv heads, head_dim 128; vision: depth 27, width 1152, DeepStack blocks
    8, 16, 24), not re-read here: the search index held no copy of it."""
    import transformers as tf

    text = dict(
        vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=layers or 36,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=262144,
        rms_norm_eps=1e-6, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [24, 20, 20],
                         "mrope_interleaved": True},
    )
    vision = dict(
        depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, out_hidden_size=4096,
        patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304,
        deepstack_visual_indexes=[8, 16, 24], hidden_act="gelu_pytorch_tanh",
    )
    return tf.Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False)
