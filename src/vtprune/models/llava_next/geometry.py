"""Which pixels each LLaVA-NeXT / OneVision token covers.

The base image (the whole image squashed to the processor's size), then the image
resized to the best ``image_grid_pinpoints`` resolution keeping its aspect ratio,
centred on padding, cut into tiles whose token grids are joined into one grid, from
which the model removes the rows or columns of padding (``unpad_image``); OneVision
may then shrink that grid (``anyres_max_N``). Newline tokens are not counted.
"""

from __future__ import annotations

import math
from typing import Any

from ...viz.geometry import Axis, GridSection, TokenGeometry
from ...viz.processor_geometry import cell_grid, patch_size_of, resize_and_crop, setting


def _anyres(image_processor: Any) -> bool:
    return hasattr(image_processor, "image_grid_pinpoints")


def _onevision(processor: Any, image_processor: Any) -> bool:
    return "Onevision" in type(image_processor).__name__ or hasattr(processor, "vision_aspect_ratio")


def handles_next(processor: Any, image_processor: Any) -> bool:
    return _anyres(image_processor) and not _onevision(processor, image_processor)


def handles_onevision(processor: Any, image_processor: Any) -> bool:
    return _anyres(image_processor) and _onevision(processor, image_processor)


def next_geometry(processor: Any, image_processor: Any, width: int, height: int, patch_size: int | None) -> TokenGeometry:
    return llava_next_geometry(image_processor, width, height, patch_size_of(processor, patch_size))


def onevision_geometry(processor: Any, image_processor: Any, width: int, height: int, patch_size: int | None) -> TokenGeometry:
    geometry = llava_next_geometry(image_processor, width, height, patch_size_of(processor, patch_size))
    return shrink_high_res(geometry, getattr(processor, "vision_aspect_ratio", "anyres_max_9"))


def llava_next_geometry(image_processor: Any, width: int, height: int, patch_size: int) -> TokenGeometry:
    """LLaVA-NeXT: the base image's grid, then the unpadded grid of the high-resolution tiles."""
    from transformers.image_processing_utils import select_best_resolution

    size, crop = image_processor.size, getattr(image_processor, "crop_size", None)
    base_height = setting(size, "height") or setting(size, "shortest_edge")
    base_width = setting(size, "width") or setting(size, "shortest_edge")
    tile = setting(crop, "height") or base_height  # the processor's tile side

    # Base image: the whole image squashed to the processor's size, then the patch tail.
    bx, by = resize_and_crop(image_processor, Axis(width).resize(base_width), Axis(height).resize(base_height))
    base = cell_grid("base", 0, bx, by, patch_size, width, height)

    # High resolution: fit into the best pinpoint keeping aspect (get_patch_output_size), centre on padding.
    best_height, best_width = select_best_resolution((height, width), image_processor.image_grid_pinpoints)
    scale_w, scale_h = best_width / width, best_height / height
    if scale_w < scale_h:
        new_width, new_height = best_width, min(math.ceil(height * scale_w), best_height)
    else:
        new_height, new_width = best_height, min(math.ceil(width * scale_h), best_width)
    x = Axis(width).resize(new_width).window(-((best_width - new_width) // 2), best_width)
    y = Axis(height).resize(new_height).window(-((best_height - new_height) // 2), best_height)

    x_spans, y_spans = [], []
    for j in range(best_width // tile):
        tx, _ = resize_and_crop(image_processor, x.window(j * tile, tile), Axis(tile))
        x_spans += tx.cells(tx.length // patch_size, patch_size, width)
    for i in range(best_height // tile):
        _, ty = resize_and_crop(image_processor, Axis(tile), y.window(i * tile, tile))
        y_spans += ty.cells(ty.length // patch_size, patch_size, height)

    # The model's unpad_image on the joined token grid, with its rounding.
    rows, cols = len(y_spans), len(x_spans)
    if width / height > cols / rows:
        kept_rows = int(round(height * (cols / width), 7))
        pad = (rows - kept_rows) // 2
        y_spans = y_spans[pad : rows - pad]
    else:
        kept_cols = int(round(width * (rows / height), 7))
        pad = (cols - kept_cols) // 2
        x_spans = x_spans[pad : cols - pad]
    high = GridSection("high-res", base.size, tuple(x_spans), tuple(y_spans))
    return TokenGeometry((width, height), (base, high), "llava_next")


def shrink_high_res(geometry: TokenGeometry, vision_aspect_ratio: str) -> TokenGeometry:
    """LLaVA-OneVision: a high-resolution grid of more than ``anyres_max_N`` tiles' worth
    of tokens is shrunk by bilinear interpolation (the model's ``pack_image_features``);
    each new cell then covers its share of the old cells' pixels."""
    base, high = geometry.sections
    side = base.rows
    limit = int(vision_aspect_ratio.strip("anyres_max_"))
    ratio = math.sqrt(high.rows * high.cols / (limit * side * side))
    if ratio <= 1.1:
        return geometry
    rows, cols = int(high.rows // ratio), int(high.cols // ratio)

    def resample(spans: tuple, count: int) -> tuple:
        step = len(spans) / count
        return tuple(
            (spans[min(len(spans) - 1, math.floor(i * step))][0], spans[min(len(spans) - 1, math.ceil((i + 1) * step) - 1)][1])
            for i in range(count)
        )

    shrunk = GridSection(high.name, high.start, resample(high.x_spans, cols), resample(high.y_spans, rows))
    return TokenGeometry(geometry.image_size, (base, shrunk), geometry.kind)
