"""Adapter for Gemma 3 (``Gemma3ForConditionalGeneration`` and its ``Gemma3Model`` core).

**Images.** Every image (and every Pan & Scan crop, which the processor writes as an
image of its own) is one square SigLIP tile of ``image_size`` pixels; the projector
averages each k x k block of its patch grid into one token (k = patches per side /
tokens per side), so an image is a fixed ``sqrt(mm_tokens_per_image)``-sided grid of
tokens in raster order (256 = 16 x 16 for Gemma 3 at 896 px, patch 14, k = 4). In the
prompt the tokens are ``<image_soft_token>`` placeholders between the text markers
``<start_of_image>`` and ``<end_of_image>``, which are never pruned. Positions are
plain 1-D RoPE ids.

**Masks.** The core builds a dict of masks (full and sliding-window attention, each
bidirectional inside every image block of ``token_type_ids``) for the unpruned prompt;
the adapter gives the runtime the 2-D padding mask that dict was built from and
builds the dict again for the compacted tokens (masks.py).

**Vision signals** come from the tower's last encoder layer (Gemma 3 projects its
output, after the post layer norm): ``vision_saliency`` is the mean attention each
patch receives (SigLIP has no CLS token), ``vision_keys`` that layer's keys averaged
over heads; a token's signal is the mean over the k x k patches the projector pools
into it.

**Inside the language model** stages are refused: Gemma 3 alternates sliding-window
(local) layers and global ones, with different RoPE tables (base 10 000 against
1 000 000, the global one scaled) and different masks, and the runtime applies one
stage layer's tables and mask to every later layer.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ...runtime.compaction import Compaction
from ...runtime.forward_inputs import Forward
from ...runtime.layout import ImageLayout
from ...runtime.vision import VisionCall
from .. import clip_tower_signals
from ..base import ModelAdapter
from . import masks
from .names import GEMMA3


def pooling(config: Any) -> tuple[int, int]:
    """(tokens per side, patches per token side) of an image; ``ValueError`` when the
    projector cannot pool the patch grid into ``mm_tokens_per_image`` square tokens."""
    vision = config.vision_config
    patches = int(vision.image_size) // int(vision.patch_size)
    side = round(int(config.mm_tokens_per_image) ** 0.5)
    if side * side != int(config.mm_tokens_per_image) or patches % side:
        raise ValueError(
            f"mm_tokens_per_image={config.mm_tokens_per_image} is no square grid that pools a "
            f"{patches}x{patches} patch grid evenly"
        )
    return side, patches // side


class Gemma3Adapter(ModelAdapter):
    names = GEMMA3
    position_rows = 1

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        side, self.kernel = pooling(self.config)
        self.grid = (side, side)
        import transformers

        self._build_masks, self._mask_parameters = masks.mask_builder(transformers.Gemma3ForConditionalGeneration)

    @classmethod
    def image_tokens_of(cls, config: Any) -> int:
        return int(config.mm_tokens_per_image)

    @classmethod
    def inside_llm_refusal(cls, config: Any) -> str | None:
        return (
            "in-LLM stages are not supported on Gemma 3: its sliding-window and global decoder layers use "
            "different RoPE tables and masks, and a stage's compacted tables would be applied to both"
        )

    @classmethod
    def check_config_stages(cls, config: Any, stages: list) -> None:
        pooling(config)  # refuse a geometry the model itself cannot run
        super().check_config_stages(config, stages)

    # -- the images -------------------------------------------------------------------------
    @property
    def vision_module(self) -> nn.Module:
        return self.core.vision_tower

    def vision_call(self, args: tuple, kwargs: dict) -> Any:
        pixel_values = args[0] if args else kwargs.get("pixel_values")
        return None if pixel_values is None else int(pixel_values.shape[0])  # images in the call

    def layout(self, forward: Forward) -> ImageLayout | None:
        if not forward.has_image_features:
            return None
        pixel_values = forward.core_inputs.get("pixel_values")
        # Shapes known on the host: no device sync to count the images.
        num_images = len(forward.encoded_images) if pixel_values is None else int(pixel_values.shape[0])
        if num_images == 0:
            return None
        per_image = self.grid[0] * self.grid[1]
        return ImageLayout(self.image_token_mask(forward), (per_image,) * num_images, (self.grid,) * num_images)

    # -- the masks ----------------------------------------------------------------------------
    def padding_mask(self, forward: Forward, kwargs: dict) -> Any:
        """The 2-D mask the core built its mask dict from (the core's own argument)."""
        mask = kwargs.get("attention_mask")
        return forward.core_inputs.get("attention_mask") if isinstance(mask, dict) else mask

    def language_model_mask(self, kwargs: dict, forward: Forward, compaction: Compaction | None) -> dict:
        """``kwargs`` with the 2-D mask replaced by the dict of masks over the tokens the
        language model is given: a prefill's kept image tokens (``compaction``) keep their
        blocks, a later forward has the core's token types (none in ``generate``)."""
        types = forward.core_inputs.get("token_type_ids")
        embeds = kwargs["inputs_embeds"]
        if types is not None:
            types = types[:, -forward.inputs_embeds.shape[1]:] if forward.inputs_embeds is not None else types
            if compaction is not None:
                types = compaction.gather(types, seq_dim=-1) * compaction.valid.to(types.dtype)
        built = masks.layer_masks(
            self._build_masks, self._mask_parameters, self.config.get_text_config(), embeds,
            kwargs.get("attention_mask"), kwargs.get("past_key_values"), kwargs.get("position_ids"), types,
        )
        return {**kwargs, "attention_mask": built}

    # -- vision signals --------------------------------------------------------------------------
    def install_vision_capture(self, record: Callable[[str, Any], None]) -> list[Any]:
        return clip_tower_signals.install_capture(self.core.vision_tower, -1, record)

    def vision_signal(self, name: str, call: VisionCall) -> torch.Tensor:
        """(images, tokens[, D]): the last layer's signal per patch, averaged over each
        token's k x k block as the projector pools the features."""
        per_patch = clip_tower_signals.tile_signal(name, call.captures, self.core.vision_tower, -1)
        return pooled(per_patch, self.grid[0], self.kernel)


def pooled(per_patch: torch.Tensor, side: int, kernel: int) -> torch.Tensor:
    """(images, side * side[, C]) mean of (images, patches[, C]) over each token's
    ``kernel`` x ``kernel`` block of the square patch grid, tokens in raster order."""
    images = per_patch.shape[0]
    values = per_patch if per_patch.dim() == 3 else per_patch[..., None]
    grid = values.reshape(images, side, kernel, side, kernel, values.shape[-1]).float()
    tokens = grid.mean(dim=(2, 4)).reshape(images, side * side, -1)
    return tokens if per_patch.dim() == 3 else tokens[..., 0]
