"""Adapter for Mistral 3 (``Mistral3ForConditionalGeneration`` and its ``Mistral3Model``
core): Mistral Small 3.1 / 3.2 with the Pixtral vision tower.

Images have any size: ``image_sizes`` gives each image's (height, width) in pixels
(the processor resizes to multiples of ``patch_size * spatial_merge_size``), Pixtral
cuts it into ``patch_size`` patches, and the patch merger makes one LLM token of each
2x2 block of patches, so an image is a ``(height // 28) x (width // 28)`` token grid
(patch 14) in raster order. In the prompt every grid row of ``[IMG]`` placeholders
(``image_token_id``) is followed by an ``[IMG_BREAK]`` token, the last row by
``[IMG_END]`` instead. Those two are ordinary text tokens: the model writes the image
features at the ``[IMG]`` positions only (``masked_scatter`` over ``input_ids ==
image_token_id``), so they are never pruned, and an image's token indices
(``last_keep``) run over its grid without them. Positions are plain 1-D RoPE ids.

Inside the language model (Mistral's decoder: Llama-style attention with grouped
query heads) in-LLM stages need full attention: a text config with a
``sliding_window`` is refused for them. Pruning before the LLM runs there: the
window then spans the kept tokens, as it does for the language model given them.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ...runtime.forward_inputs import Forward
from ...runtime.layout import ImageLayout
from ...runtime.vision import VisionCall
from ...signal_names import VISION_SIGNALS, parse_signal
from ..base import ModelAdapter
from . import pixtral_signals
from .names import MISTRAL3


class Mistral3Adapter(ModelAdapter):
    names = MISTRAL3
    position_rows = 1

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.patch = int(self.config.vision_config.patch_size)
        self.merge = int(self.config.spatial_merge_size)

    @classmethod
    def inside_llm_refusal(cls, config: Any) -> str | None:
        window = getattr(config.text_config, "sliding_window", None)
        if window is None:
            return None
        return (
            f"in-LLM stages need full-attention layers; this model's decoder attends within a sliding "
            f"window of {window} tokens (text_config.sliding_window)"
        )

    @classmethod
    def check_config_stages(cls, config: Any, stages: list) -> None:
        super().check_config_stages(config, stages)
        for stage in stages:
            vision = {parse_signal(name)[0] for name in stage.needs} & VISION_SIGNALS
            if vision and not isinstance(config.vision_feature_layer, int):
                raise ValueError(
                    f"stage {stage.where!r} reads {sorted(vision)} of one vision layer; this model projects "
                    f"the concatenation of layers {config.vision_feature_layer}"
                )

    # -- grids ---------------------------------------------------------------------------
    def token_grids(self, image_sizes: Any) -> tuple[tuple[int, int], ...]:
        """(rows, cols) token grid of each image of ``image_sizes`` (pixels), as the
        model splits its features: ``size // (patch_size * spatial_merge_size)``."""
        cell = self.patch * self.merge
        return tuple((int(h) // cell, int(w) // cell) for h, w in torch.as_tensor(image_sizes).tolist())

    @property
    def vision_module(self) -> nn.Module:
        return self.core.vision_tower

    def vision_call(self, args: tuple, kwargs: dict) -> Any:
        """The token grids of the call's images."""
        pixel_values = args[0] if args else kwargs.get("pixel_values")
        sizes = kwargs.get("image_sizes", args[1] if len(args) > 1 else None)
        if pixel_values is None:
            return None
        patches = pixtral_signals.patch_grids(pixel_values, sizes, self.patch)
        return tuple((h // self.merge, w // self.merge) for h, w in patches)

    def match_vision_call(self, forward: Forward, layout: ImageLayout) -> VisionCall | None:
        for call in reversed(forward.vision_calls):
            if call.info and tuple(call.info) == layout.grids:
                return call
        return None

    def layout(self, forward: Forward) -> ImageLayout | None:
        if not forward.has_image_features:
            return None
        sizes = forward.core_inputs.get("image_sizes")
        if sizes is not None:
            grids = self.token_grids(sizes)
        else:
            # generate() encoded the images before the prefill and dropped their sizes:
            # take the grids from the vision tower call that produced these features.
            counts = [len(f) for f in forward.encoded_images]
            grids = next(
                (c.info for c in reversed(forward.vision_calls) if c.info and [r * w for r, w in c.info] == counts),
                None,
            )
            if grids is None:
                raise RuntimeError(
                    "the images' token grids are unknown: pass image_sizes with precomputed image "
                    "features, or compute them with this model's get_image_features while pruning is on"
                )
        if not grids:
            return None
        return ImageLayout(self.image_token_mask(forward), tuple(r * c for r, c in grids), tuple(grids))

    # -- vision signals --------------------------------------------------------------------
    def install_vision_capture(self, record: Callable[[str, Any], None]) -> list[Any]:
        return pixtral_signals.install_capture(self.core.vision_tower, self.config.vision_feature_layer, record)

    def vision_signal(self, name: str, call: VisionCall) -> torch.Tensor:
        """Per image, over its token grid (padded): the feature layer's signals per
        patch, averaged over each token's 2x2 block (see ``pixtral_signals``)."""
        tower = self.core.vision_tower
        return pixtral_signals.token_signal(name, call.captures, tower, self.config.vision_feature_layer, self.merge)
