"""A 5 x 7 bitmap font for the glyphs written on tiles.

Drawn from these bitmaps rather than a system font, so the pixels are identical on
every machine and Pillow version.
"""

from __future__ import annotations

import numpy as np

from .vocabulary import GLYPHS

_BITMAPS: dict[str, tuple[str, ...]] = {
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "C": (".####", "#....", "#....", "#....", "#....", "#....", ".####"),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "M": ("#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
    "3": ("####.", "....#", "....#", ".###.", "....#", "....#", "####."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
}

assert set(_BITMAPS) == set(GLYPHS), "every glyph needs a bitmap"


def glyph_mask(char: str, scale: int) -> np.ndarray:
    """Boolean (7 * scale, 5 * scale) mask of ``char``, each font pixel a scale x scale block."""
    rows = np.array([[c == "#" for c in row] for row in _BITMAPS[char]], dtype=bool)
    return np.kron(rows, np.ones((scale, scale), dtype=bool))
