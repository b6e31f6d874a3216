"""Which pixels each LLaVA-1.5 token covers: optional pad to a square (LLaVA's
``do_pad``), resize (shortest edge, or a fixed size), center crop; the vision tower cuts
the crop into ``patch_size`` patches, one token each, in raster order."""

from __future__ import annotations

from typing import Any

from ...viz.geometry import Axis, TokenGeometry
from ...viz.processor_geometry import cell_grid, patch_size_of, resize_and_crop, square_pad


def handles(processor: Any, image_processor: Any) -> bool:
    """Any processor that resizes or crops to a fixed size (CLIP, LLaVA, SigLIP ...):
    the generic case, tried after the families with their own processors."""
    return getattr(image_processor, "size", None) is not None or getattr(image_processor, "crop_size", None) is not None


def token_geometry(processor: Any, image_processor: Any, width: int, height: int, patch_size: int | None) -> TokenGeometry:
    return llava_geometry(image_processor, width, height, patch_size_of(processor, patch_size))


def llava_geometry(image_processor: Any, width: int, height: int, patch_size: int) -> TokenGeometry:
    """One square grid of ``patch_size`` patches over the processed image."""
    x, y = Axis(width), Axis(height)
    if getattr(image_processor, "do_pad", False) and type(image_processor).__name__.startswith("LlavaImageProcessor"):
        x, y = square_pad(x, y)
    x, y = resize_and_crop(image_processor, x, y)
    return TokenGeometry((width, height), (cell_grid("image", 0, x, y, patch_size, width, height),), "llava")
