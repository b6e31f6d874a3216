"""LLaVA-1.5's vision cost and real-scale shapes."""

from __future__ import annotations

from typing import Any

from ...bench.flops import LayerShape, patch_counts_or_empty


def clip_tower_macs(config: Any, patches_per_image: list[int]) -> int:
    """MACs of a ViT with a CLS token (every layer sees patches + 1 tokens) and of
    LLaVA's two-layer projector over the patches, per image."""
    vision = config.vision_config
    text_hidden = config.text_config.hidden_size
    layer = LayerShape(vision.hidden_size, vision.hidden_size, vision.intermediate_size, 2)
    total = 0
    for patches in patch_counts_or_empty(patches_per_image):
        tokens = patches + 1  # CLS
        total += vision.num_hidden_layers * layer.macs(tokens)
        total += patches * (vision.hidden_size * text_hidden + text_hidden * text_hidden)  # projector
    return total


def llava_1_5_7b(layers: int | None = None) -> Any:
    """``llava-hf/llava-1.5-7b-hf``'s published config."""
    import transformers as tf

    vision = tf.CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu",
    )
    text = tf.LlamaConfig(
        vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers or 32,
        num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5,
    )
    return tf.LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=32000, vision_feature_layer=-2,
        vision_feature_select_strategy="default", projector_hidden_act="gelu",
    )
