"""Corrupted variants of an image: Gaussian noise, blur, occlusion patches.

A corruption changes pixels, never the answer: occluding patches avoid the boxes the
question is about (its ``focus``), so everything the answer depends on stays visible.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageFilter

from .scenes import IMAGE_SIZE, Box

CORRUPTIONS: tuple[str, ...] = ("noise", "blur", "occlusion")

NOISE_STD = 24.0  # in 0-255 pixel units
BLUR_RADIUS = 1.2  # pixels
OCCLUDERS = 4
OCCLUDER_SIDE = (14, 30)  # pixels, inclusive
FOCUS_MARGIN = 3  # pixels kept clear around every focus box


def _noise(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0.0, NOISE_STD, size=(IMAGE_SIZE, IMAGE_SIZE, 3))
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="RGB")


def _blur(image: Image.Image) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(BLUR_RADIUS))


def _occlude(image: Image.Image, rng: np.random.Generator, focus: Sequence[Box]) -> Image.Image:
    pixels = np.array(image)
    placed = 0
    for _ in range(100):
        if placed == OCCLUDERS:
            break
        w, h = (int(v) for v in rng.integers(OCCLUDER_SIDE[0], OCCLUDER_SIDE[1] + 1, size=2))
        x0, y0 = (int(v) for v in rng.integers(0, IMAGE_SIZE - np.array([w, h]) + 1))
        patch = Box(x0, y0, x0 + w, y0 + h)
        if any(patch.overlaps(box, FOCUS_MARGIN) for box in focus):
            continue
        # Grey noise: no object colour, so an occluder never reads as an object.
        grey = rng.integers(60, 200)
        texture = np.clip(grey + rng.normal(0.0, 30.0, size=(h, w, 1)), 0, 255).astype(np.uint8)
        pixels[y0:y0 + h, x0:x0 + w] = texture
        placed += 1
    return Image.fromarray(pixels, mode="RGB")


def corrupt(image: Image.Image, corruption: str, rng: np.random.Generator, focus: Sequence[Box] = ()) -> Image.Image:
    """``image`` with ``corruption`` ("noise", "blur" or "occlusion") applied."""
    if corruption == "noise":
        return _noise(image, rng)
    if corruption == "blur":
        return _blur(image)
    if corruption == "occlusion":
        return _occlude(image, rng, focus)
    raise ValueError(f"corruption must be one of {CORRUPTIONS} or None; got {corruption!r}")
