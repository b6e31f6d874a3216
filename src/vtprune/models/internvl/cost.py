"""InternVL's vision cost and real-scale shapes."""

from __future__ import annotations

from typing import Any

from ...bench.flops import LayerShape, patch_counts_or_empty


def vision_macs(config: Any, patches_per_tile: list[int]) -> int:
    """MACs of the InternViT tower (every layer sees a tile's patches and its CLS token;
    plain two-matrix MLP) and of the projector, per tile: the pixel shuffle only moves
    values (no MACs), then the MLP's two matrices map each token's concatenated patch
    features (4 x the tower width) to the text width and the text width to itself."""
    vision = config.vision_config
    width = vision.hidden_size
    text_hidden = config.text_config.hidden_size
    layer = LayerShape(width, width, vision.intermediate_size, 2)
    fold = round(1 / float(config.downsample_ratio)) ** 2  # patches per token
    total = 0
    for patches in patch_counts_or_empty(patches_per_tile):
        total += vision.num_hidden_layers * layer.macs(patches + 1)  # + CLS
        tokens = patches // fold
        total += tokens * (fold * width * text_hidden + text_hidden * text_hidden)
    return total


def internvl3_8b(layers: int | None = None) -> Any:
    """``OpenGVLab/InternVL3-8B-hf``'s published config: InternViT-300M-448px-V2_5 (24
    layers, width 1024, 16 heads, MLP 4096, 14 px patches on 448 px tiles, LayerNorm
    eps 1e-6, biased q/k/v, no q/k norm, layer scale 0.1, mean pooling so no final norm)
    read at its last layer without CLS, pixel shuffle 0.5, a GELU MLP projector, image
    token 151667 with 256 per tile; a Qwen2.5-7B decoder (hidden 3584, 28 layers, 28
    heads, 4 kv heads, MLP 18944, vocabulary 151674, RoPE theta 1e6, 32768 positions,
    untied embeddings). Sources, via the search index: the -hf config.json as quoted in
    vllm-project/vllm#17634 (architecture, downsample_ratio, image_seq_length,
    image_token_id, rope_theta, vocab_size), the embedding shape [151674, 3584] in
    hiyouga/LlamaFactory#8086, the InternViT-300M-448px-V2_5 shapes in ISEEKYAN/mbridge's
    InternVL3 bridge; the decoder's other widths are Qwen2.5-7B's published ones, not
    re-read here (the index held no copy of the whole file)."""
    import transformers as tf

    vision = dict(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=448, patch_size=14, attention_bias=True, use_qk_norm=False, norm_type="layer_norm",
        layer_norm_eps=1e-6, layer_scale_init_value=0.1, use_mean_pooling=True, hidden_act="gelu",
    )
    text = dict(
        model_type="qwen2", vocab_size=151674, hidden_size=3584, intermediate_size=18944,
        num_hidden_layers=layers or 28, num_attention_heads=28, num_key_value_heads=4,
        max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    )
    return tf.InternVLConfig(
        vision_config=vision, text_config=text, image_token_id=151667, image_seq_length=256,
        downsample_ratio=0.5, projector_hidden_act="gelu", vision_feature_layer=-1,
        vision_feature_select_strategy="default", tie_word_embeddings=False,
    )
