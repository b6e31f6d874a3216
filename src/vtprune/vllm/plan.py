"""What a served model prunes: the method, its config and its stages, checked at engine start.

vLLM sizes every image's placeholders when the prompt is processed, before the vision
tower runs, and its paged KV cache holds the same tokens in every layer. So a served
method must choose all of its tokens before the language model: only pre-LLM stages
can run here. The plan is read from the model's Hugging Face config, where
``hf_overrides={"vtprune": {...}}`` puts it, and every check runs when the engine
builds its config, before any weight is loaded or request served.

This module imports nothing from vLLM, so options can be checked without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..config import PruneConfig
from ..registry import PRE_LLM, Method, ModelShape, Stage, all_methods

CONFIG_KEY = "vtprune"  # the key of the plan in the model's config (hf_overrides)

# Signals the served models provide; see each family module.
VISION_SIGNALS = frozenset({"visual", "vision_saliency", "vision_keys"})
PROMPT_SIGNALS = frozenset({"text_embeds", "text_mask", "text_relevance"})


class ServingError(ValueError):
    """A vtprune option that cannot be served; raised when the engine starts."""


@dataclass(frozen=True)
class ServingPlan:
    """One method as a served model runs it."""

    method: Method
    config: PruneConfig
    stages: tuple[Stage, ...]

    @property
    def needs(self) -> frozenset[str]:
        return frozenset().union(*(stage.needs for stage in self.stages))

    @property
    def reads_prompt(self) -> bool:
        """Whether the selection depends on the prompt's text (then a selection is
        only reused for the same image with the same instruction)."""
        return bool(self.needs & PROMPT_SIGNALS)

    @property
    def original_positions(self) -> bool:
        return self.config.positions == "original"

    def budget(self, num_tokens: int) -> int:
        """Placeholders (kept tokens) of an image with ``num_tokens`` visual tokens."""
        return self.config.budget(num_tokens)

    def to_options(self) -> dict[str, Any]:
        """The plan as the ``vtprune`` entry of ``hf_overrides``."""
        return {"method": self.method.name, **{k: v for k, v in self.config.to_dict().items() if k != "method"}}


def servable_methods() -> list[str]:
    """Methods whose every stage acts before the language model (at any depth)."""
    names = []
    for method in all_methods():
        config = method.resolve(method.config(), ModelShape(32, None))
        if all(stage.where == PRE_LLM for stage in method.stages(config, 32)):
            names.append(method.name)
    return names


def make_plan(
    options: Mapping[str, Any], *, num_layers: int, image_tokens: int | None, signals: frozenset[str]
) -> ServingPlan:
    """Check ``options`` (``{"method": ..., **config}``) against a model and build its plan.

    ``signals`` are what the served family provides. Every error names the option and
    what is accepted.
    """
    from ..api import _make_config  # the same option checks as vtprune.prune

    if not isinstance(options, Mapping):
        raise ServingError(
            f"{CONFIG_KEY}: expected a mapping like {{'method': 'divprune', 'keep': 64}}; got {options!r}"
        )
    options = dict(options)
    method = options.pop("method", None)
    if method is None:
        raise ServingError(f"{CONFIG_KEY}: 'method' is required; servable methods: {servable_methods()}")
    try:
        spec, config = _make_config(method, options)
        config = spec.resolve(config, ModelShape(num_layers, image_tokens))
        stages = tuple(spec.stages(config, num_layers))
    except (TypeError, ValueError) as error:
        raise ServingError(f"{CONFIG_KEY}: {error}") from error
    inside = [stage.where for stage in stages if stage.where != PRE_LLM]
    if inside:
        raise ServingError(
            f"{CONFIG_KEY}: method {spec.name!r} prunes inside the language model (stage(s) {inside}), which "
            "vLLM cannot serve: its paged KV cache holds the same tokens in every layer. Methods that "
            f"select before the language model: {servable_methods()}"
        )
    missing = sorted(set().union(*(stage.needs for stage in stages)) - signals)
    if missing:
        raise ServingError(
            f"{CONFIG_KEY}: method {spec.name!r} reads {missing}, which this served model does not provide; "
            f"provided: {sorted(signals)}"
        )
    if getattr(config, "text_tower", None) is not None:
        raise ServingError(
            f"{CONFIG_KEY}: text_tower is not available when serving; leave it unset (text relevance is then "
            "scored in the language model's input space)"
        )
    return ServingPlan(spec, config, stages)


def plan_from_config(hf_config: Any, *, num_layers: int, image_tokens: int | None, signals: frozenset[str]):
    """The plan in a model's config, or ``None`` when it has none (stock behaviour)."""
    options = getattr(hf_config, CONFIG_KEY, None)
    if options is None:
        return None
    return make_plan(options, num_layers=num_layers, image_tokens=image_tokens, signals=signals)
