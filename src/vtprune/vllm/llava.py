"""LLaVA-1.5 served by vLLM with vtprune: ``LlavaForConditionalGeneration`` that keeps K
of each image's tokens.

Without a ``vtprune`` entry in the model's config every method below defers to vLLM's
own class, so the model is served exactly as stock vLLM serves it. With one:

* the prompt processor gives each image K placeholders, K the plan's budget of the
  image's (image_size / patch_size)^2 tokens; vLLM's profiling, encoder cache and
  scheduler all count those K;
* ``embed_multimodal`` runs the CLIP tower and projector as stock, recomputes the
  signals the method reads (the CLS attention row and keys of the feature layer, from
  its captured input and fused q/k/v projection; vLLM's attention returns no weights),
  runs the method's selection and returns the K kept rows, with their position ids in
  extra channels;
* positions: the language model's rotary embedding is M-RoPE with three equal rows
  (identical to LLaVA's 1-D RoPE), so that vLLM's multimodal-pruning hook can give
  each kept token its original id and the text after the image its unpruned ids
  (``positions="original"``), or number the kept tokens consecutively
  (``positions="compact"``).

Checkpoints saved by transformers 5 name the CLIP tower ``vision_tower.embeddings...``
where vLLM's tower is ``vision_tower.vision_model.embeddings...``: both load.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

import torch
from vllm.model_executor.models.interfaces import SupportsMRoPE
from vllm.model_executor.models.llava import (
    LlavaDummyInputsBuilder,
    LlavaForConditionalGeneration,
    LlavaMultiModalProcessor,
    LlavaProcessingInfo,
    _build_llava_or_pixtral_hf_info,
    _build_llava_or_pixtral_hf_processor,
)
from vllm.model_executor.models.utils import AutoWeightsLoader, WeightsMapper
from vllm.multimodal import MULTIMODAL_REGISTRY

from ..models.clip_tower_signals import saliency
from .placement import EncoderPositionsMixin
from .positions import encode, provisional
from .families import grid_side, llava_plan
from .processing import ORDINAL, TEXT, PlanInfoMixin, SelectionInputsMixin
from .selection import select_group
from .serving import prompt_signals, stack_rows

class VtpruneLlavaProcessingInfo(PlanInfoMixin, LlavaProcessingInfo):
    plan_of = staticmethod(llava_plan)
    image_token_field = "image_token_index"


class VtpruneLlavaMultiModalProcessor(SelectionInputsMixin, LlavaMultiModalProcessor):
    pass


def _info(ctx: Any):
    info = _build_llava_or_pixtral_hf_info(ctx)
    return VtpruneLlavaProcessingInfo(ctx) if isinstance(info, LlavaProcessingInfo) else info


def _processor(info: Any, dummy_inputs: Any):
    if isinstance(info, VtpruneLlavaProcessingInfo):
        return VtpruneLlavaMultiModalProcessor(info, dummy_inputs)
    return _build_llava_or_pixtral_hf_processor(info, dummy_inputs)


@MULTIMODAL_REGISTRY.register_processor(_processor, info=_info, dummy_inputs=LlavaDummyInputsBuilder)
class VtpruneLlavaForConditionalGeneration(EncoderPositionsMixin, LlavaForConditionalGeneration, SupportsMRoPE):
    hf_to_vllm_mapper = WeightsMapper(
        orig_to_new_prefix={
            **LlavaForConditionalGeneration.hf_to_vllm_mapper.orig_to_new_prefix,
        },
        orig_to_new_regex={
            # transformers 5 saves the CLIP tower without its ``vision_model`` level
            re.compile(r"^((?:model\.)?vision_tower\.)(embeddings|pre_layrnorm|encoder|post_layernorm)\."): r"\1vision_model.\2.",
        },
    )

    def __init__(self, *, vllm_config: Any, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self.vtprune = llava_plan(self.config)
        self.grid = (grid_side(self.config),) * 2
        self.vtprune_last_keep: list[torch.Tensor] = []

    # -- encoder ------------------------------------------------------------------------
    def embed_multimodal(self, **kwargs: object):
        if self.vtprune is None:
            return super().embed_multimodal(**kwargs)
        ordinal, text = kwargs.pop(ORDINAL, None), kwargs.pop(TEXT, None)
        image_input = self._parse_and_validate_image_input(**kwargs)
        if image_input is None:
            return []
        if image_input["type"] != "pixel_values":
            raise ValueError("vtprune: a pruned model selects from the vision tower's run; pass images, not image_embeds")
        plan = self.vtprune
        captures: dict[str, torch.Tensor] = {}
        hooks = self._capture(captures) if plan.needs & {"vision_saliency", "vision_keys"} else []
        try:
            features = self._image_pixels_to_features(self.vision_tower, image_input["pixel_values"])
        finally:
            for hook in hooks:
                hook.remove()
        visual = self.multi_modal_projector(features)  # (I, N, D)
        images = visual.shape[0]
        signal = self._signals(features, captures, text, images)
        ordinals = stack_rows(ordinal, images, visual.device)
        kept, chosen = select_group(plan, self.grid, visual, ordinals, signal)
        self.vtprune_last_keep = list(kept)  # per image of the last encoder run, for inspection
        rows = kept.shape[1]
        if plan.original_positions:
            offsets, span = kept, self.grid[0] * self.grid[1]
        else:
            offsets, span = torch.arange(rows, device=kept.device).expand(images, rows), rows
        return [
            torch.cat((chosen[i], encode(offsets[i].expand(3, rows), span, chosen.dtype)), dim=-1)
            for i in range(images)
        ]

    def _capture(self, captures: dict[str, torch.Tensor]) -> list[Any]:
        layer = self.vision_tower.vision_model.encoder.layers[-1]  # built up to the feature layer
        return [
            layer.register_forward_pre_hook(lambda module, args: captures.__setitem__("layer_in", args[0])),
            layer.self_attn.qkv_proj.register_forward_hook(
                lambda module, args, out: captures.__setitem__("qkv", out[0] if isinstance(out, tuple) else out)
            ),
        ]

    def _signals(self, features: torch.Tensor, captures: dict, text: Any, images: int):
        attn = self.vision_tower.vision_model.encoder.layers[-1].self_attn
        prompt: dict[str, torch.Tensor] = {}

        def signal(name: str) -> torch.Tensor:
            if name in ("vision_saliency", "vision_keys"):
                query, keys, _ = captures["qkv"].chunk(3, dim=-1)
                if name == "vision_keys":  # averaged over heads, as the Hugging Face path
                    return keys[:, 1:].unflatten(-1, (attn.num_heads_per_partition, -1)).mean(-2)
                return saliency(query[:, :1], keys, attn.num_heads_per_partition, attn.scale, cls=True)
            if name not in prompt:
                prompt.update(prompt_signals(self.language_model, text, images, features.device))
            return prompt[name]

        return signal

    # -- positions ------------------------------------------------------------------------
    def get_mrope_input_positions(self, input_tokens: list[int], mm_features: list[Any]) -> tuple[torch.Tensor, int]:
        tokens = self.grid[0] * self.grid[1]
        images = []
        for feature in mm_features:
            if feature.modality == "image":
                count = feature.mm_position.length
                images.append((feature.mm_position.offset, count, tokens if self.vtprune.original_positions else count))
        return provisional(len(input_tokens), images)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        return AutoWeightsLoader(self).load_weights(weights, mapper=self.hf_to_vllm_mapper)
