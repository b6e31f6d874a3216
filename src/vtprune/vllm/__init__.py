"""Serving pruned models with vLLM.

vtprune is a vLLM plugin (entry point ``vllm.general_plugins``, installed with the
package): in every vLLM process it registers model classes for LLaVA-1.5, Qwen2-VL,
Qwen2.5-VL and Qwen3-VL that prune visual tokens when the model's config carries a
``vtprune`` entry, and behave exactly as vLLM's own classes when it does not::

    vllm serve llava-hf/llava-1.5-7b-hf --hf-overrides '{"vtprune": {"method": "divprune", "keep": 64}}'

    from vllm import LLM
    import vtprune.vllm
    llm = LLM(model="Qwen/Qwen2.5-VL-7B-Instruct", **vtprune.vllm.engine_kwargs("visionzip", keep=0.222))

Only methods that select before the language model can be served (vLLM's paged KV
cache holds the same tokens in every layer): ``servable_methods()`` lists them. The
same method, budget and positions select the same tokens as ``vtprune.prune`` on the
Hugging Face model. Bad options fail when the engine starts, before weights load.

Importing this module does not import vLLM.
"""

from __future__ import annotations

from typing import Any

from .plan import CONFIG_KEY, ServingError, servable_methods

__all__ = ["CONFIG_KEY", "ServingError", "engine_kwargs", "register", "servable_methods"]

# vLLM architecture -> the class that serves it, pruned or not.
ARCHITECTURES = {
    "LlavaForConditionalGeneration": "vtprune.vllm.llava:VtpruneLlavaForConditionalGeneration",
    "Qwen2VLForConditionalGeneration": "vtprune.vllm.qwen2_vl:VtpruneQwen2VLForConditionalGeneration",
    "Qwen2_5_VLForConditionalGeneration": "vtprune.vllm.qwen2_vl:VtpruneQwen2_5_VLForConditionalGeneration",
    "Qwen3VLForConditionalGeneration": "vtprune.vllm.qwen3_vl:VtpruneQwen3VLForConditionalGeneration",
}


def engine_kwargs(method: str, **options: Any) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM(...)`` / ``EngineArgs`` that serve ``method``.

    ``options`` are the method's config fields (``keep``, ``positions``...). They are
    checked now, as far as they can be without the model (the budget against the
    model's token count, and whether the model's family is served, are checked when the
    engine starts).
    """
    from .families import LLAVA_SIGNALS
    from .plan import make_plan

    plan = make_plan({"method": method, **options}, num_layers=32, image_tokens=None, signals=LLAVA_SIGNALS)
    return {"hf_overrides": {CONFIG_KEY: {"method": plan.method.name, **options}}}


def register() -> None:
    """The ``vllm.general_plugins`` entry point: idempotent, called in every vLLM process.

    Classes are registered by name (``module:Class``), so nothing of vLLM's model code
    is imported until a model is built.
    """
    from vllm import ModelRegistry

    for architecture, target in ARCHITECTURES.items():
        ModelRegistry.register_model(architecture, target)
        ModelRegistry.register_model("Vtprune" + architecture, target)
    _register_config_hooks()


def _register_config_hooks() -> None:
    """vLLM runs per-architecture config hooks where it builds the model config; ours
    check the plan there (so a bad one fails at engine start) and switch on the
    position hook a pruned model needs."""
    from vllm.model_executor.models import config as model_configs

    from .hooks import HOOKS

    for architecture, hook in HOOKS.items():
        stock = model_configs.MODELS_CONFIG_MAP.get(architecture)
        if stock is not None and not issubclass(stock, hook):  # keep vLLM's own hook running first
            hook = type(hook.__name__, (hook,), {"stock": stock})
        model_configs.MODELS_CONFIG_MAP[architecture] = hook
        model_configs.MODELS_CONFIG_MAP["Vtprune" + architecture] = hook
