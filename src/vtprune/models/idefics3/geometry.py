"""Which pixels each Idefics3 / SmolVLM token covers.

The image processor (``Idefics3ImageProcessor``, ``SmolVLMImageProcessor``):

1. with ``do_resize``, resizes the image so its longest edge is ``size["longest_edge"]``
   (the other edge rounded to an even number), capped at 4096 pixels a side;
2. with ``do_image_splitting``, resizes it again to multiples of the sub-image side M
   (``max_image_size["longest_edge"]``, the longer side first, the other from the
   aspect ratio), and cuts an image larger than M into rows x cols squares of M,
   followed by the whole image squashed to M x M (the global image); an image of
   exactly M is only its global image. Without splitting, the image is squashed to M x M.

Each M-pixel square is cut into ``patch_size`` patches, and each token folds
``scale_factor`` x ``scale_factor`` of them: one section per sub-image, row by row,
then the global image, in token order.
"""

from __future__ import annotations

import math
from typing import Any

from ...viz.geometry import Axis, GridSection, TokenGeometry
from ...viz.processor_geometry import setting

MAX_IMAGE_SIZE = 4096  # the processors' cap on a side after the first resize


def handles_idefics3(processor: Any, image_processor: Any) -> bool:
    return type(image_processor).__name__.startswith("Idefics3ImageProcessor")


def handles_smolvlm(processor: Any, image_processor: Any) -> bool:
    return type(image_processor).__name__.startswith("SmolVLMImageProcessor")


def _longest_edge(height: int, width: int, longest: int) -> tuple[int, int]:
    """The processors' ``_resize_output_size_rescale_to_max_len`` then
    ``_resize_output_size_scale_below_upper_bound``."""
    aspect = width / height
    if width >= height:
        width, height = longest, int(longest / aspect)
        height += height % 2
    else:
        height, width = longest, int(longest * aspect)
        width += width % 2
    height, width = max(height, 1), max(width, 1)
    aspect = width / height
    if width >= height and width > MAX_IMAGE_SIZE:
        width, height = MAX_IMAGE_SIZE, int(MAX_IMAGE_SIZE / aspect)
    elif height > width and height > MAX_IMAGE_SIZE:
        height, width = MAX_IMAGE_SIZE, int(MAX_IMAGE_SIZE * aspect)
    return max(height, 1), max(width, 1)


def _multiples(height: int, width: int, side: int) -> tuple[int, int]:
    """The processors' ``resize_for_vision_encoder``."""
    aspect = width / height
    if width >= height:
        width = math.ceil(width / side) * side
        height = math.ceil(int(width / aspect) / side) * side
    else:
        height = math.ceil(height / side) * side
        width = math.ceil(int(height * aspect) / side) * side
    return height, width


def token_geometry(processor: Any, image_processor: Any, width: int, height: int, patch_size: int | None) -> TokenGeometry:
    side = setting(image_processor.max_image_size, "longest_edge")
    cell = _cell(processor, side)  # patch_size (the tower's) is not enough: a token folds s x s patches
    resized_h, resized_w = height, width
    if getattr(image_processor, "do_resize", True):
        resized_h, resized_w = _longest_edge(height, width, setting(image_processor.size, "longest_edge"))
    sections: list[GridSection] = []
    if getattr(image_processor, "do_image_splitting", True):
        resized_h, resized_w = _multiples(resized_h, resized_w, side)
        if resized_h > side or resized_w > side:
            x, y = Axis(width).resize(resized_w), Axis(height).resize(resized_h)
            for row in range(resized_h // side):
                for col in range(resized_w // side):
                    tile_x, tile_y = x.window(col * side, side), y.window(row * side, side)
                    start = sum(s.size for s in sections)
                    sections.append(_grid(f"row {row + 1} col {col + 1}", start, tile_x, tile_y, cell, width, height))
    start = sum(s.size for s in sections)
    sections.append(_grid("global", start, Axis(width).resize(side), Axis(height).resize(side), cell, width, height))
    return TokenGeometry((width, height), tuple(sections), "idefics3")


def _grid(name: str, start: int, x: Axis, y: Axis, cell: int, width: int, height: int) -> GridSection:
    return GridSection(name, start, x.cells(x.length // cell, cell, width), y.cells(y.length // cell, cell, height))


def _cell(processor: Any, side: int) -> int:
    """Pixels a token covers along each axis (the tower's patch size times the scale
    factor), from the processor's ``image_seq_len`` (tokens per sub-image): the image
    processor alone, and the tower's patch size, do not know the scale factor."""
    seq_len = int(getattr(processor, "image_seq_len", 0) or 0)
    per_side = math.isqrt(seq_len)
    if seq_len and per_side * per_side == seq_len and side % per_side == 0:
        return side // per_side
    raise ValueError(
        "the pixels of an Idefics3 / SmolVLM token need the processor (Idefics3Processor / SmolVLMProcessor, "
        f"whose image_seq_len gives the tokens per {side}-pixel sub-image), not only its image processor"
    )
