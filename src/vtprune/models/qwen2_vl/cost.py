"""Qwen2-VL / Qwen2.5-VL's vision cost and real-scale shapes."""

from __future__ import annotations

from typing import Any

from ...bench.flops import LayerShape, patch_counts_or_empty


def vision_macs(config: Any, patches_per_image: list[int]) -> int:
    """MACs of the ViT (Qwen2.5-VL: windowed attention outside its full-attention
    blocks) and of the 2x2 patch merger, per image."""
    vision = config.vision_config
    text_hidden = config.text_config.hidden_size
    width = getattr(vision, "embed_dim", None) or vision.hidden_size
    gated = hasattr(vision, "intermediate_size") and not hasattr(vision, "embed_dim")  # 2.5's SwiGLU MLP
    mlp = vision.intermediate_size if gated else int(width * getattr(vision, "mlp_ratio", 4))
    layer = LayerShape(width, width, mlp, 3 if gated else 2)
    full = set(getattr(vision, "fullatt_block_indexes", range(vision.depth)))
    window = (getattr(vision, "window_size", 0) // vision.patch_size) ** 2 or None
    unit = vision.spatial_merge_size**2
    total = 0
    for patches in patch_counts_or_empty(patches_per_image):
        for block in range(vision.depth):
            seen = patches if block in full or window is None else min(patches, window)
            total += layer.macs(patches) - 2 * patches * patches * width + 2 * patches * seen * width
        merged = patches // unit
        total += merged * (unit * width) * (unit * width) + merged * (unit * width) * text_hidden
    return total


def qwen2_5_vl_7b(layers: int | None = None) -> Any:
    """``Qwen/Qwen2.5-VL-7B-Instruct``'s published config."""
    import transformers as tf

    text = dict(
        vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=layers or 28,
        num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=128000, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
    )
    vision = dict(
        depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
        patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2,
    )
    return tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision)
