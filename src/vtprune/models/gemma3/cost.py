"""Gemma 3's vision cost and real-scale shapes."""

from __future__ import annotations

from typing import Any

from ...bench.flops import LayerShape, patch_counts_or_empty


def vision_macs(config: Any, patches_per_image: list[int]) -> int:
    """MACs of the SigLIP tower (no CLS token: every layer sees the patches) and of
    Gemma 3's projector, per image: the average pooling is additions only, then one
    ``vision hidden x text hidden`` matrix per pooled token."""
    vision = config.vision_config
    layer = LayerShape(vision.hidden_size, vision.hidden_size, vision.intermediate_size, 2)
    tokens = int(config.mm_tokens_per_image)
    total = 0
    for patches in patch_counts_or_empty(patches_per_image):
        total += vision.num_hidden_layers * layer.macs(patches)
        total += tokens * vision.hidden_size * config.text_config.hidden_size
    return total


def gemma_3_12b(layers: int | None = None) -> Any:
    """``google/gemma-3-12b-it``'s published config.json: text hidden 3840, 48 layers
    (every 6th global, the others sliding windows of 1024), 16 heads, 8 kv heads,
    head_dim 256, query_pre_attn_scalar 256, MLP 15360, vocab 262208, RoPE base 1e6
    (linear scaling x8) for global layers and 1e4 for local ones; vision SigLIP
    so400m: hidden 1152, 27 layers, 16 heads, MLP 4304, 896 px, patch 14; 256 tokens
    per image; tied embeddings."""
    import transformers as tf

    count = layers or 48
    text = tf.Gemma3TextConfig(
        vocab_size=262208, hidden_size=3840, intermediate_size=15360, num_hidden_layers=count,
        num_attention_heads=16, num_key_value_heads=8, head_dim=256, query_pre_attn_scalar=256,
        max_position_embeddings=131072, rms_norm_eps=1e-6, sliding_window=1024,
        layer_types=["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(count)],
        rope_parameters={
            "full_attention": {"rope_type": "linear", "rope_theta": 1000000.0, "factor": 8.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        },
    )
    vision = tf.SiglipVisionConfig(
        hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
        image_size=896, patch_size=14, vision_use_head=False,
    )
    return tf.Gemma3Config(
        vision_config=vision, text_config=text, mm_tokens_per_image=256, boi_token_index=255999,
        eoi_token_index=256000, image_token_index=262144,
    )
