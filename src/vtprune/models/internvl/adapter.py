"""Adapter for InternVL (``InternVLForConditionalGeneration`` and its ``InternVLModel``
core, InternVL3 checkpoints in Hugging Face format).

**Tiles.** The processor cuts an image into 448 px tiles (the grid of 1..12 tiles
closest to its aspect ratio) plus, when there is more than one, a thumbnail of the
whole image; ``pixel_values`` holds every tile of every image, one row each, in prompt
order. The InternViT tower encodes each tile alone (a CLS token and 32 x 32 patches),
drops the CLS token, and the pixel shuffle folds each 2 x 2 block of patches into one
token: a tile is a 16 x 16 token grid, in raster order, each token covering the patches
(2i..2i+1, 2j..2j+1). The prompt holds ``<img>``, 256 ``IMG_CONTEXT`` placeholders per
tile (``image_token_id``), ``</img>``.

**Which tiles are which image's.** The model itself never needs to know (it scatters
the tiles' features into the placeholders in order), and the processor's
``num_patches`` does not reach it. The placeholders of one image are one run of
consecutive ``IMG_CONTEXT`` tokens (the ``<img>`` ``</img>`` markers, which are text,
separate images), so an image is a run, and its tiles are its length / 256: found on
the device, read on the host once per prefill (the only host sync the layout needs).
Video frames (each its own ``<img>`` block of one tile) are pruned like one-tile images.

**Units and budget.** Every tile (the thumbnail too) is a unit with its own grid; the
tiles of an image share the image's budget in proportion to their tokens
(``ImageLayout.parents``), as LLaVA-NeXT's base grid and tiles do. An image's token
indices (``last_keep``) run over its tiles in order, the thumbnail last.

**Vision signals**, per tile, of the encoder layer whose output the model reads
(``vision_feature_layer``; -1, the last one, in InternVL3): ``vision_saliency`` is the
CLS token's attention to each patch (heads averaged, recomputed from the layer's
normed queries and keys), ``vision_keys`` the layer's keys of the patches averaged
over heads. Both are pooled to tokens by the model's own pixel shuffle: a token's value
is the mean over the 2 x 2 patches it is made of.

Positions are plain 1-D RoPE ids. The language model is Qwen2 (InternVL3) or Qwen3
(InternVL3.5, whose attention normalises each head's queries and keys).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ...runtime.attention_rows import AttentionParts
from ...runtime.forward_inputs import Forward
from ...runtime.layout import ImageLayout
from ...runtime.vision import VisionCall
from ..base import ModelAdapter
from ..clip_tower_signals import layer_of_hidden_state, saliency
from ..qwen3_vl.adapter import FlatHeadsOutput, HeadNormed
from .names import INTERNVL


def tile_side(config: Any) -> int:
    """Tokens per side of a tile's grid: its patches per side, pixel-shuffled."""
    vision = config.vision_config
    patches = int(_first(vision.image_size)) // int(_first(vision.patch_size))
    return int(patches * float(config.downsample_ratio))


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (list, tuple)) else value


class InternVLAdapter(ModelAdapter):
    names = INTERNVL
    position_rows = 1

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        strategy = getattr(self.config, "vision_feature_select_strategy", "default")
        if strategy != "default":
            raise ValueError(
                f"vision_feature_select_strategy={strategy!r} keeps InternViT's CLS token among a tile's "
                "features, which the pixel shuffle cannot place on the patch grid; accepted: 'default'"
            )
        self.side = tile_side(self.config)
        self.per_tile = self.side * self.side

    @property
    def vision_module(self) -> nn.Module:
        return self.core.vision_tower

    def vision_call(self, args: tuple, kwargs: dict) -> Any:
        pixel_values = args[0] if args else kwargs.get("pixel_values")
        return None if pixel_values is None else int(pixel_values.shape[0])  # tiles in the call

    # -- where the images are -----------------------------------------------------------
    def _tiles_in_forward(self, forward: Forward) -> int:
        """Tiles whose features this forward brings (known on the host)."""
        pixel_values = forward.core_inputs.get("pixel_values")
        if pixel_values is not None:
            return int(pixel_values.shape[0])
        return len(forward.encoded_images or ())  # generate encoded them: one pooler row per tile

    def tiles_per_image(self, placeholders: torch.Tensor) -> list[int]:
        """Tiles of each image, in order through the batch: each run of consecutive
        placeholders in a row is one image. One host sync (the run lengths)."""
        starts = placeholders & ~F.pad(placeholders[:, :-1], (1, 0), value=False)
        image_of = starts.reshape(-1).cumsum(0)  # at a placeholder: its image's number, from 1
        runs = torch.bincount(image_of[placeholders.reshape(-1)]).tolist()[1:]
        bad = [n for n in runs if n % self.per_tile]
        if bad:
            raise ValueError(
                f"an image's placeholders must be whole tiles of {self.per_tile} tokens; found a run of {bad[0]}"
            )
        return [n // self.per_tile for n in runs]

    def layout(self, forward: Forward) -> ImageLayout | None:
        if not forward.has_image_features:
            return None
        tiles = self._tiles_in_forward(forward)
        if tiles == 0:
            return None
        placeholders = self.image_token_mask(forward)
        per_image = self.tiles_per_image(placeholders)
        if sum(per_image) != tiles:
            raise ValueError(
                f"the prompt's placeholders make {sum(per_image)} tiles but {tiles} tiles' features were given"
            )
        parents = tuple(image for image, count in enumerate(per_image) for _ in range(count))
        offsets = tuple(tile * self.per_tile for count in per_image for tile in range(count))
        return ImageLayout(
            placeholders, (self.per_tile,) * tiles, ((self.side, self.side),) * tiles, parents, offsets
        )

    # -- vision signals -------------------------------------------------------------------
    def _feature_layer(self) -> nn.Module:
        """The encoder layer whose output is ``hidden_states[vision_feature_layer]``
        (hidden_states[0] is the embeddings, hidden_states[j] the output of layer j - 1)."""
        return layer_of_hidden_state(self.core.vision_tower.encoder.layer, self.config.vision_feature_layer)

    def install_vision_capture(self, record: Callable[[str, Any], None]) -> list[Any]:
        """The feature layer's attention input (after its layer norm) and its keys (after
        the optional k norm), for every tile of a call."""
        attention = self._feature_layer().attention

        def attention_input(module: Any, args: tuple, kwargs: dict) -> None:
            record("attn_in", args[0] if args else kwargs["hidden_states"])

        return [
            attention.register_forward_pre_hook(attention_input, with_kwargs=True),
            attention.k_norm.register_forward_hook(lambda m, args, out: record("keys", out)),
        ]

    def vision_signal(self, name: str, call: VisionCall) -> torch.Tensor:
        """(tiles, side * side[, head_dim]) per tile, in the tiles' order (the units')."""
        attention = self._feature_layer().attention
        keys = call.captures["keys"]  # (tiles, 1 + patches, D): CLS first
        heads = attention.num_heads
        if name == "vision_keys":
            per_patch = keys[:, 1:].unflatten(-1, (heads, -1)).float().mean(-2)
            return self.pool_patches(per_patch)
        if name != "vision_saliency":
            raise KeyError(f"signal {name!r} is not provided by the {self.family} adapter")
        query = attention.q_norm(attention.q_proj(call.captures["attn_in"][:, :1]))  # the CLS token's
        per_patch = saliency(query, keys, heads, attention.scale, cls=True)
        return self.pool_patches(per_patch[..., None])[..., 0]

    def pool_patches(self, per_patch: torch.Tensor) -> torch.Tensor:
        """(tiles, patches, C) per patch -> (tiles, tokens, C) per token: the model's own
        pixel shuffle gathers each token's 2 x 2 patches (channels concatenated), and
        their mean is the token's value."""
        tiles, patches, channels = per_patch.shape
        side = int(round(patches**0.5))
        grid = per_patch.reshape(tiles, side, side, channels)
        shuffled = self.core.pixel_shuffle(grid, scale_factor=float(self.config.downsample_ratio))
        return shuffled.reshape(tiles, self.per_tile, -1, channels).mean(2)

    # -- decoder layers -----------------------------------------------------------------------
    def attention_parts(self, layer: nn.Module) -> AttentionParts:
        """Qwen2's parts; with a Qwen3 decoder, its per-head q/k norms included."""
        parts = super().attention_parts(layer)
        attn = layer.self_attn
        if not hasattr(attn, "q_norm"):
            return parts
        return AttentionParts(
            norm=parts.norm,
            q_proj=HeadNormed(attn.q_proj, attn.q_norm, parts.head_dim),
            num_heads=parts.num_heads,
            num_kv_heads=parts.num_kv_heads,
            head_dim=parts.head_dim,
            scaling=parts.scaling,
            k_proj=HeadNormed(attn.k_proj, attn.k_norm, parts.head_dim),
        )

    def key_projection(self, layer: nn.Module) -> Any:
        attn = layer.self_attn
        return FlatHeadsOutput(attn.k_norm) if hasattr(attn, "k_norm") else attn.k_proj
