"""Which pixels each Mistral 3 token covers: the Pixtral image processor scales the
image down (never up) to fit ``longest_edge``, rounds each side up to a multiple of
the token side (``patch_size * spatial_merge_size`` of the processor, 28 pixels for
Mistral Small 3.1) and resizes once to that size; one LLM token per token-side
square, in raster order. The row-break and end tokens cover no pixels."""

from __future__ import annotations

import math
from typing import Any

from ...viz.geometry import Axis, TokenGeometry
from ...viz.processor_geometry import cell_grid, setting


def handles(processor: Any, image_processor: Any) -> bool:
    return type(image_processor).__name__.startswith("PixtralImageProcessor")


def token_side(processor: Any) -> int:
    """Pixels per token side: the processor's patch size times its spatial merge (it
    passes their product to the image processor as the patch size)."""
    merge = getattr(processor, "spatial_merge_size", None)
    if merge is None or getattr(processor, "patch_size", None) is None:
        raise ValueError(
            "processor: a Pixtral image processor alone does not say how many patches make a token; "
            "pass the model's PixtralProcessor (its patch_size and spatial_merge_size)"
        )
    return int(processor.patch_size) * int(merge)


def resized_size(height: int, width: int, max_height: int, max_width: int, cell: int) -> tuple[int, int]:
    """The processor's target (``get_resize_output_image_size``): scaled down by floor
    to fit (max_height, max_width) if larger, then each side rounded up to ``cell``."""
    ratio = max(height / max_height, width / max_width)
    if ratio > 1:
        height, width = int(math.floor(height / ratio)), int(math.floor(width / ratio))
    return ((height - 1) // cell + 1) * cell, ((width - 1) // cell + 1) * cell


def token_geometry(processor: Any, image_processor: Any, width: int, height: int, patch_size: int | None) -> TokenGeometry:
    cell = token_side(processor)
    x, y = Axis(width), Axis(height)
    if getattr(image_processor, "do_resize", True):
        size = image_processor.size
        longest = setting(size, "longest_edge")
        max_height, max_width = (longest, longest) if longest else (setting(size, "height"), setting(size, "width"))
        if not max_height or not max_width:
            raise ValueError(f"{type(image_processor).__name__}: size {size!r} has no longest_edge or height/width")
        new_height, new_width = resized_size(height, width, max_height, max_width, cell)
        x, y = x.resize(new_width), y.resize(new_height)
    return TokenGeometry((width, height), (cell_grid("image", 0, x, y, cell, width, height),), "mistral3")
