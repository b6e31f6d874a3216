"""Processors for :mod:`vtprune.testing`'s tiny models, and a tiny LLaVA checkpoint
saved with its processor for ``vtprune show --model PATH``.

The tokenizers are word level ("w3" ... are words; the image placeholders are special
tokens with the ids the models expect), built offline. A Qwen2-VL processor cannot be
built here: its video half needs torchvision, so Qwen tests use the image processor.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import CLIPImageProcessor, LlavaProcessor, PreTrainedTokenizerFast

from vtprune.testing import PAD_ID, tiny_llava


def word_tokenizer(special: dict[str, int], size: int = 256) -> PreTrainedTokenizerFast:
    """Words "w<i>" have id i; ``special`` tokens (matched inside words too) take the ids
    they name, as do padding (``PAD_ID``) and unknown words (1)."""
    reserved = {"[PAD]": PAD_ID, "[UNK]": 1} | special
    taken = set(reserved.values())
    vocab = {f"w{i}": i for i in range(size) if i not in taken} | reserved
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]")
    fast.add_special_tokens({"additional_special_tokens": list(special)})
    return fast


def tiny_llava_processor(model) -> LlavaProcessor:
    """A LlavaProcessor for :func:`vtprune.testing.tiny_llava`'s images (``grid`` x 4 pixels)."""
    side = model.config.vision_config.image_size
    return LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side}),
        tokenizer=word_tokenizer({"<image>": model.config.image_token_id}),
        patch_size=model.config.vision_config.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # the CLS token, which "default" drops again
    )


def save_tiny_llava(folder: Path, layers: int = 3) -> Path:
    """A LLaVA with an 8 x 8 grid of 4-pixel patches (32-pixel images) and its processor;
    three layers, so that in-LLM methods pruning after layer 2 have a layer to act on."""
    model = tiny_llava(layers=layers)
    model.save_pretrained(folder)
    tiny_llava_processor(model).save_pretrained(folder)
    return folder


def tiny_qwen_image_processor():
    """A Qwen2-VL image processor for :func:`vtprune.testing.tiny_qwen2_vl`: 4-pixel
    patches merged 2 x 2 into 8-pixel tokens, 4 to 64 tokens an image."""
    from transformers import Qwen2VLImageProcessor

    return Qwen2VLImageProcessor(
        patch_size=4, merge_size=2, temporal_patch_size=2, min_pixels=8 * 8 * 4, max_pixels=8 * 8 * 64
    )
