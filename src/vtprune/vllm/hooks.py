"""vLLM's per-architecture config hooks for the served families (see :mod:`.families`).

A hook runs where vLLM builds the model config, in the process that starts the engine:
a bad plan fails there, before any weight loads. Where vLLM has a hook of its own for
the architecture, it is kept as ``stock`` and runs first.
"""

from __future__ import annotations

from typing import Any

from vllm.model_executor.models.config import VerifyAndUpdateConfig

from .families import prepare_llava, qwen_plan


class _Hook(VerifyAndUpdateConfig):
    stock: Any = None

    @classmethod
    def verify_and_update_model_config(cls, model_config: Any) -> None:
        if cls.stock is not None:
            cls.stock.verify_and_update_model_config(model_config)
        cls.prepare(model_config)

    @classmethod
    def verify_and_update_config(cls, vllm_config: Any) -> None:
        if cls.stock is not None:
            cls.stock.verify_and_update_config(vllm_config)

    @staticmethod
    def prepare(model_config: Any) -> None:
        raise NotImplementedError


class LlavaConfigHook(_Hook):
    @staticmethod
    def prepare(model_config: Any) -> None:
        prepare_llava(model_config)


class QwenConfigHook(_Hook):
    @staticmethod
    def prepare(model_config: Any) -> None:
        qwen_plan(model_config.hf_config)  # checked only: Qwen's positions are M-RoPE already


HOOKS = {
    "LlavaForConditionalGeneration": LlavaConfigHook,
    "Qwen2VLForConditionalGeneration": QwenConfigHook,
    "Qwen2_5_VLForConditionalGeneration": QwenConfigHook,
    "Qwen3VLForConditionalGeneration": QwenConfigHook,
}
