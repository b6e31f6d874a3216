"""How InternVL's image processor (``GotOcr2ImageProcessor`` with ``crop_to_patches``)
cuts an image into tiles: transformers' ``dynamic_preprocess`` rule, shared by the tiny
models' fake images and the token geometry."""

from __future__ import annotations


def tile_layout(height: int, width: int, tile: tuple[int, int], min_tiles: int, max_tiles: int) -> tuple[int, int]:
    """(columns, rows) of tiles for an image of ``height`` x ``width`` pixels: the
    arrangement of ``min_tiles``..``max_tiles`` tiles closest to the image's aspect ratio
    (transformers' ``get_optimal_tiled_canvas``); (1, 1) when tiling is off."""
    if max_tiles <= 1:
        return 1, 1
    from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas

    columns, rows = get_optimal_tiled_canvas((height, width), tuple(tile), min_tiles, max_tiles)
    return int(columns), int(rows)


def tile_count(columns: int, rows: int) -> int:
    """Tiles the model sees: the grid's, plus the thumbnail (the whole image at one tile's
    size) when the grid has more than one tile."""
    return columns * rows + (1 if columns * rows > 1 else 0)
