"""Images whose colours say where each pixel came from, and a check that a processed
patch holds exactly the pixels of the box a geometry gives its token.

A pixel at (x, y) is coloured R = x mod 256, G = y mod 256 and B = 128 + 8 * (x // 256)
+ (y // 256); padding the processors add is black or the CLIP mean colour, both with
B < 128. Run through a processor with nearest-neighbour resampling and no rescaling or
normalisation, every output pixel still names its source pixel.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

RAW = dict(resample=Image.Resampling.NEAREST, do_rescale=False, do_normalize=False, return_tensors="np")


def coordinate_image(width: int, height: int) -> Image.Image:
    assert width <= 2048 and height <= 2048
    x, y = np.meshgrid(np.arange(width), np.arange(height))
    blue = 128 + 8 * (x // 256) + (y // 256)
    return Image.fromarray(np.stack([x % 256, y % 256, blue], axis=-1).astype(np.uint8))


def source_coordinates(patch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, is_image) of the source pixel of each pixel of a (3, h, w) patch."""
    red, green, blue = np.rint(patch).astype(np.int64)
    is_image = blue >= 128
    high = blue - 128
    return red + 256 * (high // 8), green + 256 * (high % 8), is_image


def check_patch(patch: np.ndarray, box: tuple[float, float, float, float], where: str) -> None:
    """The patch's pixels come from ``box``.

    A patch of image pixels only: nearest-neighbour sampling takes, for patch pixel
    (i, k), the source pixel under the centre of its share of the box, so each source
    coordinate is known exactly. A patch that is partly padding (its box clipped at the
    image border): every image pixel's source lies in the box and they reach across it.
    A token whose box is empty holds only padding.
    """
    x, y, is_image = source_coordinates(patch)
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        assert not is_image.any(), f"{where}: box {box} is empty but the patch holds image pixels"
        return
    assert is_image.any(), f"{where}: box {box} but the patch is all padding"
    if is_image.all():
        rows, cols = is_image.shape
        centre_x = x0 + (np.arange(cols) + 0.5) * (x1 - x0) / cols
        centre_y = y0 + (np.arange(rows) + 0.5) * (y1 - y0) / rows
        assert (np.abs(x + 0.5 - centre_x[None, :]) <= 0.5 + 1e-6).all(), f"{where}: x {x[0]} for box {box}"
        assert (np.abs(y + 0.5 - centre_y[:, None]) <= 0.5 + 1e-6).all(), f"{where}: y {y[:, 0]} for box {box}"
        return
    xs, ys = x[is_image], y[is_image]
    assert (xs + 1 > x0).all() and (xs < x1).all(), f"{where}: x in {xs.min()}..{xs.max()}, box {box}"
    assert (ys + 1 > y0).all() and (ys < y1).all(), f"{where}: y in {ys.min()}..{ys.max()}, box {box}"
    step_x = max(1.0, (x1 - x0) / np.unique(np.nonzero(is_image)[1]).size) + 1
    step_y = max(1.0, (y1 - y0) / np.unique(np.nonzero(is_image)[0]).size) + 1
    assert xs.min() - x0 < step_x and x1 - 1 - xs.max() < step_x, f"{where}: x {xs.min()}..{xs.max()} vs {box}"
    assert ys.min() - y0 < step_y and y1 - 1 - ys.max() < step_y, f"{where}: y {ys.min()}..{ys.max()} vs {box}"
