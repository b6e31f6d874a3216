"""Which pixels each Qwen3-VL token covers: Qwen2-VL's rule (``smart_resize`` to
multiples of ``patch_size * merge_size``, one token per merged block), with Qwen3-VL's
16-pixel patches read from its image processor."""

from __future__ import annotations

from typing import Any

from ...viz.geometry import TokenGeometry
from ..qwen2_vl.geometry import handles, qwen2_vl_geometry

__all__ = ["handles", "token_geometry"]


def token_geometry(processor: Any, image_processor: Any, width: int, height: int, patch_size: int | None) -> TokenGeometry:
    return qwen2_vl_geometry(image_processor, width, height)
