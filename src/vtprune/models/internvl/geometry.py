"""Which pixels each InternVL token covers.

InternVL's image processor (``GotOcr2ImageProcessor``, ``crop_to_patches``: on by
default through ``InternVLProcessor``) picks the grid of ``min_patches``..``max_patches``
tiles closest to the image's aspect ratio, resizes the whole image to that grid (not
keeping its aspect ratio) and cuts it into tiles in raster order; with more than one
tile it adds a thumbnail, the whole image resized to one tile. The model cuts each tile
into patches and pixel-shuffles each 2 x 2 block of patches into one token: a tile is a
grid of ``sqrt(image_seq_length)`` tokens a side, each covering ``2 * patch_size``
pixels of the tile. Sections: the tiles in order, then the thumbnail.
"""

from __future__ import annotations

import math
from typing import Any

from ...viz.geometry import Axis, GridSection, TokenGeometry
from ...viz.processor_geometry import setting
from .tiling import tile_layout


def handles(processor: Any, image_processor: Any) -> bool:
    return type(image_processor).__name__.startswith("GotOcr2ImageProcessor")


def _crop_to_patches(processor: Any, image_processor: Any) -> bool:
    """The processor's default wins over the image processor's setting (transformers'
    ``_merge_kwargs`` passes the processor-level default explicitly)."""
    defaults = getattr(getattr(processor, "valid_processor_kwargs", None), "_defaults", None) or {}
    images = defaults.get("images_kwargs", {})
    if processor is not image_processor and "crop_to_patches" in images:
        return bool(images["crop_to_patches"])
    return bool(getattr(image_processor, "crop_to_patches", False))


def _tokens_per_side(processor: Any, tile: int, patch_size: Any) -> int:
    """From the processor's ``image_seq_length`` (tokens per tile), else from the vision
    tower's patch size with InternVL's 2 x 2 pixel shuffle."""
    per_tile = getattr(processor, "image_seq_length", None)
    if per_tile:
        return math.isqrt(int(per_tile))
    if patch_size is None:
        raise ValueError(
            "patch_size: this processor does not say its tokens per tile; pass "
            "patch_size=model.config.vision_config.patch_size"
        )
    patch = patch_size[0] if isinstance(patch_size, (list, tuple)) else patch_size
    return tile // (int(patch) * 2)


def token_geometry(processor: Any, image_processor: Any, width: int, height: int, patch_size: Any) -> TokenGeometry:
    tile_h = setting(image_processor.size, "height")
    tile_w = setting(image_processor.size, "width")
    if _crop_to_patches(processor, image_processor):
        low, high = int(image_processor.min_patches), int(image_processor.max_patches)
        columns, rows = tile_layout(height, width, (tile_h, tile_w), low, high)
    else:
        columns, rows = 1, 1
    side = _tokens_per_side(processor, tile_h, patch_size)
    cell_w, cell_h = tile_w // side, tile_h // side

    # The whole image resized to the tile grid, then cut into tiles.
    x, y = Axis(width).resize(columns * tile_w), Axis(height).resize(rows * tile_h)
    sections: list[GridSection] = []
    start = 0
    for index in range(columns * rows):
        row, column = divmod(index, columns)
        x_spans = x.cells(side, cell_w, width, first=column * side)
        y_spans = y.cells(side, cell_h, height, first=row * side)
        name = "image" if columns * rows == 1 else f"tile {index}"
        sections.append(GridSection(name, start, x_spans, y_spans))
        start += side * side
    if columns * rows > 1:
        tx, ty = Axis(width).resize(tile_w), Axis(height).resize(tile_h)
        sections.append(GridSection("thumbnail", start, tx.cells(side, cell_w, width), ty.cells(side, cell_h, height)))
    return TokenGeometry((width, height), tuple(sections), "internvl")
