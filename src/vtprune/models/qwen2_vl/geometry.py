"""Which pixels each Qwen2-VL / Qwen2.5-VL token covers: ``smart_resize`` to multiples
of ``patch_size * merge_size``; one LLM token per ``merge_size`` x ``merge_size`` block
of patches."""

from __future__ import annotations

import math
from typing import Any

from ...viz.geometry import Axis, TokenGeometry
from ...viz.processor_geometry import cell_grid, setting


def handles(processor: Any, image_processor: Any) -> bool:
    return hasattr(image_processor, "merge_size") and hasattr(image_processor, "temporal_patch_size")


def token_geometry(processor: Any, image_processor: Any, width: int, height: int, patch_size: int | None) -> TokenGeometry:
    return qwen2_vl_geometry(image_processor, width, height)


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's resize target (``transformers.models.qwen2_vl`` ``smart_resize``): both
    sides multiples of ``factor``, the area within [min_pixels, max_pixels], aspect kept."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"image aspect ratio must be below 200; got {max(height, width) / min(height, width)}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def qwen2_vl_geometry(image_processor: Any, width: int, height: int) -> TokenGeometry:
    """Qwen2-VL / Qwen2.5-VL: a dynamic grid of merged ``patch * merge``-pixel tokens."""
    patch, merge = int(image_processor.patch_size), int(image_processor.merge_size)
    factor = patch * merge
    size = getattr(image_processor, "size", None)
    min_pixels = setting(size, "shortest_edge") or getattr(image_processor, "min_pixels", None)
    max_pixels = setting(size, "longest_edge") or getattr(image_processor, "max_pixels", None)
    x, y = Axis(width), Axis(height)
    if getattr(image_processor, "do_resize", True):
        if min_pixels is None or max_pixels is None:
            raise ValueError(f"{type(image_processor).__name__} has no min/max pixels setting")
        new_height, new_width = smart_resize(height, width, factor, int(min_pixels), int(max_pixels))
        x, y = x.resize(new_width), y.resize(new_height)
    return TokenGeometry((width, height), (cell_grid("image", 0, x, y, factor, width, height),), "qwen2_vl")
