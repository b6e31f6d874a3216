"""Adapters for LLaVA-NeXT (``LlavaNextForConditionalGeneration``) and LLaVA-OneVision
(``LlavaOnevisionForConditionalGeneration``).

An image is a base tile (the whole image at the tower's resolution) plus, with
"anyres", high-resolution tiles. The model writes, per image: the base tile's grid
(side x side tokens), then the tiles' grids stitched into one grid, with the rows or
columns that only padding produced removed (OneVision may also shrink it, "anyres_max"),
each row followed by a newline token. An image that is not tiled (OneVision prompts with
several images) is its base grid and one newline.

vtprune prunes the base grid and the high-resolution grid as two units that share the
image's budget in proportion to their tokens (``ImageLayout.parents``); an image's
token indices (``last_keep``) run over the base grid, then the high-resolution grid,
without the newlines. Newline tokens are kept, or, with ``newlines="with_row"``, dropped
with a row none of whose tokens is kept.

OneVision's videos are units of their own (see :class:`LlavaOnevisionAdapter`),
numbered with the images in order of appearance (units.py).

The grid of every image is taken from the model's own code: index maps are passed
through its ``pack_image_features``, so the adapter follows exactly what the model does
(tiling, unpadding, shrinking), and so do the vision signals, which are the tiles'
signals packed the same way.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable

import torch
from torch import nn

from ...runtime.layout import ImageLayout
from ...runtime.vision import VisionCall
from .. import clip_tower_signals
from ...runtime.forward_inputs import Forward
from ..base import ModelAdapter
from .names import NEXT, ONEVISION
from .units import Item, assemble_layout


class LlavaNextAdapter(ModelAdapter):
    names = NEXT
    position_rows = 1
    records_encoder = True  # generate drops image_sizes before the prefill: record them

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        vision = self.config.vision_config
        self.side = int(vision.image_size) // int(vision.patch_size)
        self._grid_cache: dict[tuple, tuple[int, int, int]] = {}
        tower = self.core.vision_tower
        strategy = getattr(self.config, "vision_feature_select_strategy", "default")
        if clip_tower_signals.has_cls(tower) != (strategy == "default"):
            raise ValueError(
                f"vision_feature_select_strategy={strategy!r} with a tower "
                f"{'with' if clip_tower_signals.has_cls(tower) else 'without'} a CLS token leaves the tiles "
                "off their patch grid; accepted: 'default' for CLIP towers, 'full' for SigLIP ones"
            )

    @property
    def vision_module(self) -> nn.Module:
        return self.core.vision_tower

    def vision_call(self, args: tuple, kwargs: dict) -> Any:
        pixel_values = args[0] if args else kwargs.get("pixel_values")
        return None if pixel_values is None else int(pixel_values.shape[0])  # tiles in the call

    def encoder_call(self, args: tuple, kwargs: dict) -> dict:
        """What ``get_image_features`` was called with that the grids depend on."""
        bound = inspect.signature(self.core.get_image_features).bind_partial(*args, **kwargs).arguments
        sizes = bound.get("image_sizes")
        counts = bound.get("batch_num_images")
        return {
            "image_sizes": None if sizes is None else [tuple(int(v) for v in s) for s in sizes.tolist()],
            "batch_num_images": None if counts is None else [int(c) for c in torch.as_tensor(counts).tolist()],
        }

    # -- grids -------------------------------------------------------------------------
    def _tiled(self, sizes: list[tuple[int, int]], per_prompt: list[int] | None) -> list[bool]:
        """Which images are tiled (OneVision tiles only prompts with a single image)."""
        if per_prompt is None or not self._tiles_single_images_only:
            return [True] * len(sizes)
        return [n == 1 for n in per_prompt for _ in range(n)]

    _tiles_single_images_only = False

    def _tile_count(self, size: tuple[int, int], tiled: bool) -> int:
        from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

        if not tiled:
            return 1
        return image_size_to_num_patches(
            image_size=list(size), grid_pinpoints=self.config.image_grid_pinpoints,
            patch_size=self.config.vision_config.image_size,
        )

    def _pack(self, tile_maps: list[torch.Tensor], sizes: list[tuple[int, int]], newline: torch.Tensor | None):
        """The model's own packing of per-tile maps (tiles, side*side, C) into each image's
        token sequence."""
        return self.core.pack_image_features(
            tile_maps, torch.tensor(sizes), **self._pack_options(), image_newline=newline
        )[0]

    def _pack_options(self) -> dict:
        return {"vision_feature_select_strategy": getattr(self.config, "vision_feature_select_strategy", "default")}

    def image_grids(self, size: tuple[int, int], tiled: bool) -> tuple[int, int, int]:
        """(tiles, high-resolution rows, columns) of an image of ``size`` (rows 0: no
        high-resolution grid); the model's packing of an index map tells. Cached."""
        key = (tuple(size), tiled)
        if key not in self._grid_cache:
            self._grid_cache[key] = self._measure_grids(tuple(size), tiled)
        return self._grid_cache[key]

    def _measure_grids(self, size: tuple[int, int], tiled: bool) -> tuple[int, int, int]:
        tiles = self._tile_count(size, tiled)
        per_tile = self.side * self.side
        index = torch.arange(tiles * per_tile, dtype=torch.float32).view(tiles, per_tile, 1)
        packed = self._pack([index], [size], torch.tensor([-1.0]))[0][:, 0]
        newlines = int((packed == -1).sum())
        extra = packed.numel() - per_tile
        if tiles == 1 or extra == newlines == 1:
            return tiles, 0, 0
        return tiles, newlines, (extra - newlines) // newlines

    def token_count(self, size: tuple[int, int], tiled: bool = True) -> int:
        """Placeholder tokens of an image: base grid + rows x (columns + newline)."""
        _, rows, cols = self.image_grids(tuple(size), tiled)
        return self.side * self.side + (rows * (cols + 1) if rows else 1)

    def _image_info(self, forward: Forward) -> tuple[list[tuple[int, int]], list[bool]] | None:
        inputs = forward.core_inputs
        sizes, per_prompt = inputs.get("image_sizes"), inputs.get("batch_num_images")
        if sizes is not None:
            sizes = [tuple(int(v) for v in s) for s in torch.as_tensor(sizes).tolist()]
            per_prompt = None if per_prompt is None else [int(c) for c in torch.as_tensor(per_prompt).tolist()]
        else:
            count = len(forward.encoded_images or ())
            record = next((r for r in reversed(forward.encoder_calls) if r["image_sizes"] and len(r["image_sizes"]) == count), None)
            if record is None:
                raise RuntimeError(
                    "the images' sizes are unknown: pass image_sizes with precomputed image features, "
                    "or compute them with this model's get_image_features while pruning is on"
                )
            sizes, per_prompt = record["image_sizes"], record["batch_num_images"]
        return sizes, self._tiled(sizes, per_prompt)

    def layout(self, forward: Forward) -> ImageLayout | None:
        items = {"image": self._image_items(forward) if forward.has_image_features else []}
        if forward.prune_videos and forward.has_video_features:
            items["video"] = self._video_items(forward)
        if not any(items.values()):
            return None
        return assemble_layout(self, forward, items)

    def _image_items(self, forward: Forward) -> list[Item]:
        """Each image's units (base grid, then any high-resolution grid) and, along its
        placeholders, each token's unit, the row a newline closes (-1: none; an untiled
        image's closing newline, never pruned) and which tokens are newlines."""
        sizes, tiled = self._image_info(forward)
        per_tile = self.side * self.side
        items = []
        for size, tile in zip(sizes, tiled):
            _, rows, cols = self.image_grids(tuple(size), tile)
            item = Item([(per_tile, (self.side, self.side), 0, 1)], [0] * per_tile, [-1] * per_tile, [False] * per_tile)
            if rows:
                item.units.append((rows * cols, (rows, cols), per_tile, 1))
                item.unit_of += [1] * (rows * (cols + 1))
                for row in range(rows):
                    item.row_of += [-1] * cols + [row]
                    item.newline_of += [False] * cols + [True]
            else:
                item.unit_of.append(0), item.row_of.append(-1), item.newline_of.append(True)
            items.append(item)
        return items

    def _video_items(self, forward: Forward) -> list[Item]:
        """LLaVA-NeXT takes no videos."""
        return []

    # -- vision signals -------------------------------------------------------------------
    def install_vision_capture(self, record: Callable[[str, Any], None]) -> list[Any]:
        return clip_tower_signals.install_capture(self.core.vision_tower, self.config.vision_feature_layer, record)

    def match_vision_call(self, forward: Forward, layout: ImageLayout) -> VisionCall | None:
        sizes, tiled = self._image_info(forward)
        tiles = sum(self._tile_count(tuple(s), t) for s, t in zip(sizes, tiled))
        for call in reversed(forward.vision_calls):
            if call.info == tiles:
                call.cache.setdefault("images", (sizes, tiled))
                return call
        return None

    def vision_signal(self, name: str, call: VisionCall) -> torch.Tensor:
        """Per unit (base grid, high-resolution grid, per image), padded: the tiles'
        signals packed like the model packs the tiles' features."""
        per_tile = clip_tower_signals.tile_signal(name, call.captures, self.core.vision_tower, self.config.vision_feature_layer)
        flat = per_tile if per_tile.dim() == 3 else per_tile[..., None]
        sizes, tiled = call.cache["images"]
        tiles = [self._tile_count(tuple(s), t) for s, t in zip(sizes, tiled)]
        packed = self._pack(list(flat.split(tiles)), [tuple(s) for s in sizes], None)
        units = []
        for sequence in packed:
            units.append(sequence[: self.side * self.side])
            if sequence.shape[0] > self.side * self.side:
                units.append(sequence[self.side * self.side :])
        padded = torch.nn.utils.rnn.pad_sequence(units, batch_first=True)
        return padded if per_tile.dim() == 3 else padded[..., 0]


class LlavaOnevisionAdapter(LlavaNextAdapter):
    """OneVision adds videos: each frame's tile is pooled (bilinear, to half the side,
    rounded up) into a small grid, the frames follow one another and one newline closes
    the video. A video is one unit of stacked frames (``ImageLayout.frames``), pruned
    frame by frame before the LLM, and its newline is kept."""

    names = ONEVISION
    _tiles_single_images_only = True

    def _pack_options(self) -> dict:
        return {"vision_aspect_ratio": getattr(self.config, "vision_aspect_ratio", "anyres_max_9")}

    @property
    def pooled_side(self) -> int:
        return math.ceil(self.side / 2)

    def _video_frames(self, forward: Forward) -> list[int]:
        """Frames of each video: from its pixels (videos, frames, C, H, W), or from the
        features ``generate`` encoded before the prefill (frames * side^2 + a newline)."""
        pixels = forward.core_inputs.get("pixel_values_videos")
        if pixels is not None:
            return [int(pixels.shape[1])] * int(pixels.shape[0])
        return [(len(f) - 1) // self.pooled_side**2 for f in forward.encoded_videos or ()]

    def _video_items(self, forward: Forward) -> list[Item]:
        side = self.pooled_side
        items = []
        for frames in self._video_frames(forward):
            tokens = frames * side * side
            items.append(Item([(tokens, (frames * side, side), 0, frames)], [0] * (tokens + 1), [-1] * (tokens + 1), [False] * tokens + [True]))
        return items

    def match_vision_call(self, forward: Forward, layout: ImageLayout) -> VisionCall | None:
        """The images' call (the latest before the videos') and the videos' call (the
        latest with their frames as tiles); one that reads each unit from its own."""
        if not forward.has_video_features:
            return super().match_vision_call(forward, layout)
        notes = forward.extras.get("llava_units", ())
        calls, end, found = list(forward.vision_calls), len(forward.vision_calls), {}
        frames = self._video_frames(forward)
        wanted = {"video": sum(frames)}
        if forward.has_image_features:
            sizes, tiled = self._image_info(forward)
            wanted["image"] = sum(self._tile_count(tuple(s), t) for s, t in zip(sizes, tiled))
        for kind in ("video", "image"):
            if kind in wanted:
                at = next((i for i in range(end - 1, -1, -1) if calls[i].info == wanted[kind]), None)
                if at is None:
                    return None
                found[kind], end = calls[at], at
        found["video"].cache.setdefault("frames", frames)
        if "image" in found:
            found["image"].cache.setdefault("images", (sizes, tiled))
        if all(kind == "image" for kind, _ in notes):  # videos left whole
            return found.get("image")
        return VisionCall(info=None, captures={"parts": [(kind, found[kind], index) for kind, index in notes]})

    def vision_signal(self, name: str, call: VisionCall) -> torch.Tensor:
        """Images' signals as LLaVA-NeXT's; a video's: each frame's tile signals pooled
        as the model pools its features (``apply_pooling``), frames in order."""
        if "parts" not in call.captures:
            return super().vision_signal(name, call)
        rows = []
        for kind, sub, index in call.captures["parts"]:
            if name not in sub.cache:
                sub.cache[name] = super().vision_signal(name, sub) if kind == "image" else self._video_signal(name, sub)
            rows.append(sub.cache[name][index])
        return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)

    def _video_signal(self, name: str, call: VisionCall) -> torch.Tensor:
        per_tile = clip_tower_signals.tile_signal(name, call.captures, self.core.vision_tower, self.config.vision_feature_layer)
        flat = per_tile if per_tile.dim() == 3 else per_tile[..., None]
        pooled = self.core.apply_pooling(flat)  # (frames of all videos, side^2, C)
        frames = call.cache["frames"]
        videos = torch.nn.utils.rnn.pad_sequence([v.flatten(0, 1) for v in pooled.split(frames)], batch_first=True)
        return videos if per_tile.dim() == 3 else videos[..., 0]
