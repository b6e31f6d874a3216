"""Adapter for LLaVA-1.5 (``LlavaForConditionalGeneration``, ``LlavaModel``).

Each image is a fixed square grid of ``(image_size // patch_size) ** 2`` tokens (576
for LLaVA-1.5 at 336 px, patch 14), written in raster order where the prompt has its
``<image>`` placeholder tokens. Positions are plain 1-D RoPE ids.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ...runtime.layout import ImageLayout
from ...runtime.vision import VisionCall
from .. import clip_tower_signals
from ...runtime.forward_inputs import Forward
from ..base import ModelAdapter
from .names import LLAVA


class LlavaAdapter(ModelAdapter):
    names = LLAVA
    position_rows = 1
    clip_text_counterpart = True

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        strategy = getattr(self.config, "vision_feature_select_strategy", "default")
        if strategy != "default":
            raise ValueError(
                f"vision_feature_select_strategy={strategy!r} puts the CLS token among the image "
                "tokens, which has no place on the patch grid; accepted: 'default'"
            )
        vision = self.config.vision_config
        side = int(vision.image_size) // int(vision.patch_size)
        self.grid = (side, side)

    @classmethod
    def image_tokens_of(cls, config: Any) -> int:
        return (int(config.vision_config.image_size) // int(config.vision_config.patch_size)) ** 2

    @property
    def vision_module(self) -> nn.Module:
        return self.core.vision_tower

    def vision_call(self, args: tuple, kwargs: dict) -> Any:
        pixel_values = args[0] if args else kwargs.get("pixel_values")
        return None if pixel_values is None else int(pixel_values.shape[0])  # images in the call

    def install_vision_capture(self, record: Callable[[str, Any], None]) -> list[Any]:
        return clip_tower_signals.install_capture(self.core.vision_tower, self.config.vision_feature_layer, record)

    def clip_patches(self, call: VisionCall, select_layer: bool) -> torch.Tensor:
        """Patches (no CLS) of the layer LLaVA reads, or of the final layer, through the
        tower's post layer norm: what CLIP's projection head maps into text space."""
        post_ln = clip_tower_signals.post_layernorm(self.core.vision_tower)
        return post_ln(call.captures["layer_out" if select_layer else "last_out"][:, 1:])

    def vision_signal(self, name: str, call: VisionCall) -> torch.Tensor:
        """Signals of the vision layer LLaVA reads: each image is one tile."""
        return clip_tower_signals.tile_signal(name, call.captures, self.core.vision_tower, self.config.vision_feature_layer)

    def layout(self, forward: Forward) -> ImageLayout | None:
        if not forward.has_image_features:
            return None
        mask = self.image_token_mask(forward)
        per_image = self.grid[0] * self.grid[1]
        pixel_values = forward.core_inputs.get("pixel_values")
        # Shapes known on the host: no device sync to count the images.
        num_images = len(forward.encoded_images) if pixel_values is None else int(pixel_values.shape[0])
        if num_images == 0:
            return None
        return ImageLayout(mask, (per_image,) * num_images, (self.grid,) * num_images)
