"""Where each visual token lies in the original image.

A model never sees the user's image: its processor resizes, pads, crops or tiles it
first, and the vision tower cuts the result into patches. :class:`TokenGeometry`
undoes that chain and gives each token index the box of ORIGINAL image pixels its
patch was made from, so a kept set can be drawn on the picture the user gave.

Every processor step used by the supported families (resize, pad, crop, tile) acts
on each axis separately, so a grid of tokens maps to a set of column spans times a
set of row spans: a token's box is the span of its column by the span of its row.
A :class:`GridSection` is one such grid (LLaVA-NeXT has two: the base image and the
high-resolution tiles); pixels outside every span of a section (cropped away, or
never reached because the grid only covers padding there) are seen by no token of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import numpy as np

Span = tuple[float, float]  # [start, end) along one axis, in original image pixels


def pixel_range(span: Span) -> tuple[int, int]:
    """The pixels [first, stop) of a span: pixel i belongs to it when its centre i + 0.5
    does, so the spans of neighbouring tokens share no pixel and leave none out."""
    start, end = span
    return math.ceil(start - 0.5), max(math.ceil(start - 0.5), math.ceil(end - 0.5))


@dataclass(frozen=True)
class GridSection:
    """A block of consecutive token indices laid out in raster order on one grid.

    name:    what the grid is ("image", "base", "high-res")
    start:   token index of the grid's cell (0, 0)
    x_spans: per column, its [x0, x1) in original pixels, clipped to the image (empty,
             x0 == x1, for a column that sees only padding)
    y_spans: per row, its [y0, y1)
    """

    name: str
    start: int
    x_spans: tuple[Span, ...]
    y_spans: tuple[Span, ...]

    @property
    def rows(self) -> int:
        return len(self.y_spans)

    @property
    def cols(self) -> int:
        return len(self.x_spans)

    @property
    def size(self) -> int:
        return self.rows * self.cols

    def cell(self, index: int) -> tuple[int, int]:
        """(row, col) of a token index of this section."""
        return divmod(index - self.start, self.cols)

    def scaled(self, sx: float, sy: float) -> "GridSection":
        return GridSection(
            self.name,
            self.start,
            tuple((a * sx, b * sx) for a, b in self.x_spans),
            tuple((a * sy, b * sy) for a, b in self.y_spans),
        )


@dataclass(frozen=True)
class TokenGeometry:
    """Each visual token's box in the original image, for one image.

    image_size: (width, height) of the original image, as PIL reports it
    sections:   the token grids, in token order; indices run across all of them
    kind:       which processor it describes ("grid", "llava", "llava_next", "qwen2_vl")
    """

    image_size: tuple[int, int]
    sections: tuple[GridSection, ...]
    kind: str = "grid"

    def __post_init__(self) -> None:
        expected = 0
        for section in self.sections:
            if section.start != expected:
                raise ValueError(f"section {section.name!r} starts at token {section.start}; expected {expected}")
            expected += section.size

    @property
    def num_tokens(self) -> int:
        return sum(section.size for section in self.sections)

    def section_of(self, index: int) -> GridSection:
        """The grid that holds token ``index``."""
        for section in self.sections:
            if section.start <= index < section.start + section.size:
                return section
        raise IndexError(f"token index {index} is outside 0..{self.num_tokens - 1}")

    def box(self, index: int) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of token ``index`` in original pixels, x1 and y1 exclusive."""
        section = self.section_of(index)
        row, col = section.cell(index)
        (x0, x1), (y0, y1) = section.x_spans[col], section.y_spans[row]
        return x0, y0, x1, y1

    def boxes(self) -> np.ndarray:
        """(num_tokens, 4) float array of every token's (x0, y0, x1, y1)."""
        return np.array([self.box(i) for i in range(self.num_tokens)], dtype=np.float64).reshape(-1, 4)

    def pixel_box(self, index: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the whole pixels token ``index`` covers, right and
        bottom exclusive (by pixel centres; empty for a token that sees only padding)."""
        x0, y0, x1, y1 = self.box(index)
        left, right = pixel_range((x0, x1))
        top, bottom = pixel_range((y0, y1))
        return left, top, right, bottom

    def tokens_at(self, x: float, y: float) -> list[int]:
        """The token indices, one per section at most, whose box holds point (x, y)."""
        found = []
        for section in self.sections:
            col = next((c for c, (a, b) in enumerate(section.x_spans) if a <= x < b), None)
            row = next((r for r, (a, b) in enumerate(section.y_spans) if a <= y < b), None)
            if col is not None and row is not None:
                found.append(section.start + row * section.cols + col)
        return found

    def cell_map(self, section: GridSection) -> tuple[np.ndarray, np.ndarray]:
        """For each pixel row and each pixel column of the image, its row and column on
        ``section``'s grid, -1 where no token of the section reaches it."""
        width, height = self.image_size
        return _axis_map(section.y_spans, height), _axis_map(section.x_spans, width)

    def coverage(self, section: GridSection | None = None) -> np.ndarray:
        """(height, width) bool mask of the pixels some token (of ``section``, or of any
        section) was made from."""
        width, height = self.image_size
        mask = np.zeros((height, width), dtype=bool)
        for part in self.sections if section is None else (section,):
            rows, cols = self.cell_map(part)
            mask |= (rows[:, None] >= 0) & (cols[None, :] >= 0)
        return mask

    def resized(self, width: int, height: int) -> "TokenGeometry":
        """The same tokens on the image resized to ``width`` x ``height`` (for display)."""
        sx, sy = width / self.image_size[0], height / self.image_size[1]
        return TokenGeometry((width, height), tuple(s.scaled(sx, sy) for s in self.sections), self.kind)


def _axis_map(spans: Sequence[Span], length: int) -> np.ndarray:
    out = np.full(length, -1, dtype=np.int64)
    for index, span in enumerate(spans):
        first, stop = pixel_range(span)
        out[max(first, 0) : max(min(stop, length), 0)] = index
    return out


def grid_geometry(image_size: tuple[int, int], rows: int, cols: int) -> TokenGeometry:
    """The whole image cut into ``rows`` x ``cols`` equal cells, in raster order."""
    if rows < 1 or cols < 1:
        raise ValueError(f"grid must be (rows, cols) with both >= 1; got ({rows}, {cols})")
    width, height = image_size
    x_spans = tuple(_as_span(Fraction(width * c, cols), Fraction(width * (c + 1), cols)) for c in range(cols))
    y_spans = tuple(_as_span(Fraction(height * r, rows), Fraction(height * (r + 1), rows)) for r in range(rows))
    return TokenGeometry((width, height), (GridSection("image", 0, x_spans, y_spans),), "grid")


def _as_span(start: Fraction, end: Fraction) -> Span:
    # Computed exactly, then rounded once: a boundary at a pixel centre stays exactly there.
    return float(start), float(end)


# --- the processor chain, one axis at a time -------------------------------------------


@dataclass(frozen=True)
class Axis:
    """One axis of a processed view: view coordinate = scale * original + offset, over
    a view ``length`` pixels long. Exact (rational) so boundaries land where the
    processor puts them."""

    length: int
    scale: Fraction = Fraction(1)
    offset: Fraction = Fraction(0)

    def resize(self, new_length: int) -> "Axis":
        """The view stretched to ``new_length`` pixels (pixel i's extent [i, i+1) maps to
        [i * f, (i + 1) * f), as PIL and torchvision sample)."""
        factor = Fraction(new_length, self.length)
        return Axis(new_length, self.scale * factor, self.offset * factor)

    def window(self, start: int, new_length: int) -> "Axis":
        """The view cut to [start, start + new_length): a crop for start >= 0, a pad
        before the content for start < 0 (and after it when new_length reaches past)."""
        return Axis(new_length, self.scale, self.offset - start)

    def back(self, view_start: Fraction | int, view_end: Fraction | int, image_length: int) -> Span:
        """A view span mapped back to the original axis and clipped to the image."""
        start = (Fraction(view_start) - self.offset) / self.scale
        end = (Fraction(view_end) - self.offset) / self.scale
        start, end = min(max(start, 0), image_length), min(max(end, 0), image_length)
        return _as_span(start, max(start, end))

    def cells(self, count: int, cell: Fraction | int, image_length: int, first: int = 0) -> tuple[Span, ...]:
        """Spans of ``count`` consecutive cells of ``cell`` view pixels, from cell ``first``."""
        return tuple(self.back((first + i) * cell, (first + i + 1) * cell, image_length) for i in range(count))
