"""vLLM's per-architecture config hooks for the served families (see :mod:`.families`)."""

from __future__ import annotations

from typing import Any

from vllm.model_executor.models.config import VerifyAndUpdateConfig

from .families import prepare_llava


class LlavaConfigHook(VerifyAndUpdateConfig):
    @staticmethod
    def verify_and_update_model_config(model_config: Any) -> None:
        prepare_llava(model_config)


HOOKS = {"LlavaForConditionalGeneration": LlavaConfigHook}
