"""Draw a :class:`~.scenes.Scene` as an RGB image (PIL only, deterministic)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from .glyphs import glyph_mask
from .scenes import IMAGE_SIZE, Box, Scene, SceneObject, Tile

GLYPH_SCALE = 2  # font pixels -> image pixels: a 10 x 14 glyph on a 16 x 16 tile


def _background(scene: Scene) -> np.ndarray:
    """The background colour with a random linear gradient and a fine grain."""
    rng = np.random.default_rng(scene.render_seed)
    angle = rng.uniform(0, 2 * math.pi)
    strength = rng.uniform(0, 18)
    axis = np.linspace(-1.0, 1.0, IMAGE_SIZE)
    ramp = math.cos(angle) * axis[None, :] + math.sin(angle) * axis[:, None]
    pixels = np.array(scene.background_rgb, dtype=np.float32)[None, None, :] + strength * ramp[..., None]
    pixels = pixels + rng.normal(0.0, 4.0, size=pixels.shape)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _star(box: Box) -> list[tuple[float, float]]:
    cx, cy = (box.x0 + box.x1 - 1) / 2, (box.y0 + box.y1 - 1) / 2
    outer = (box.x1 - box.x0) / 2
    inner = outer * 0.45
    points = []
    for k in range(10):
        radius = outer if k % 2 == 0 else inner
        angle = -math.pi / 2 + k * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def _draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject) -> None:
    b = obj.box
    x0, y0, x1, y1 = b.x0, b.y0, b.x1 - 1, b.y1 - 1  # PIL's corners are inclusive
    side = b.x1 - b.x0
    if obj.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=obj.rgb)
    elif obj.shape == "square":
        draw.rectangle((x0 + 1, y0 + 1, x1 - 1, y1 - 1), fill=obj.rgb)
    elif obj.shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=obj.rgb)
    elif obj.shape == "star":
        draw.polygon(_star(b), fill=obj.rgb)
    elif obj.shape == "cross":
        arm = max(2, round(side / 3))
        lo = (side - arm) // 2
        draw.rectangle((x0 + lo, y0, x0 + lo + arm - 1, y1), fill=obj.rgb)
        draw.rectangle((x0, y0 + lo, x1, y0 + lo + arm - 1), fill=obj.rgb)
    else:
        raise ValueError(f"unknown shape {obj.shape!r}")


def _draw_tile(pixels: np.ndarray, tile: Tile) -> None:
    b = tile.box
    pixels[b.y0:b.y1, b.x0:b.x1] = tile.rgb
    mask = glyph_mask(tile.glyph, GLYPH_SCALE)
    h, w = mask.shape
    top, left = b.y0 + (b.y1 - b.y0 - h) // 2, b.x0 + (b.x1 - b.x0 - w) // 2
    luminance = 0.299 * tile.rgb[0] + 0.587 * tile.rgb[1] + 0.114 * tile.rgb[2]
    ink = (0, 0, 0) if luminance > 110 else (255, 255, 255)
    region = pixels[top:top + h, left:left + w]
    region[mask] = ink


def render(scene: Scene) -> Image.Image:
    """The scene as a 192 x 192 RGB image."""
    pixels = _background(scene)
    for tile in scene.tiles:
        _draw_tile(pixels, tile)
    image = Image.fromarray(pixels, mode="RGB")
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        _draw_object(draw, obj)
    return image
