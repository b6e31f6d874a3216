"""Which pixels each Gemma 3 token covers: the Gemma 3 image processor resizes the
image to its fixed ``size`` (no crop, aspect ratio not kept); the projector pools the
tower's patches into a square grid of ``image_seq_length`` tokens over it, in raster
order. Pan & Scan crops (``do_pan_and_scan``) are further images, not mapped here."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from ...viz.geometry import Axis, TokenGeometry
from ...viz.processor_geometry import cell_grid, setting


def handles(processor: Any, image_processor: Any) -> bool:
    return type(image_processor).__name__.startswith("Gemma3ImageProcessor")


def token_geometry(processor: Any, image_processor: Any, width: int, height: int, patch_size: int | None) -> TokenGeometry:
    if getattr(image_processor, "do_pan_and_scan", False):
        raise ValueError(
            "processor: do_pan_and_scan adds crops as further images, which show cannot map; "
            "set image_processor.do_pan_and_scan=False"
        )
    tokens = getattr(processor, "image_seq_length", None)
    if tokens is None:
        raise ValueError(
            "processor: a Gemma 3 image processor alone does not say how many tokens an image has; "
            "pass the model's Gemma3Processor (its image_seq_length)"
        )
    side = round(int(tokens) ** 0.5)
    size = image_processor.size
    new_height, new_width = setting(size, "height"), setting(size, "width")
    if not new_height or not new_width:
        raise ValueError(f"{type(image_processor).__name__}: size {size!r} has no height/width")
    x, y = Axis(width).resize(new_width), Axis(height).resize(new_height)
    if new_width != new_height:
        raise ValueError(f"{type(image_processor).__name__}: size {size!r} is not square as Gemma 3's tower reads it")
    return TokenGeometry((width, height), (cell_grid("image", 0, x, y, Fraction(new_width, side), width, height),), "gemma3")
