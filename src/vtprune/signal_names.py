"""The names of the signals, and which every model family provides, without torch.

The command line lists what each family provides (``vtprune methods``) without
importing torch; :mod:`vtprune.signals` computes them.
"""

from __future__ import annotations

import re

PLAIN_SIGNALS = frozenset(
    {
        "visual", "entry_visual", "vision_saliency", "vision_keys",
        "text_embeds", "text_mask", "text_relevance", "clip_relevance",
    }
)
LLM_SIGNALS = frozenset(
    {"attn_rows", "attn_last", "attn_last_next", "hidden", "hidden_norm", "keys", "keys_rope",
     "text_hidden", "text_hidden_norm", "text_keys_rope"}
)
# Signals computed from inside the vision tower (hooks capture what they need as it runs).
VISION_SIGNALS = frozenset({"vision_saliency", "vision_keys"})
# Signals whose rows are the instruction tokens (padded): they come with ``text_mask``.
TEXT_ROW_SIGNALS = ("text_embeds", "attn_rows", "text_hidden", "text_hidden_norm", "text_keys_rope")
_LLM_SIGNAL = re.compile(r"^(\w+)@llm:(\d+)$")


def parse_signal(name: str) -> tuple[str, int | None]:
    """``"attn_rows@llm:2"`` -> ``("attn_rows", 2)``; ``"visual"`` -> ``("visual", None)``."""
    if name in PLAIN_SIGNALS:
        return name, None
    match = _LLM_SIGNAL.match(name)
    if match and match.group(1) in LLM_SIGNALS and int(match.group(2)) >= 1:
        return match.group(1), int(match.group(2))
    raise ValueError(
        f"unknown signal {name!r}; accepted: {sorted(PLAIN_SIGNALS)} or "
        f"'<{'|'.join(sorted(LLM_SIGNALS))}>@llm:K' with K >= 1"
    )
# What every family provides alike: computed by the runtime from the family's facts.
FAMILY_SIGNALS = frozenset(
    {
        "visual", "entry_visual", "text_embeds", "text_mask", "text_relevance",
        "attn_rows", "attn_last", "attn_last_next", "hidden", "hidden_norm", "keys", "keys_rope",
        "text_hidden", "text_hidden_norm", "text_keys_rope",
    }
)
