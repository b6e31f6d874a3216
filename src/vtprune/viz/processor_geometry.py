"""Token geometry from an image processor's settings and the original image size.

Each builder replays, on the two axes, exactly what the processor does to the pixels
and then how the model reads the result into tokens:

* LLaVA-1.5 (CLIP / LLaVA image processors): optional pad to a square (LLaVA's
  ``do_pad``), resize (shortest edge, or a fixed size), center crop; the vision tower
  cuts the crop into ``patch_size`` patches, one token each, in raster order.
* LLaVA-NeXT: the base image (the whole image squashed to the processor's size),
  then the image resized to the best ``image_grid_pinpoints`` resolution keeping its
  aspect ratio, centred on padding, cut into tiles whose token grids are joined into
  one grid, from which the model removes the rows or columns of padding
  (``unpad_image``). Newline tokens are not counted.
* Qwen2-VL / Qwen2.5-VL: ``smart_resize`` to multiples of ``patch_size * merge_size``;
  one LLM token per ``merge_size`` x ``merge_size`` block of patches.

The tests run the real processors on images whose colours encode their coordinates
and check every token against these boxes.
"""

from __future__ import annotations

import math
from typing import Any

from .geometry import Axis, GridSection, TokenGeometry

ImageLike = Any  # a PIL image, or (width, height)


def image_size_of(image: ImageLike) -> tuple[int, int]:
    """(width, height) of a PIL image or of a (width, height) pair."""
    if hasattr(image, "size") and not callable(image.size) and len(image.size) == 2:
        width, height = image.size
    elif isinstance(image, (tuple, list)) and len(image) == 2:
        width, height = image
    else:
        raise TypeError(f"image must be a PIL image or a (width, height) pair; got {type(image).__name__}")
    width, height = int(width), int(height)
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive; got {width}x{height}")
    return width, height


def geometry_for(processor: Any, image: ImageLike, *, patch_size: int | None = None) -> TokenGeometry:
    """The token geometry ``processor`` gives ``image`` (a PIL image or its (width, height)).

    ``processor`` is a multimodal processor (``LlavaProcessor``, ``LlavaNextProcessor``,
    ``Qwen2VLProcessor``, ...) or its image processor. LLaVA-style models cut images into
    the vision tower's patches, which the image processor does not know: the processor
    carries it as ``patch_size``, or pass ``patch_size`` (the model's
    ``config.vision_config.patch_size``).
    """
    image_processor = getattr(processor, "image_processor", processor)
    width, height = image_size_of(image)
    name = type(image_processor).__name__
    if hasattr(image_processor, "image_grid_pinpoints"):
        geometry = llava_next_geometry(image_processor, width, height, _patch_size(processor, patch_size))
        if "Onevision" in name or hasattr(processor, "vision_aspect_ratio"):
            geometry = shrink_high_res(geometry, getattr(processor, "vision_aspect_ratio", "anyres_max_9"))
        return geometry
    if hasattr(image_processor, "merge_size") and hasattr(image_processor, "temporal_patch_size"):
        return qwen2_vl_geometry(image_processor, width, height)
    if getattr(image_processor, "size", None) is not None or getattr(image_processor, "crop_size", None) is not None:
        return llava_geometry(image_processor, width, height, _patch_size(processor, patch_size))
    raise TypeError(
        f"processor: cannot map tokens to pixels for {name}; supported: CLIP/LLaVA, LLaVA-NeXT and "
        "Qwen2-VL image processors (or their processors)"
    )


def _patch_size(processor: Any, patch_size: int | None) -> int:
    patch = patch_size if patch_size is not None else getattr(processor, "patch_size", None)
    if patch is None:
        raise ValueError(
            "patch_size: this processor does not say the vision tower's patch size; pass "
            "patch_size=model.config.vision_config.patch_size"
        )
    if int(patch) < 1:
        raise ValueError(f"patch_size must be >= 1; got {patch}")
    return int(patch)


def _get(size: Any, key: str) -> int | None:
    """A field of a processor size setting (a dict in older releases, a SizeDict now)."""
    if size is None:
        return None
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return None if value is None else int(value)


def _uses_torchvision(image_processor: Any) -> bool:
    names = {cls.__name__ for cls in type(image_processor).__mro__}
    return bool(names & {"TorchvisionBackend", "BaseImageProcessorFast"})


# --- the steps the processors take --------------------------------------------------------


def resized_size(size: Any, height: int, width: int) -> tuple[int, int]:
    """(height, width) after the processors' ``resize`` with setting ``size``."""
    shortest, longest = _get(size, "shortest_edge"), _get(size, "longest_edge")
    if shortest and longest:
        from transformers.image_transforms import get_size_with_aspect_ratio

        return tuple(get_size_with_aspect_ratio((height, width), shortest, longest))  # type: ignore[return-value]
    if shortest:
        # transformers.image_transforms.get_resize_output_image_size(default_to_square=False)
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(shortest * long / short)
        return (new_long, shortest) if width <= height else (shortest, new_long)
    max_height, max_width = _get(size, "max_height"), _get(size, "max_width")
    if max_height and max_width:
        scale = min(max_height / height, max_width / width)
        return int(height * scale), int(width * scale)
    fixed_height, fixed_width = _get(size, "height"), _get(size, "width")
    if fixed_height and fixed_width:
        return fixed_height, fixed_width
    raise ValueError(f"processor size setting {size!r} has no shortest_edge, max_height/max_width or height/width")


def _crop_start(length: int, crop: int, torchvision: bool) -> int:
    """Where a center crop of ``crop`` pixels starts on an axis of ``length`` pixels;
    negative when the processor pads a too-small image first (the two backends centre
    odd padding differently)."""
    if crop > length and torchvision:
        return -((crop - length) // 2)
    return (length - crop) // 2


def _resize_and_crop(image_processor: Any, x: Axis, y: Axis, *, resize: bool = True) -> tuple[Axis, Axis]:
    """The processors' common tail: resize by ``size``, then center crop by ``crop_size``."""
    if resize and getattr(image_processor, "do_resize", True):
        height, width = resized_size(image_processor.size, y.length, x.length)
        x, y = x.resize(width), y.resize(height)
    crop = getattr(image_processor, "crop_size", None)
    if getattr(image_processor, "do_center_crop", False) and crop is not None:
        torchvision = _uses_torchvision(image_processor)
        crop_height, crop_width = _get(crop, "height"), _get(crop, "width")
        x = x.window(_crop_start(x.length, crop_width, torchvision), crop_width)
        y = y.window(_crop_start(y.length, crop_height, torchvision), crop_height)
    return x, y


def _cell_grid(name: str, start: int, x: Axis, y: Axis, cell: int, width: int, height: int) -> GridSection:
    """The processed view cut into ``cell``-pixel squares (a partial last row or column,
    which the vision tower's strided patching drops, is left out)."""
    return GridSection(name, start, x.cells(x.length // cell, cell, width), y.cells(y.length // cell, cell, height))


def _square_pad(x: Axis, y: Axis) -> tuple[Axis, Axis]:
    """LLaVA's pad_to_square: the image centred on a square of its longer side."""
    side = max(x.length, y.length)
    return x.window(-((side - x.length) // 2), side), y.window(-((side - y.length) // 2), side)


# --- the three families ---------------------------------------------------------------------


def llava_geometry(image_processor: Any, width: int, height: int, patch_size: int) -> TokenGeometry:
    """LLaVA-1.5: one square grid of ``patch_size`` patches over the processed image."""
    x, y = Axis(width), Axis(height)
    if getattr(image_processor, "do_pad", False) and type(image_processor).__name__.startswith("LlavaImageProcessor"):
        x, y = _square_pad(x, y)
    x, y = _resize_and_crop(image_processor, x, y)
    return TokenGeometry((width, height), (_cell_grid("image", 0, x, y, patch_size, width, height),), "llava")


def llava_next_geometry(image_processor: Any, width: int, height: int, patch_size: int) -> TokenGeometry:
    """LLaVA-NeXT: the base image's grid, then the unpadded grid of the high-resolution tiles."""
    from transformers.image_processing_utils import select_best_resolution

    size, crop = image_processor.size, getattr(image_processor, "crop_size", None)
    base_height = _get(size, "height") or _get(size, "shortest_edge")
    base_width = _get(size, "width") or _get(size, "shortest_edge")
    tile = _get(crop, "height") or base_height  # the processor's tile side

    # Base image: the whole image squashed to the processor's size, then the patch tail.
    bx, by = _resize_and_crop(image_processor, Axis(width).resize(base_width), Axis(height).resize(base_height))
    base = _cell_grid("base", 0, bx, by, patch_size, width, height)

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
        tx, _ = _resize_and_crop(image_processor, x.window(j * tile, tile), Axis(tile))
        x_spans += tx.cells(tx.length // patch_size, patch_size, width)
    for i in range(best_height // tile):
        _, ty = _resize_and_crop(image_processor, Axis(tile), y.window(i * tile, tile))
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
    min_pixels = _get(size, "shortest_edge") or getattr(image_processor, "min_pixels", None)
    max_pixels = _get(size, "longest_edge") or getattr(image_processor, "max_pixels", None)
    x, y = Axis(width), Axis(height)
    if getattr(image_processor, "do_resize", True):
        if min_pixels is None or max_pixels is None:
            raise ValueError(f"{type(image_processor).__name__} has no min/max pixels setting")
        new_height, new_width = smart_resize(height, width, factor, int(min_pixels), int(max_pixels))
        x, y = x.resize(new_width), y.resize(new_height)
    return TokenGeometry((width, height), (_cell_grid("image", 0, x, y, factor, width, height),), "qwen2_vl")
