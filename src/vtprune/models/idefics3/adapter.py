"""Adapters for Idefics3 (``Idefics3ForConditionalGeneration``, ``Idefics3Model``) and
SmolVLM (``SmolVLMForConditionalGeneration``, ``SmolVLMModel``), which share one structure.

**Images.** The processor splits an image into rows x cols square sub-images (of the
vision tower's ``image_size``) and adds the whole image resized to one square, the
global image; an image small enough is only its global image. Every sub-image goes
through the tower alone; the connector's pixel shuffle folds each s x s block of
patches (s = ``scale_factor``) into one token, so a sub-image is a square grid of
``(image_size / patch_size / s) ** 2`` tokens (64 for Idefics3's 364 px / 14 px / 2...
and SmolVLM2's 512 / 16 / 4, 81 for SmolVLM's 384 / 14 / 3). In the prompt, each
sub-image's tokens are ``<image>`` placeholders preceded by text markers::

    <fake_token_around_image><row_1_col_1><image>...<image><fake_token_around_image><row_1_col_2>...\\n
    ...\\n\\n<fake_token_around_image><global-img><image>...<image><fake_token_around_image>

The markers are text: they are never pruned, and count as text after a sub-image.

**Units.** Every sub-image and the global image is a unit with its own square grid;
the units of one image share its budget in proportion to their tokens (all equal).
The model fills the placeholders with the sub-images' features in order (padding
images, all zeros, are dropped from ``pixel_values``), so the k-th block of
placeholders through the batch is the k-th sub-image. Which blocks make one image is
read from the prompt: an image ends with its global image, and the marker before a
global image's block is the one before the last block of every prompt (``<global-img>``),
so each block preceded by that marker closes an image. An image's token indices
(``last_keep``) run over its units in prompt order.

**Vision signals** come from the tower's last encoder layer (the model reads its
output), per sub-image, honouring the patch attention mask of padded sub-images:
``vision_saliency`` is the mean attention each patch receives from the sub-image's real
patches, ``vision_keys`` that layer's keys averaged over heads. A token covers the
s x s patches the model's own pixel shuffle folds into it (an index map passed through
the connector tells which); its saliency is the mean over those patches (their share of
attention / s^2: padding patches receive none), its key the mean of the keys of its
real patches (of all of them for a token over padding only).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ...attention import attention_weights
from ...runtime.forward_inputs import Forward
from ...runtime.layout import ImageLayout
from ...runtime.vision import VisionCall
from ..base import ModelAdapter
from .names import IDEFICS3, SMOLVLM


def tokens_per_side(config: Any) -> int:
    """Token grid side of one sub-image; ``ValueError`` if the pixel shuffle cannot fold
    the tower's patch grid evenly."""
    vision = config.vision_config
    patches, scale = int(vision.image_size) // int(vision.patch_size), int(config.scale_factor)
    if patches % scale:
        raise ValueError(
            f"a {patches}x{patches} patch grid cannot be pixel-shuffled by scale_factor={scale}: "
            "the sub-images' tokens would have no square grid"
        )
    return patches // scale


class Idefics3Adapter(ModelAdapter):
    names = IDEFICS3
    position_rows = 1
    language_model_name = "text_model"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.side = tokens_per_side(self.config)
        self.scale = int(self.config.scale_factor)
        self._patches_of_token: torch.Tensor | None = None

    @classmethod
    def check_config_stages(cls, config: Any, stages: list) -> None:
        tokens_per_side(config)  # refuse a geometry the model itself cannot run
        super().check_config_stages(config, stages)

    @property
    def vision_module(self) -> nn.Module:
        return self.core.vision_model

    def vision_call(self, args: tuple, kwargs: dict) -> Any:
        pixel_values = args[0] if args else kwargs.get("pixel_values")
        return None if pixel_values is None else int(pixel_values.shape[0])  # sub-images in the call

    # -- where the images are ---------------------------------------------------------------
    def layout(self, forward: Forward) -> ImageLayout | None:
        if not forward.has_image_features:
            return None
        placeholders = self.image_token_mask(forward)
        per_unit = self.side * self.side
        total = int(placeholders.sum())  # one sync: the units are counted on the host
        if total == 0:
            return None
        if total % per_unit:
            raise ValueError(
                f"{total} image placeholders are not whole sub-images of {per_unit} tokens each"
            )
        units = total // per_unit
        flat = placeholders.reshape(-1)
        where = torch.argsort((~flat).to(torch.uint8), stable=True)[:total]
        parents, offsets = self._images_of_units(forward, where[::per_unit], placeholders.shape[1])
        offsets = tuple(o * per_unit for o in offsets)
        return ImageLayout(placeholders, (per_unit,) * units, ((self.side, self.side),) * units, parents, offsets)

    def _images_of_units(self, forward: Forward, starts: torch.Tensor, length: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(image of each unit, rank of the unit in its image), from the marker before
        each unit's first token: the one before every prompt's last unit closes an image."""
        ids = forward.core_inputs.get("input_ids")
        tokens = ids.reshape(-1) if ids is not None else forward.core_inputs["inputs_embeds"].reshape(-1, forward.core_inputs["inputs_embeds"].shape[-1])
        row, column = torch.div(starts, length, rounding_mode="floor"), starts % length
        marker = tokens[(starts - 1).clamp(min=0)]
        last_of_row = torch.ones_like(row, dtype=torch.bool)
        last_of_row[:-1] = row[1:] != row[:-1]
        closing = marker[last_of_row][:1]  # the global image's marker, from the first prompt
        same = marker == closing if marker.dim() == 1 else (marker == closing).all(-1)
        is_global = same & (column > 0)
        closes, last = is_global.tolist(), last_of_row.tolist()
        if not all(c for c, end in zip(closes, last) if end):
            raise ValueError(
                "cannot tell this prompt's images apart: every prompt's image tokens must end with a global "
                "image whose tokens follow the same marker (the processor's <global-img>)"
            )
        parents, offsets, image, rank = [], [], 0, 0
        for closes_image in closes:
            parents.append(image), offsets.append(rank)
            image, rank = (image + 1, 0) if closes_image else (image, rank + 1)
        return tuple(parents), tuple(offsets)

    # -- vision signals ----------------------------------------------------------------------
    def _last_layer(self) -> nn.Module:
        return self.core.vision_model.encoder.layers[-1]

    def install_vision_capture(self, record: Callable[[str, Any], None]) -> list[Any]:
        """The patch mask of each call, and the last encoder layer's input and keys."""
        tower, layer = self.core.vision_model, self._last_layer()

        def patch_mask(module: nn.Module, args: tuple, kwargs: dict) -> None:
            pixels = args[0] if args else kwargs["pixel_values"]
            mask = kwargs.get("patch_attention_mask", args[1] if len(args) > 1 else None)
            patches = (pixels.shape[-2] // self.patch_size, pixels.shape[-1] // self.patch_size)
            if mask is None:
                mask = torch.ones(pixels.shape[0], *patches, dtype=torch.bool, device=pixels.device)
            record("patch_mask", mask.reshape(pixels.shape[0], -1).bool())

        return [
            tower.register_forward_pre_hook(patch_mask, with_kwargs=True),
            layer.register_forward_pre_hook(lambda m, args: record("layer_in", args[0])),
            layer.self_attn.k_proj.register_forward_hook(lambda m, args, out: record("keys", out)),
        ]

    @property
    def patch_size(self) -> int:
        return int(self.config.vision_config.patch_size)

    def patches_of_token(self, device: torch.device) -> torch.Tensor:
        """(tokens, s * s) the patch indices each token of a sub-image folds, as the
        model's own pixel shuffle orders them."""
        if self._patches_of_token is None:
            patches = (self.side * self.scale) ** 2
            index = torch.arange(patches, dtype=torch.float64).view(1, patches, 1)
            folded = self.core.connector.pixel_shuffle(index, self.scale)[0]  # (tokens, s * s)
            self._patches_of_token = folded.round().long()
        return self._patches_of_token.to(device)

    def vision_signal(self, name: str, call: VisionCall) -> torch.Tensor:
        """(sub-images, tokens[, D]) signal ``name`` of every sub-image of a vision call."""
        captures = call.captures
        attn = self._last_layer().self_attn
        keys, real = captures["keys"], captures["patch_mask"]
        fold = self.patches_of_token(keys.device)
        if name == "vision_keys":
            per_patch = keys.unflatten(-1, (attn.num_heads, -1)).mean(-2).float()
            weight = real[:, fold].float()  # (sub-images, tokens, s * s)
            weight = torch.where(weight.sum(-1, keepdim=True) > 0, weight, torch.ones_like(weight))
            folded = per_patch[:, fold]  # (sub-images, tokens, s * s, D)
            return (folded * weight[..., None]).sum(-2) / weight.sum(-1)[..., None]
        if name != "vision_saliency":
            raise KeyError(f"signal {name!r} is not provided by the {self.family} adapter")
        layer = self._last_layer()
        query = attn.q_proj(layer.layer_norm1(captures["layer_in"]))
        received = received_attention(query, keys, attn.num_heads, float(attn.scale), real)
        return received[:, fold].mean(-1)


def received_attention(query: torch.Tensor, keys: torch.Tensor, heads: int, scale: float, real: torch.Tensor) -> torch.Tensor:
    """(sub-images, patches) attention each patch receives, averaged over the heads and
    over the sub-image's real patches as queries; padding patches (``real`` False) are
    masked as keys, as the tower masks them, and receive none. Float32."""
    units, patches, width = keys.shape
    q = query.reshape(units, patches, heads, width // heads).transpose(1, 2)
    k = keys.reshape(units, patches, heads, width // heads).transpose(1, 2)
    probs = attention_weights(q, k, scale, real[:, None, None, :]).mean(1)  # (units, Q, K)
    weight = real.float()
    return (probs * weight[:, :, None]).sum(1) / weight.sum(1, keepdim=True).clamp(min=1)


class SmolVLMAdapter(Idefics3Adapter):
    names = SMOLVLM
