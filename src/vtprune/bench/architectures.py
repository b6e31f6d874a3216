"""Real-scale architectures with random weights, for speed measurements.

Speed does not depend on weight values, so a benchmark can build the exact shapes of
LLaVA-1.5-7B or Qwen2.5-VL-7B from their published configs without downloading
anything. ``layers`` truncates the language model (for CPUs, where 32 layers of a 7B
model take minutes per forward).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

ARCHITECTURES = ("llava-1.5-7b", "qwen2.5-vl-7b", "tiny-llava", "tiny-qwen2.5-vl")


def config_of(name: str, *, layers: int | None = None) -> Any:
    """The transformers config of architecture ``name`` (nothing is built)."""
    import transformers as tf

    if name.startswith("tiny-"):
        return build(name, layers=layers).config
    if name == "llava-1.5-7b":
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
    if name == "qwen2.5-vl-7b":
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
    raise ValueError(f"architecture must be one of {ARCHITECTURES}; got {name!r}")


def build(name: str, *, layers: int | None = None, dtype: "torch.dtype | None" = None, device: str = "cpu") -> "nn.Module":
    """A model of architecture ``name`` with random weights, in eval mode, SDPA attention
    (``dtype`` default: bfloat16)."""
    import torch
    import transformers as tf

    dtype = torch.bfloat16 if dtype is None else dtype
    if name.startswith("tiny-"):  # the test models, for quick runs of the benchmark itself
        from ..testing import tiny_llava, tiny_qwen2_vl

        if name not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}; got {name!r}")
        build_tiny = tiny_llava if name == "tiny-llava" else tiny_qwen2_vl
        return build_tiny(dtype=dtype, layers=layers or 4).to(device)
    config = config_of(name, layers=layers)
    cls = tf.LlavaForConditionalGeneration if name == "llava-1.5-7b" else tf.Qwen2_5_VLForConditionalGeneration
    with torch.device(device):
        model = cls._from_config(config, attn_implementation="sdpa", dtype=dtype)
    return model.eval()
