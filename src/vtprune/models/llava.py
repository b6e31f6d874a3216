"""Adapter for LLaVA-1.5 (``LlavaForConditionalGeneration``, ``LlavaModel``).

Each image is a fixed square grid of ``(image_size // patch_size) ** 2`` tokens (576
for LLaVA-1.5 at 336 px, patch 14), written in raster order where the prompt has its
``<image>`` placeholder tokens. Positions are plain 1-D RoPE ids.
"""

from __future__ import annotations

import torch
from torch import nn

from ..runtime.layout import ImageLayout
from .base import Forward, ModelAdapter


class LlavaAdapter(ModelAdapter):
    family = "llava"
    model_classes = ("LlavaForConditionalGeneration", "LlavaModel")
    position_rows = 1

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

    @property
    def vision_module(self) -> nn.Module:
        return self.core.vision_tower

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
