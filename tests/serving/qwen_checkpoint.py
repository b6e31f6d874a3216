"""A tiny random-weight Qwen2-VL / Qwen2.5-VL / Qwen3-VL saved as a Hugging Face
checkpoint, with a character-level tokenizer and Qwen's own image processor, built
offline for vLLM. Qwen3-VL's has its real patch geometry (16-pixel patches, 2x2 merged:
one token per 32x32 pixels), interleaved M-RoPE and two DeepStack levels."""

from __future__ import annotations

import string
from pathlib import Path

import torch

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|image_pad|>", "<|video_pad|>"]
CHARS = sorted(set(string.printable) - set("\r\x0b\x0c"))
VOCAB = 128
PIXELS = dict(patch_size=4, merge_size=2, temporal_patch_size=2)
PIXELS_3 = dict(patch_size=16, merge_size=2, temporal_patch_size=2)
DEEPSTACK = [0, 1]  # the vision blocks whose merged features reach decoder layers 0 and 1


def prompt(question: str, images: int = 1) -> str:
    pads = "<|vision_start|><|image_pad|><|vision_end|>" * images
    return f"<|im_start|>user\n{pads}{question}<|im_end|>\n<|im_start|>assistant\n"


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(CHARS)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None, fuse_unk=False))
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIALS})
    return tokenizer


def save(path: Path, version: str = "2.5", seed: int = 0, layers: int = 2) -> Path:
    """Write the checkpoint to ``path`` and return it."""
    import transformers as tf

    tokenizer = _tokenizer()
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in [
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]}
    assert max(ids.values()) < VOCAB
    text = dict(
        vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,  # head_dim 32
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
        tie_word_embeddings=False,
    )
    if version == "2":
        vision = dict(depth=2, embed_dim=32, hidden_size=128, num_heads=2, mlp_ratio=2, spatial_merge_size=2,
                      patch_size=4, temporal_patch_size=2)
        config, model_cls = tf.Qwen2VLConfig(text_config=text, vision_config=vision, **ids, bos_token_id=None), tf.Qwen2VLForConditionalGeneration
        processor_cls = tf.Qwen2VLProcessor
    elif version == "3":
        text["rope_parameters"] = {**text["rope_parameters"], "mrope_interleaved": True}
        text.update(head_dim=32)
        vision = dict(depth=3, hidden_size=32, out_hidden_size=128, intermediate_size=64, num_heads=2, patch_size=16,
                      spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64,
                      deepstack_visual_indexes=DEEPSTACK)
        config = tf.Qwen3VLConfig(text_config=text, vision_config=vision, **ids, tie_word_embeddings=False)
        model_cls, processor_cls = tf.Qwen3VLForConditionalGeneration, tf.Qwen3VLProcessor
    else:
        vision = dict(depth=2, hidden_size=32, out_hidden_size=128, intermediate_size=64, num_heads=2, patch_size=4,
                      spatial_merge_size=2, temporal_patch_size=2, window_size=16, fullatt_block_indexes=[1])
        config, model_cls = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids, bos_token_id=None), tf.Qwen2_5_VLForConditionalGeneration
        processor_cls = tf.Qwen2_5_VLProcessor
    torch.manual_seed(seed)
    model = model_cls._from_config(config, attn_implementation="sdpa")
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0.0, 2.0 / parameter.shape[-1] ** 0.5)  # logits far from ties
    model.eval()
    if version == "3":  # 4x the pixels of the others per side: the same token counts
        image_processor = tf.Qwen2VLImageProcessor(min_pixels=64 * 64, max_pixels=256 * 256, **PIXELS_3)
        size = {"shortest_edge": 64 * 64, "longest_edge": 256 * 256}
        video_processor = tf.Qwen3VLVideoProcessor(size=size, **PIXELS_3)
    else:
        image_processor = tf.Qwen2VLImageProcessor(min_pixels=16 * 16, max_pixels=64 * 64, **PIXELS)
        video_processor = tf.Qwen2VLVideoProcessor(min_pixels=16 * 16, max_pixels=64 * 64, **PIXELS)
    processor = processor_cls(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor)
    path = Path(path)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
