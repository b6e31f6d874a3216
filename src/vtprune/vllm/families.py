"""What each served family's plan and config need, without importing vLLM.

vLLM builds the model config (and runs the hooks below) in the process that starts the
engine, before any model code is imported: the plan is checked there, so a bad option
fails at engine start, and the config is prepared for the positions a pruned model
gives its tokens.
"""

from __future__ import annotations

from typing import Any

from .plan import CONFIG_KEY, ServingError, ServingPlan, plan_from_config

VISION = frozenset({"visual", "vision_saliency", "vision_keys"})
PROMPT = frozenset({"text_embeds", "text_mask", "text_relevance"})
LLAVA_SIGNALS = VISION | PROMPT
QWEN_SIGNALS = VISION | PROMPT


def grid_side(hf_config: Any) -> int:
    vision = hf_config.vision_config
    return int(vision.image_size) // int(vision.patch_size)


def llava_plan(hf_config: Any) -> ServingPlan | None:
    """The plan in a LLaVA config (``None``: stock), checked against the model."""
    if getattr(hf_config, CONFIG_KEY, None) is None:
        return None
    if getattr(hf_config.vision_config, "model_type", "") != "clip_vision_model":
        raise ServingError("vtprune: served LLaVA models need a CLIP vision tower (LLaVA-1.5)")
    if getattr(hf_config, "vision_feature_select_strategy", "default") != "default":
        raise ServingError("vtprune: vision_feature_select_strategy must be 'default' (the CLS token is not a patch)")
    if not isinstance(hf_config.vision_feature_layer, int):
        raise ServingError("vtprune: served LLaVA models need one vision_feature_layer")
    side = grid_side(hf_config)
    return plan_from_config(
        hf_config, num_layers=int(hf_config.text_config.num_hidden_layers), image_tokens=side * side, signals=LLAVA_SIGNALS
    )


def prepare_llava(model_config: Any) -> None:
    """A pruned LLaVA's rotary embedding becomes M-RoPE with three equal rows (exactly
    its 1-D RoPE), so that vLLM's position hook can give kept tokens their own ids."""
    hf_config = model_config.hf_config
    if llava_plan(hf_config) is None:
        return
    text = hf_config.text_config
    rope = dict(getattr(text, "rope_parameters", None) or {})
    if rope.get("rope_type", "default") != "default" or rope.get("partial_rotary_factor", 1.0) != 1.0:
        raise ServingError(f"vtprune: served LLaVA models need plain RoPE; this one has {rope}")
    if "mrope_section" not in rope:
        half = int(getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads) // 2
        # Any split works: the three rows are equal, so every section reads the same id.
        rope["mrope_section"] = [half - 2 * (half // 3), half // 3, half // 3]
        text.rope_parameters = rope


def qwen_plan(hf_config: Any) -> ServingPlan | None:
    """The plan in a Qwen2-VL / Qwen2.5-VL / Qwen3-VL config (``None``: stock), checked against the model.

    Image sizes vary, so the budget is resolved per image when its prompt is processed.
    ``positions="compact"`` cannot be served: a compact image spans max(kept rows, kept
    columns) ids, which is known only after selection, while vLLM fixes the ids of the
    text after the image when the request arrives.
    """
    if getattr(hf_config, CONFIG_KEY, None) is None:
        return None
    plan = plan_from_config(
        hf_config, num_layers=int(hf_config.text_config.num_hidden_layers), image_tokens=None, signals=QWEN_SIGNALS
    )
    if not plan.original_positions:
        raise ServingError(
            f"{CONFIG_KEY}: positions={plan.config.positions!r} cannot be served on M-RoPE models (Qwen2-VL, "
            "Qwen2.5-VL, Qwen3-VL): the span of a compacted image is known only after selection; use positions='original'"
        )
    return plan
