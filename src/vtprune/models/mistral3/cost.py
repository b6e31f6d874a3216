"""Mistral 3's vision cost and real-scale shapes."""

from __future__ import annotations

from typing import Any

import torch

from ...bench.flops import LayerShape, patch_counts_or_empty


def vision_macs(config: Any, patches_per_image: list[int]) -> int:
    """MACs of the Pixtral tower and of Mistral 3's projector, per image.

    Every Pixtral layer has four ``hidden x hidden`` attention matrices and a gated MLP;
    its attention is counted within each image (n^2 per image of n patches: the
    block-diagonal attention's work; eager and SDPA attention also compute the masked
    blocks between images of one call, FlashAttention does not). The patch convolution
    and the norms are left out, as for the other towers. The projector: the patch merger
    (one ``4 hidden x hidden`` matrix per 2x2 block), then two linear layers into the
    language model's width."""
    vision = config.vision_config
    width, text_hidden = vision.hidden_size, config.text_config.hidden_size
    layer = LayerShape(width, width, vision.intermediate_size, 3)
    unit = int(config.spatial_merge_size) ** 2
    feature_layers = 1 if isinstance(config.vision_feature_layer, int) else len(config.vision_feature_layer)
    total = 0
    for patches in patch_counts_or_empty(patches_per_image):
        merged = patches // unit
        total += vision.num_hidden_layers * layer.macs(patches)
        total += merged * (unit * width) * width  # patch merger
        total += merged * (feature_layers * width * text_hidden + text_hidden * text_hidden)  # linear_1, linear_2
    return total


def patches_per_image(model: Any, batch: dict) -> list[int]:
    """Vision patches of each image of a batch, from its ``image_sizes`` (pixels)."""
    patch = int(model.config.vision_config.patch_size)
    return [(int(h) // patch) * (int(w) // patch) for h, w in torch.as_tensor(batch["image_sizes"]).tolist()]


def mistral_small_3_1_24b(layers: int | None = None) -> Any:
    """``mistralai/Mistral-Small-3.1-24B-Instruct-2503``'s published config.json: text
    (Mistral) hidden 5120, 40 layers, 32 heads, 8 kv heads, head_dim 128, MLP 32768,
    vocab 131072, rope_theta 1e9, sliding_window null; vision (Pixtral) hidden 1024, 24
    layers, 16 heads, head_dim 64, MLP 4096, patch 14, image_size 1540, rope_theta 1e4,
    hidden_act silu; image_token_index 10, spatial_merge_size 2, vision_feature_layer -1,
    projector gelu without bias. The config sets no tie_word_embeddings: the checkpoint
    has its own lm_head (the text config's default, untied)."""
    import transformers as tf

    text = tf.MistralConfig(
        vocab_size=131072, hidden_size=5120, intermediate_size=32768, num_hidden_layers=layers or 40,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=131072,
        rms_norm_eps=1e-5, hidden_act="silu", sliding_window=None,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000000.0},
    )
    vision = tf.PixtralVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, num_channels=3,
        image_size=1540, patch_size=14, hidden_act="silu", rope_parameters={"rope_type": "axial", "rope_theta": 10000.0},
    )
    return tf.Mistral3Config(
        vision_config=vision, text_config=text, image_token_index=10, spatial_merge_size=2, vision_feature_layer=-1,
        projector_hidden_act="gelu", multimodal_projector_bias=False, tie_word_embeddings=False,
    )
