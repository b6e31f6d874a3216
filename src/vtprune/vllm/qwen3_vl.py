"""Qwen3-VL served by vLLM with vtprune: each image keeps K of its tokens.

The path is Qwen2-VL's (:mod:`.qwen2_vl`): K placeholders per image, the vision tower
run as stock, its last block's signals recomputed from the captured q/k/v, rotary
tables and per-image attention segments (Qwen3-VL's ViT has no windows), exactly as
the Hugging Face adapter computes them, and the K kept rows returned with their
position offsets in extra channels. What Qwen3-VL adds:

* **DeepStack.** vLLM's vision tower returns per merged token its features for the
  language model's input followed by the merged features of each DeepStack block,
  concatenated along channels, (N, D * (1 + levels)); ``embed_input_ids`` splits them
  there. The method selects on the first D channels (what the Hugging Face path's
  ``visual`` signal reads), and every kept row carries the DeepStack features of its
  own token at every level, also when a merging method rewrote its first D channels
  (as on the Hugging Face path). The position channels come after all of them and are
  stripped before vLLM's split.
* **Positions.** Interleaved M-RoPE changes which rotary frequencies read which id
  row, not the ids: a kept image token keeps (s, s + row, s + col). A video is its
  frames one by one, each after its timestamp text and between its own markers; it is
  not pruned, and each frame keeps the ids stock vLLM gives it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from vllm.model_executor.models.qwen3_vl import (
    Qwen3VLDummyInputsBuilder,
    Qwen3VLForConditionalGeneration,
    Qwen3VLMultiModalProcessor,
    Qwen3VLProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY

from .positions import provisional
from .qwen2_vl import _InfoMixin, _ModelMixin, _ProcessorMixin


class VtpruneQwen3VLProcessingInfo(_InfoMixin, Qwen3VLProcessingInfo):
    pass


class VtpruneQwen3VLMultiModalProcessor(_ProcessorMixin, Qwen3VLMultiModalProcessor):
    pass


class _Qwen3ModelMixin(_ModelMixin):
    def _vtprune_width(self) -> int:
        return int(self.visual_dim + self.multiscale_dim)  # the tower's output, DeepStack levels included

    def _vtprune_levels(self, embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.multiscale_dim:
            return embeds, None
        return embeds[:, : self.visual_dim], embeds[:, self.visual_dim :]

    def get_mrope_input_positions(self, input_tokens: list[int], mm_features: list[Any]):
        if self.vtprune is None:
            return super().get_mrope_input_positions(input_tokens, mm_features)
        config = self.config
        items = []
        for feature in sorted(mm_features, key=lambda f: f.mm_position.offset):
            parts = self._iter_mm_grid_hw(
                input_tokens,
                [feature],
                video_token_id=config.video_token_id,
                vision_start_token_id=config.vision_start_token_id,
                vision_end_token_id=config.vision_end_token_id,
                spatial_merge_size=config.vision_config.spatial_merge_size,
            )
            if feature.modality == "image":
                ((offset, h, w, _),) = parts
                items.append((offset, feature.mm_position.length, max(h, w)))
            else:  # each frame of a video keeps the ids stock vLLM gives it
                for offset, h, w, tokens in parts:
                    ids = torch.from_numpy(np.indices((1, h, w)).reshape(3, -1).copy())
                    items.append((offset, tokens, max(h, w), ids))
        return provisional(len(input_tokens), items)


@MULTIMODAL_REGISTRY.register_processor(
    VtpruneQwen3VLMultiModalProcessor, info=VtpruneQwen3VLProcessingInfo, dummy_inputs=Qwen3VLDummyInputsBuilder
)
class VtpruneQwen3VLForConditionalGeneration(_Qwen3ModelMixin, Qwen3VLForConditionalGeneration):
    pass
