"""A tiny Qwen3-VL model. Its fake prompt images are Qwen2-VL's (a token grid of any
size between vision start and end markers, one (t, h, w) grid per image); a video is
its frames one by one, each after its timestamp text and between its own markers, as
Qwen3-VL's processor writes them."""

from __future__ import annotations

import torch
from torch import nn

from ..fake_batch import TEXT_IDS, Image, ImageTokens, Video
from ..qwen2_vl import tiny as qwen2_tiny
from ..qwen2_vl.tiny import batch_inputs, bench_image, video_pixels
from ..tiny import DEFAULT_LAYERS, PAD_ID, finish

TIMESTAMP_TOKENS = 3  # text tokens of a frame's "<t seconds>" (random ids here)

__all__ = ["batch_inputs", "bench_image", "image_tokens", "tiny_qwen3_vl"]


def image_tokens(model: nn.Module, part: Image | Video, gen: torch.Generator, images_in_prompt: int) -> ImageTokens:
    """Qwen2-VL's image; a video as Qwen3-VL's processor lays it out: per frame (temporal
    patch) its timestamp text, then its placeholders between the vision markers."""
    if not isinstance(part, Video):
        return qwen2_tiny.image_tokens(model, part, gen, images_in_prompt)
    config = model.config
    pixels, thw = video_pixels(model, part, gen)
    ids: list[int] = []
    types: list[int] = []
    per_frame = part.rows * part.cols
    for _ in range(part.frames):
        ids += torch.randint(*TEXT_IDS, (TIMESTAMP_TOKENS,), generator=gen).tolist()
        ids += [config.vision_start_token_id] + [config.video_token_id] * per_frame + [config.vision_end_token_id]
        types += [0] * TIMESTAMP_TOKENS + [0] + [2] * per_frame + [0]
    return ImageTokens(ids, types, pixels, (thw, part.seconds), video=True)


def tiny_qwen3_vl(
    seed: int = 0, dtype: torch.dtype = torch.float32, *, layers: int = DEFAULT_LAYERS, attn: str = "sdpa",
    deepstack: tuple[int, ...] = (0,), moe: bool = False,
) -> nn.Module:
    """A Qwen3-VL model with interleaved M-RoPE and DeepStack: the output of each ViT
    block in ``deepstack`` is added to the visual tokens after the decoder layer of the
    same rank. One DeepStack layer by default, so in-LLM stages from layer 2 on run.
    ``moe``: the mixture-of-experts variant (``Qwen3VLMoeForConditionalGeneration``)."""
    import transformers as tf

    text = dict(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3],
                         "mrope_interleaved": True},
        pad_token_id=PAD_ID, bos_token_id=1, eos_token_id=2,
    )
    vision = dict(
        depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=4, spatial_merge_size=2,
        temporal_patch_size=2, out_hidden_size=64, num_position_embeddings=64,
        deepstack_visual_indexes=list(deepstack),
    )
    ids = dict(image_token_id=250, video_token_id=251, vision_start_token_id=252, vision_end_token_id=253)
    if moe:  # Qwen3-VL-30B-A3B's structure: every decoder MLP a routed mixture of experts
        text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1)
        config, model_class = tf.Qwen3VLMoeConfig(text_config=text, vision_config=vision, **ids), tf.Qwen3VLMoeForConditionalGeneration
    else:
        config, model_class = tf.Qwen3VLConfig(text_config=text, vision_config=vision, **ids), tf.Qwen3VLForConditionalGeneration
    torch.manual_seed(seed)
    # Experts one by one: the grouped matmul takes no float64 (the tests' references use it).
    extra = {"experts_implementation": "eager"} if moe else {}
    model = model_class._from_config(config, attn_implementation=attn, **extra)
    return finish(model, seed, dtype)
