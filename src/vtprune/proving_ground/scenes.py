"""Scene descriptions and the seeded sampler that lays them out.

A scene is a background colour, 5-9 small coloured shapes and 1-3 tiles with a glyph.
Objects sit in cells aligned with the model's 8-pixel patch grid (2 x 2 patches for a
small object, 3 x 3 for a large one) with a free patch between neighbours, and the
shape is drawn at a random size and offset inside its cell. The alignment is a
deliberate simplification: a two-layer vision tower trained in an hour on a CPU can
recognise a shape whose quarters always fall into the same patches, and what matters
for pruning is kept: every object lives in 4 or 9 of the 576 visual tokens.

The sampler takes a :class:`Plan` (objects that must be present, object kinds that
must be absent, a spatial relation, a tile, a background) so that question families
can fix their answer first and get a scene that makes it true.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .vocabulary import BACKGROUND_COLOURS, GLYPHS, OBJECT_COLOURS, SHAPES

PATCH = 8  # pixels per patch side of the vision tower
GRID = 24  # patches per image side: 24 x 24 = 576 visual tokens, as LLaVA-1.5
IMAGE_SIZE = PATCH * GRID  # 192 pixels

SMALL_CELL, LARGE_CELL, TILE_CELL = 2, 3, 2  # cell sides in patches
LARGE_PROBABILITY = 0.3
OBJECTS_PER_SCENE = (5, 9)  # inclusive range
TILES_PER_SCENE = (1, 3)
# A spatial relation is stated only when it is unambiguous: the centres differ by at
# least this many pixels along the dominant axis, and by at most half that along the other.
RELATION_MIN_OFFSET = 3 * PATCH


@dataclass(frozen=True)
class Box:
    """A pixel rectangle, ``x1`` / ``y1`` exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2)

    def _spans(self, patch: int, grid: int) -> tuple[range, range]:
        """(rows, columns) of the patch grid this box overlaps."""
        cols = range(self.x0 // patch, min(grid, (self.x1 - 1) // patch + 1))
        rows = range(self.y0 // patch, min(grid, (self.y1 - 1) // patch + 1))
        return rows, cols

    def patches(self, patch: int = PATCH, grid: int = GRID) -> list[int]:
        """Raster indices of the patches (visual tokens) this box overlaps."""
        rows, cols = self._spans(patch, grid)
        return [r * grid + c for r in rows for c in cols]

    def middle_patch(self, patch: int = PATCH, grid: int = GRID) -> int:
        """Raster index of the middle patch this box overlaps: the centre one of a
        large object's 3 x 3, the top-left one of the middle four of a small one's 2 x 2.

        It stands for the whole object where one token per object is wanted. The
        top-left patch is a poor stand-in: in a large cross, triangle or star it holds
        only background."""
        rows, cols = self._spans(patch, grid)
        return rows[(len(rows) - 1) // 2] * grid + cols[(len(cols) - 1) // 2]

    def overlaps(self, other: "Box", margin: int = 0) -> bool:
        return not (
            self.x1 + margin <= other.x0 or other.x1 + margin <= self.x0
            or self.y1 + margin <= other.y0 or other.y1 + margin <= self.y0
        )


@dataclass(frozen=True)
class SceneObject:
    """A coloured shape. ``cell`` is the patch-aligned square it owns, ``box`` the drawn shape."""

    shape: str
    colour: str
    rgb: tuple[int, int, int]
    cell: Box
    box: Box


@dataclass(frozen=True)
class Tile:
    """A square tile of one colour with a glyph written on it."""

    glyph: str
    colour: str
    rgb: tuple[int, int, int]
    box: Box


@dataclass(frozen=True)
class Scene:
    """Everything needed to draw an image and to answer questions about it."""

    background: str
    background_rgb: tuple[int, int, int]
    objects: tuple[SceneObject, ...]
    tiles: tuple[Tile, ...]
    render_seed: int  # the background's gradient and grain

    def count(self, shape: str | None = None, colour: str | None = None) -> int:
        return len(self.find(shape, colour))

    def find(self, shape: str | None = None, colour: str | None = None) -> list[SceneObject]:
        return [
            o for o in self.objects
            if (shape is None or o.shape == shape) and (colour is None or o.colour == colour)
        ]


Kind = tuple[str, str]  # (shape, colour)


@dataclass
class Plan:
    """Constraints a question family puts on the scene it asks about.

    objects:    kinds that must be present, placed first (one object each).
    allowed:    which kinds the filler objects may be.
    relation:   (i, j, direction): forced object i is ``direction`` of forced object j.
    tile:       (colour, glyph) of a tile that must be present.
    background: the background colour name, or None for a random one.
    """

    objects: list[Kind] = field(default_factory=list)
    allowed: Callable[[str, str], bool] = lambda shape, colour: True
    relation: tuple[int, int, str] | None = None
    tile: tuple[str, str] | None = None
    background: str | None = None


def relation_between(a: Box, b: Box) -> str | None:
    """Where ``a`` is relative to ``b`` ("left", "right", "above", "below"), or None if unclear."""
    (ax, ay), (bx, by) = a.centre, b.centre
    dx, dy = ax - bx, ay - by
    if abs(dx) >= RELATION_MIN_OFFSET and abs(dy) <= abs(dx) / 2:
        return "left" if dx < 0 else "right"
    if abs(dy) >= RELATION_MIN_OFFSET and abs(dx) <= abs(dy) / 2:
        return "above" if dy < 0 else "below"
    return None


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int], amount: int) -> tuple[int, int, int]:
    values = np.clip(np.array(rgb) + rng.integers(-amount, amount + 1, size=3), 0, 255)
    return (int(values[0]), int(values[1]), int(values[2]))


class _Layout:
    """Free patch-aligned cells; every placed cell keeps one free patch around it."""

    def __init__(self) -> None:
        self.taken = np.zeros((GRID, GRID), dtype=bool)

    def candidates(self, side: int) -> list[tuple[int, int]]:
        """(row, col) of every free side x side cell with a free patch all around it."""
        # Summed-area table of the taken map: a window (cell plus its one-patch ring,
        # clipped at the border) is free when its sum is zero.
        table = np.zeros((GRID + 1, GRID + 1), dtype=np.int32)
        table[1:, 1:] = self.taken.cumsum(0).cumsum(1)
        starts = np.arange(GRID - side + 1)
        r0 = np.maximum(starts - 1, 0)[:, None]
        r1 = np.minimum(starts + side + 1, GRID)[:, None]
        c0 = np.maximum(starts - 1, 0)[None, :]
        c1 = np.minimum(starts + side + 1, GRID)[None, :]
        window = table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]
        rows, cols = np.nonzero(window == 0)
        return list(zip(rows.tolist(), cols.tolist()))

    def take(self, row: int, col: int, side: int) -> Box:
        self.taken[row:row + side, col:col + side] = True
        return Box(col * PATCH, row * PATCH, (col + side) * PATCH, (row + side) * PATCH)


def _draw_box(rng: np.random.Generator, cell: Box) -> Box:
    """The drawn shape's box: 85-100% of the cell side, at a random offset inside it."""
    side = cell.x1 - cell.x0
    drawn = int(rng.integers(round(side * 0.85), side + 1))
    dx, dy = (int(v) for v in rng.integers(0, side - drawn + 1, size=2))
    return Box(cell.x0 + dx, cell.y0 + dy, cell.x0 + dx + drawn, cell.y0 + dy + drawn)


def _place(rng: np.random.Generator, layout: _Layout, side: int, accept: Callable[[Box], bool] | None = None) -> Box | None:
    options = layout.candidates(side)
    order = rng.permutation(len(options))
    for k in order:
        row, col = options[k]
        cell = Box(col * PATCH, row * PATCH, (col + side) * PATCH, (row + side) * PATCH)
        if accept is None or accept(cell):
            return layout.take(row, col, side)
    return None


def _try_sample(rng: np.random.Generator, plan: Plan) -> Scene | None:
    layout = _Layout()
    background = plan.background or str(rng.choice(list(BACKGROUND_COLOURS)))
    low, high = OBJECTS_PER_SCENE
    total = max(int(rng.integers(low, high + 1)), len(plan.objects))

    kinds: list[Kind] = list(plan.objects)
    allowed = [(s, c) for s in SHAPES for c in OBJECT_COLOURS if plan.allowed(s, c)]
    while len(kinds) < total:
        kinds.append(allowed[int(rng.integers(len(allowed)))])

    cells: list[Box] = []
    for i, _ in enumerate(kinds):
        side = LARGE_CELL if rng.random() < LARGE_PROBABILITY else SMALL_CELL
        accept = None
        if plan.relation is not None and i == max(plan.relation[0], plan.relation[1]):
            a, b, direction = plan.relation
            other = cells[min(a, b)]
            if i == a:  # this object is `direction` of the other one
                accept = lambda cell, other=other: relation_between(cell, other) == direction  # noqa: E731
            else:
                accept = lambda cell, other=other: relation_between(other, cell) == direction  # noqa: E731
        cell = _place(rng, layout, side, accept)
        if cell is None:
            return None
        cells.append(cell)

    objects = tuple(
        SceneObject(shape, colour, _jitter(rng, OBJECT_COLOURS[colour], 15), cell, _draw_box(rng, cell))
        for (shape, colour), cell in zip(kinds, cells)
    )

    low, high = TILES_PER_SCENE
    n_tiles = int(rng.integers(low, high + 1))
    tile_specs: list[tuple[str, str]] = [plan.tile] if plan.tile else []
    colours = [c for c in OBJECT_COLOURS if not plan.tile or c != plan.tile[0]]
    for colour in rng.permutation(colours)[: n_tiles - len(tile_specs)]:
        tile_specs.append((str(colour), str(rng.choice(GLYPHS))))
    tiles = []
    for colour, glyph in tile_specs:
        box = _place(rng, layout, TILE_CELL)
        if box is None:
            return None
        tiles.append(Tile(glyph, colour, _jitter(rng, OBJECT_COLOURS[colour], 10), box))

    return Scene(
        background=background,
        background_rgb=_jitter(rng, BACKGROUND_COLOURS[background], 10),
        objects=objects,
        tiles=tuple(tiles),
        render_seed=int(rng.integers(2**31)),
    )


def sample_scene(rng: np.random.Generator, plan: Plan | None = None, attempts: int = 50) -> Scene:
    """A random scene satisfying ``plan``; retries the layout when it runs out of room."""
    plan = plan or Plan()
    for _ in range(attempts):
        scene = _try_sample(rng, plan)
        if scene is not None:
            return scene
    raise RuntimeError(f"could not lay out a scene for {plan} in {attempts} attempts")
