"""One forward of the multimodal core, as the runtime saw it called.

Built by the runtime's hooks (the core's arguments, the vision tower's recorded calls)
and read by the family's adapter to find the forward's images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .layout import ImageLayout


@dataclass
class Forward:
    """What one forward of the multimodal core was called with, and what the language
    model is about to receive. Built by the runtime, read by the adapter (where its images are)."""

    core_inputs: dict[str, Any]
    vision_calls: tuple[Any, ...] = ()
    encoder_calls: tuple[dict, ...] = ()  # what the image encoder was called with (see records_encoder)
    inputs_embeds: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    layout: ImageLayout | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # what the adapter notes of this forward
    prune_videos: bool = True  # the config's ``videos``: whether video tokens are in the layout

    @property
    def has_image_features(self) -> bool:
        """Whether this forward brings image features (not only image token ids: a
        generated token may equal the image token id and must then stay text)."""
        return self.core_inputs.get("pixel_values") is not None or self.encoded_images is not None

    @property
    def encoded_images(self) -> tuple[torch.Tensor, ...] | None:
        """Per-image features computed before the forward (``generate`` encodes images
        before the prefill and passes them as ``mm_encoder_outputs``)."""
        encoded = (self.core_inputs.get("mm_encoder_outputs") or {}).get("image")
        return None if encoded is None else tuple(encoded.pooler_output)

    @property
    def has_video_features(self) -> bool:
        """Whether this forward brings video features (pixels, or encoded before it)."""
        return self.core_inputs.get("pixel_values_videos") is not None or self.encoded_videos is not None

    @property
    def encoded_videos(self) -> tuple[torch.Tensor, ...] | None:
        """Per-video features computed before the forward (``generate``)."""
        encoded = (self.core_inputs.get("mm_encoder_outputs") or {}).get("video")
        return None if encoded is None else tuple(encoded.pooler_output)
