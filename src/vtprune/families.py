"""The model families, their model classes and the signals each computes, as data.

``vtprune methods`` prints this table, and must answer without importing the adapters
(:mod:`vtprune.models`), which import torch. The adapters stay the authority: a test
checks this table against ``vtprune.models.family_support()``.
"""

from __future__ import annotations

from typing import NamedTuple

# What every family provides alike (signals the runtime computes from the family's
# facts), and the vision tower's own signals (every family here has them).
SHARED_SIGNALS = frozenset({
    "attn_last", "attn_last_next", "attn_rows", "entry_visual", "hidden", "hidden_norm", "keys", "keys_rope",
    "text_embeds", "text_hidden", "text_hidden_norm", "text_keys_rope", "text_mask", "text_relevance", "visual",
})  # fmt: skip
VISION_SIGNALS = frozenset({"vision_keys", "vision_saliency"})


class Family(NamedTuple):
    name: str
    model_classes: tuple[str, ...]
    signals: frozenset[str]


# In the order the family packages register (their names' order).
FAMILIES = (
    Family("llava", ("LlavaForConditionalGeneration", "LlavaModel"), SHARED_SIGNALS | VISION_SIGNALS | {"clip_relevance"}),
    Family("llava_next", ("LlavaNextForConditionalGeneration", "LlavaNextModel"), SHARED_SIGNALS | VISION_SIGNALS),
    Family(
        "llava_onevision", ("LlavaOnevisionForConditionalGeneration", "LlavaOnevisionModel"), SHARED_SIGNALS | VISION_SIGNALS
    ),
    Family(
        "qwen2_vl",
        ("Qwen2VLForConditionalGeneration", "Qwen2VLModel", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLModel"),
        SHARED_SIGNALS | VISION_SIGNALS,
    ),
)


def family_support() -> list[tuple[str, tuple[str, ...], list[str]]]:
    """(family, model classes, signals it provides) for every family, as
    ``vtprune.models.family_support()`` gives them."""
    return [(f.name, f.model_classes, sorted(f.signals)) for f in FAMILIES]
