"""What the runtime needs to know of a model family: the adapter protocol.

The runtime imports only this protocol, never a family: each family's adapter
(``vtprune.models.<family>``) provides these facts, and the runtime computes
everything else (signals, compaction, the cache mapping) from them.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch
from torch import nn

from .attention_rows import AttentionParts
from .compaction import Compaction
from .forward_inputs import Forward
from .layout import ImageLayout
from .vision import VisionCall


class FamilyAdapter(Protocol):
    family: str
    position_rows: int  # 1: (B, L) RoPE ids; 3: (3, B, L) M-RoPE ids
    records_encoder: bool  # record the arguments of ``core.get_image_features``
    clip_text_counterpart: bool  # the vision tower is CLIP's (a CLIP text tower matches it)
    model: nn.Module  # the model as the user gave it
    core: nn.Module  # the multimodal core: embeds text and images, calls the language model
    language_model: nn.Module
    config: Any

    # -- the images of a forward ------------------------------------------------------
    def layout(self, forward: Forward) -> ImageLayout | None: ...

    # -- the vision tower and its signals ------------------------------------------------
    @property
    def vision_module(self) -> nn.Module: ...
    def vision_call(self, args: tuple, kwargs: dict) -> Any: ...
    def encoder_call(self, args: tuple, kwargs: dict) -> dict: ...
    def install_vision_capture(self, record: Callable[[str, Any], None]) -> list[Any]: ...
    def match_vision_call(self, forward: Forward, layout: ImageLayout) -> VisionCall | None: ...
    def vision_signal(self, name: str, call: VisionCall) -> torch.Tensor: ...
    def clip_patches(self, call: VisionCall, select_layer: bool) -> torch.Tensor: ...

    # -- positions --------------------------------------------------------------------------
    def default_positions(self, batch: int, length: int, offset: int, device: torch.device) -> torch.Tensor: ...
    def compact_positions(
        self, positions: torch.Tensor, mask: torch.Tensor, forward: Forward, compaction: Compaction
    ) -> torch.Tensor: ...

    # -- the attention mask: the 2-D one the runtime compacts, and the language model's form --
    def padding_mask(self, forward: Forward, kwargs: dict) -> Any: ...
    def language_model_mask(self, kwargs: dict, forward: Forward, compaction: Compaction | None) -> dict: ...

    # -- inputs that travel with the visual tokens ----------------------------------------
    def compact_side_inputs(self, kwargs: dict, compaction: Compaction) -> dict: ...

    # -- decoder layers ---------------------------------------------------------------------
    @property
    def num_layers(self) -> int: ...
    @property
    def decoder_layers(self) -> nn.ModuleList: ...
    @property
    def final_norm(self) -> nn.Module: ...
    def attention_parts(self, layer: nn.Module) -> AttentionParts: ...
    def rope_tables(self, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...
    def key_projection(self, layer: nn.Module) -> nn.Module: ...
