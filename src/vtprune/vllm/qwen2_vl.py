"""Qwen2-VL and Qwen2.5-VL served by vLLM with vtprune: each image keeps K of its tokens.

Without a ``vtprune`` entry in the model's config every method below defers to vLLM's
own classes (the model is served exactly as stock). With one:

* the prompt processor gives each image K placeholders, K the plan's budget of the
  image's t * h/2 * w/2 merged tokens (images differ in size, so K is resolved per
  image, by the Hugging Face path's rule); vLLM's profiling, encoder cache and
  scheduler count those K;
* the vision tower runs as stock; the signals of its last block (the mean attention
  each patch receives, and its keys, per 2x2 merged token) are recomputed from the
  block's captured q/k/v projection, rotary tables and attention segments, and
  Qwen2.5-VL's window order is undone, exactly as the Hugging Face adapter computes
  them; the method selects, and the K kept rows go back with their position ids in
  extra channels;
* positions: a kept token at (row, col) of its image keeps the M-RoPE ids it has
  unpruned (start, start + row, start + col), and the text after the image resumes
  max(rows, cols) ids later, as unpruned. Videos are not pruned and keep their ids.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from vllm.model_executor.models.qwen2_5_vl import (
    Qwen2_5_VLDummyInputsBuilder,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLMultiModalProcessor,
    Qwen2_5_VLProcessingInfo,
)
from vllm.model_executor.models.qwen2_vl import (
    Qwen2VLDummyInputsBuilder,
    Qwen2VLForConditionalGeneration,
    Qwen2VLMultiModalProcessor,
    Qwen2VLProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.processing import PromptReplacement

from ..models.qwen2_vl.adapter import attention_received
from .families import qwen_plan
from .placement import EncoderPositionsMixin
from .plan import ServingError
from .positions import encode, provisional
from .processing import ORDINAL, TEXT, PlanInfoMixin, SelectionInputsMixin
from .selection import select_group
from .serving import prompt_signals, stack_rows


class _InfoMixin(PlanInfoMixin):
    plan_of = staticmethod(qwen_plan)
    image_token_field = "image_token_id"


class _ProcessorMixin(SelectionInputsMixin):
    def _get_prompt_updates(self, mm_items, hf_processor_mm_kwargs, out_mm_kwargs):
        updates = super()._get_prompt_updates(mm_items, hf_processor_mm_kwargs, out_mm_kwargs)
        plan = self.info.vtprune_plan()
        if plan is None:
            return updates

        def budgeted(stock):
            def replacement(item_idx: int):
                tokens = stock(item_idx)  # one placeholder per merged token
                return tokens[: plan.budget(len(tokens))]

            return replacement

        return [
            PromptReplacement(modality=u.modality, target=u.target, replacement=budgeted(u.replacement))
            if u.modality == "image"
            else u
            for u in updates
        ]


class VtpruneQwen2VLProcessingInfo(_InfoMixin, Qwen2VLProcessingInfo):
    pass


class VtpruneQwen2_5_VLProcessingInfo(_InfoMixin, Qwen2_5_VLProcessingInfo):
    pass


class VtpruneQwen2VLMultiModalProcessor(_ProcessorMixin, Qwen2VLMultiModalProcessor):
    pass


class VtpruneQwen2_5_VLMultiModalProcessor(_ProcessorMixin, Qwen2_5_VLMultiModalProcessor):
    pass


class _ModelMixin(EncoderPositionsMixin):
    def __init__(self, *, vllm_config: Any, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self.vtprune = qwen_plan(self.config)
        self.vtprune_last_keep: list[torch.Tensor] = []
        self._vtprune_fields = (None, None)
        if self.vtprune is not None and getattr(self, "use_data_parallel", False):
            raise ServingError("vtprune: mm_encoder_tp_mode='data' is not supported with a vtprune plan")
        if self.vtprune is not None and getattr(self, "is_multimodal_pruning_enabled", False):
            raise ServingError("vtprune: video_pruning_rate (vLLM's own pruning) cannot be combined with a vtprune plan")

    # -- encoder ------------------------------------------------------------------------
    def embed_multimodal(self, **kwargs: object):
        if self.vtprune is not None:
            self._vtprune_fields = (kwargs.pop(ORDINAL, None), kwargs.pop(TEXT, None))
        return super().embed_multimodal(**kwargs)

    def _process_image_input(self, image_input):
        if self.vtprune is None:
            return super()._process_image_input(image_input)
        if image_input["type"] != "pixel_values":
            raise ValueError("vtprune: a pruned model selects from the vision tower's run; pass images, not image_embeds")
        plan = self.vtprune
        ordinal, text = self._vtprune_fields
        captures: dict[str, Any] = {}
        hooks = self._capture(captures) if plan.needs & {"vision_saliency", "vision_keys"} else []
        try:
            embeds = super()._process_image_input(image_input)  # per image: (N_i, D)
        finally:
            for hook in hooks:
                hook.remove()
        grid_thw = image_input["image_grid_thw"].tolist()
        merge = self.visual.spatial_merge_size
        grids = [(t * (h // merge), w // merge) for t, h, w in grid_thw]
        per_image = self._vision_signals(captures, grid_thw) if captures else {}
        images = len(embeds)
        device = embeds[0].device
        ordinals = stack_rows(ordinal, images, device)
        prompt: dict[str, torch.Tensor] = {}
        out, self.vtprune_last_keep = [], []
        for i, (visual, grid) in enumerate(zip(embeds, grids)):  # images differ in size: one at a time

            def signal(name: str, i=i, visual=visual) -> torch.Tensor:
                if name in per_image:
                    return per_image[name][i][None]
                if not prompt:
                    prompt.update(prompt_signals(self.language_model, text, images, device))
                return prompt[name][i : i + 1]

            visual, levels = self._vtprune_levels(visual)
            kept, chosen = select_group(plan, grid, visual[None], ordinals[i : i + 1], signal)
            kept, chosen = kept[0], chosen[0]
            self.vtprune_last_keep.append(kept)
            offsets = torch.stack((torch.zeros_like(kept), kept // grid[1], kept % grid[1]))
            rows = [chosen] + ([levels[kept]] if levels is not None else [])
            out.append(torch.cat((*rows, encode(offsets, max(grid), chosen.dtype)), dim=-1))
        return tuple(out)

    def _vtprune_levels(self, embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """An image's (N, D) LLM-input features, and the (N, D') features that travel
        with each token beside them (None here; Qwen3-VL's DeepStack levels)."""
        return embeds, None

    def _capture(self, captures: dict[str, Any]) -> list[Any]:
        attn = self.visual.blocks[-1].attn

        def attention_input(module: Any, args: tuple, kwargs: dict) -> None:
            captures["cu_seqlens"] = kwargs.get("cu_seqlens", args[1] if len(args) > 1 else None)
            captures["cos"] = kwargs.get("rotary_pos_emb_cos", args[2] if len(args) > 2 else None)
            captures["sin"] = kwargs.get("rotary_pos_emb_sin", args[3] if len(args) > 3 else None)

        def qkv_output(module: Any, args: tuple, out: Any) -> None:
            captures["qkv"] = out[0] if isinstance(out, tuple) else out

        return [
            attn.register_forward_pre_hook(attention_input, with_kwargs=True),
            attn.qkv.register_forward_hook(qkv_output),
        ]

    def _vision_signals(self, captures: dict[str, Any], grid_thw: list[list[int]]) -> dict[str, list[torch.Tensor]]:
        """Per image: ``vision_saliency`` (N,) and ``vision_keys`` (N, C) of the last
        vision block, per merged token in raster order (the Hugging Face adapter's)."""
        attn = self.visual.blocks[-1].attn
        qkv = captures["qkv"].reshape(captures["qkv"].shape[0], -1)  # (S, 3 * heads * head_dim)
        patches = qkv.shape[0]
        heads = attn.num_attention_heads_per_partition
        head_dim = attn.hidden_size_per_attention_head
        q, k, _ = qkv.view(patches, 3, heads, head_dim).float().unbind(1)
        bounds = torch.as_tensor(captures["cu_seqlens"]).reshape(-1).cpu()
        if bounds[-1].item() != patches:
            raise RuntimeError("vtprune: the vision attention's segments do not cover its patches")
        # vLLM's rotary tables hold each frequency once (head_dim / 2 columns); the
        # rotation applied is the rotate-half form with each table repeated.
        rope = tuple(t if t.shape[-1] == head_dim else torch.cat((t, t), dim=-1) for t in (captures["cos"], captures["sin"]))
        saliency = attention_received(q, k, rope, bounds, head_dim**-0.5)
        unit = self.visual.spatial_merge_size**2
        per_token = {
            "vision_saliency": saliency.view(patches // unit, unit).mean(1),
            "vision_keys": k.mean(1).view(patches // unit, unit, -1).mean(1),  # averaged over heads
        }
        natural = self._natural_order(grid_thw, patches // unit)
        sizes = [t * h * w // unit for t, h, w in grid_thw]
        return {name: list(value[natural].split(sizes)) for name, value in per_token.items()}

    def _natural_order(self, grid_thw: list[list[int]], tokens: int) -> torch.Tensor:
        """Indices that put the tower's merged tokens back in raster order (Qwen2.5-VL
        runs them in attention windows; Qwen2-VL in raster order)."""
        if not hasattr(self.visual, "fullatt_block_indexes"):
            return torch.arange(tokens)
        return self.visual.prepare_encoder_metadata(grid_thw, device=torch.device("cpu"))["reverse_indices"].cpu()

    # -- positions ------------------------------------------------------------------------
    def get_mrope_input_positions(self, input_tokens: list[int], mm_features: list[Any]):
        if self.vtprune is None:
            return super().get_mrope_input_positions(input_tokens, mm_features)
        features = sorted(mm_features, key=lambda f: f.mm_position.offset)
        items = []
        for feature, (offset, t, h, w, t_factor) in zip(features, self.iter_mm_grid_thw(features)):
            if feature.modality == "image":
                items.append((offset, feature.mm_position.length, max(t * h, w)))
            else:  # a video keeps the ids stock vLLM gives it
                grid = np.indices((t, h, w))
                if t_factor != 1.0:
                    grid[0] = (grid[0] * t_factor).astype(np.int64)
                ids = torch.from_numpy(grid.reshape(3, -1).copy())
                items.append((offset, t * h * w, int(ids.max()) + 1, ids))
        return provisional(len(input_tokens), items)


@MULTIMODAL_REGISTRY.register_processor(
    VtpruneQwen2VLMultiModalProcessor, info=VtpruneQwen2VLProcessingInfo, dummy_inputs=Qwen2VLDummyInputsBuilder
)
class VtpruneQwen2VLForConditionalGeneration(_ModelMixin, Qwen2VLForConditionalGeneration):
    pass


@MULTIMODAL_REGISTRY.register_processor(
    VtpruneQwen2_5_VLMultiModalProcessor, info=VtpruneQwen2_5_VLProcessingInfo, dummy_inputs=Qwen2_5_VLDummyInputsBuilder
)
class VtpruneQwen2_5_VLForConditionalGeneration(_ModelMixin, Qwen2_5_VLForConditionalGeneration):
    pass
