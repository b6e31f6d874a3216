"""Drawing kept tokens on the image (PIL only).

Kept tokens' pixels stay as they are, pruned tokens' pixels are dimmed, and pixels no
token was made from (cropped away by the processor, or dropped as padding) are dimmed
further and hatched, so "pruned" and "never seen" do not look alike. Tokens merged
into a kept token are outlined, with that kept token, in one colour per group.
"""

from __future__ import annotations

import colorsys
import numbers
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .geometry import GridSection, TokenGeometry, grid_geometry, pixel_range
from .processor_geometry import geometry_for

PRUNED_BRIGHTNESS = 0.3  # pruned pixels keep this share of their brightness
UNSEEN_BRIGHTNESS = 0.15
HATCH_PERIOD = 8  # px between the diagonal stripes over unseen pixels
CAPTION_HEIGHT = 24  # px of the caption strip under a panel
MARGIN = 8  # px between and around panels
BACKGROUND = (255, 255, 255)

PRUNED, KEPT = 1, 2  # cell states; 0: no token


def as_geometry(grid: Any, image: Image.Image, patch_size: int | None = None) -> TokenGeometry:
    """A :class:`TokenGeometry` from what callers pass as ``grid``: one, a (rows, cols)
    pair covering the whole image, or a processor to compute it with."""
    if isinstance(grid, TokenGeometry):
        if grid.image_size != image.size:
            raise ValueError(f"grid: geometry is for a {grid.image_size} image; this image is {image.size}")
        return grid
    if isinstance(grid, (tuple, list)) and len(grid) == 2 and all(isinstance(v, numbers.Integral) for v in grid):
        return grid_geometry(image.size, int(grid[0]), int(grid[1]))
    if hasattr(grid, "image_processor") or hasattr(grid, "preprocess"):
        return geometry_for(grid, image, patch_size=patch_size)
    raise TypeError(
        f"grid must be a TokenGeometry, a (rows, cols) pair or a processor; got {type(grid).__name__}"
    )


def _indices(values: Any, name: str, limit: int) -> np.ndarray:
    """One image's token indices as a 1-D int array, checked against the image's tokens."""
    expected = f"{name}: one image's token indices (such as handle.last_keep[sample][image])"
    try:
        array = np.asarray(values.tolist() if hasattr(values, "tolist") else list(values), dtype=np.int64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{expected}; got {type(values).__name__}") from error
    if array.ndim != 1:
        raise ValueError(f"{expected}; got an array of shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() >= limit):
        raise ValueError(f"{name}: token indices must lie in 0..{limit - 1}; got {array.min()}..{array.max()}")
    return array


def _merge_targets(merge: Any, limit: int) -> np.ndarray | None:
    if merge is None:
        return None
    targets = np.asarray(merge.tolist() if hasattr(merge, "tolist") else list(merge), dtype=np.int64).reshape(-1)
    if targets.size != limit:
        raise ValueError(f"merge: one target per token of the image ({limit}); got {targets.size}")
    if targets.max(initial=-1) >= limit or targets.min(initial=-1) < -1:
        raise ValueError(f"merge: targets must be -1 or token indices 0..{limit - 1}")
    return targets


def group_colour(target: int) -> tuple[int, int, int]:
    """A bright colour per merge group; neighbouring indices get distant hues."""
    hue = (target * 0.6180339887) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.9, 1.0)
    return int(red * 255), int(green * 255), int(blue * 255)


def _font(size: int = 14) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _shade(pixels: np.ndarray, state: np.ndarray) -> np.ndarray:
    """Dim pruned pixels and dim and hatch unseen ones; kept pixels are left as they are."""
    out = pixels.astype(np.float32)
    out[state == PRUNED] *= PRUNED_BRIGHTNESS
    unseen = state == 0
    out[unseen] *= UNSEEN_BRIGHTNESS
    rows, cols = np.indices(state.shape)
    stripes = unseen & ((rows + cols) % HATCH_PERIOD < 2)
    out[stripes] = 110.0
    return out.clip(0, 255).astype(np.uint8)


def _draw_groups(draw: ImageDraw.ImageDraw, section: GridSection, groups: np.ndarray, width: int) -> None:
    """Outline the cells of each merge group along the edges it does not share with itself."""
    owner = groups[section.start : section.start + section.size].reshape(section.rows, section.cols)
    xs = [pixel_range(span) for span in section.x_spans]
    ys = [pixel_range(span) for span in section.y_spans]
    for row, col in zip(*np.nonzero(owner >= 0)):
        group = owner[row, col]
        (left, right), (top, bottom) = xs[col], ys[row]
        if right <= left or bottom <= top:
            continue  # a token that saw only padding has no pixels to outline
        colour = group_colour(int(group))
        edges = (
            (row == 0 or owner[row - 1, col] != group, [(left, top), (right - 1, top)]),
            (row == section.rows - 1 or owner[row + 1, col] != group, [(left, bottom - 1), (right - 1, bottom - 1)]),
            (col == 0 or owner[row, col - 1] != group, [(left, top), (left, bottom - 1)]),
            (col == section.cols - 1 or owner[row, col + 1] != group, [(right - 1, top), (right - 1, bottom - 1)]),
        )
        for is_border, line in edges:
            if is_border:
                draw.line(line, fill=colour, width=width)


def _merge_groups(targets: np.ndarray) -> np.ndarray:
    """Per token, the kept token whose group it is in (-1: in none): every token merged
    into another, and the token it went into."""
    merged = (targets >= 0) & (targets != np.arange(targets.size))
    groups = np.where(merged, targets, -1)
    receivers = np.unique(targets[merged])
    groups[receivers] = receivers
    return groups


def _caption(panel: Image.Image, text: str) -> Image.Image:
    """``panel`` over a strip with ``text``; wider than the panel if the text needs it."""
    font = _font()
    width = max(panel.width, int(ImageDraw.Draw(panel).textlength(text, font=font)) + 8)
    out = Image.new("RGB", (width, panel.height + CAPTION_HEIGHT), BACKGROUND)
    out.paste(panel, (0, 0))
    ImageDraw.Draw(out).text((4, panel.height + 4), text, fill=(0, 0, 0), font=font)
    return out


def overlay(
    image: Image.Image,
    keep_indices: Any,
    grid: Any,
    *,
    merge: Any = None,
    caption: str | None = None,
    side: int | None = None,
    patch_size: int | None = None,
) -> Image.Image:
    """``image`` with the tokens in ``keep_indices`` clear and every other token dimmed.

    grid:         where the tokens lie: a :class:`TokenGeometry` (see
                  :func:`~vtprune.viz.geometry_for`), a ``(rows, cols)`` pair meaning the whole
                  image is that grid in raster order, or the model's processor
                  (``patch_size`` as for :func:`geometry_for`)
    keep_indices: kept token indices of this image (``handle.last_keep[sample][image]``)
    merge:        per token, the kept token its features were merged into, -1 for none
                  (``handle.last_merge[sample][image]``): each group is outlined in its colour
    caption:      text in a strip under the picture
    side:         draw on a copy of the image resized so that its longer side is this many
                  pixels (up or down; small images are enlarged pixel by pixel)

    A geometry with several grids over the same pixels (LLaVA-NeXT: the base image and
    the high-resolution tiles) gives one panel per grid, side by side, each named.
    """
    image = image.convert("RGB")
    geometry = as_geometry(grid, image, patch_size)
    kept = _indices(keep_indices, "keep_indices", geometry.num_tokens)
    targets = _merge_targets(merge, geometry.num_tokens)
    if side is not None and side != max(image.size):
        scale = side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR
        image, geometry = image.resize(size, resample), geometry.resized(*size)

    state = np.full(geometry.num_tokens, PRUNED, dtype=np.int64)
    state[kept] = KEPT
    pixels = np.asarray(image)
    panels = []
    for section in geometry.sections:
        cells = state[section.start : section.start + section.size].reshape(section.rows, section.cols)
        rows, cols = geometry.cell_map(section)
        seen = (rows[:, None] >= 0) & (cols[None, :] >= 0)
        pixel_state = np.where(seen, cells[rows.clip(0)[:, None], cols.clip(0)[None, :]], 0)
        panel = Image.fromarray(_shade(pixels, pixel_state))
        if targets is not None:
            smallest_cell = min(
                min((b - a for a, b in section.x_spans if b > a), default=1.0),
                min((b - a for a, b in section.y_spans if b > a), default=1.0),
            )
            line_width = max(1, round(smallest_cell / 8))
            _draw_groups(ImageDraw.Draw(panel), section, _merge_groups(targets), line_width)
        panels.append(panel)
    if len(panels) > 1:
        panels = [_caption(p, f"{s.name} {s.rows}x{s.cols}") for p, s in zip(panels, geometry.sections)]
        picture = side_by_side(panels)
    else:
        picture = panels[0]
    return _caption(picture, caption) if caption else picture


def overlay_stages(
    image: Image.Image,
    keep_by_stage: Mapping[str, Any],
    grid: Any,
    *,
    merge: Any = None,
    side: int | None = None,
    patch_size: int | None = None,
    title: str = "",
) -> Image.Image:
    """One :func:`overlay` panel per stage (``handle.keep_by_stage``, taken for one
    image), left to right, captioned "<title>, <stage>: <kept> kept". Merge groups are
    drawn on the last panel, the kept set the language model ends with."""
    if not keep_by_stage:
        raise ValueError("keep_by_stage: no stages to draw")
    image = image.convert("RGB")
    geometry = as_geometry(grid, image, patch_size)
    panels = []
    names = list(keep_by_stage)
    for name in names:
        kept = keep_by_stage[name]
        count = len(kept.tolist() if hasattr(kept, "tolist") else list(kept))
        last = name == names[-1]
        text = f"{title}, {name}: {count} kept" if title else f"{name}: {count} kept"
        panels.append(overlay(image, kept, geometry, merge=merge if last else None, caption=text, side=side))
    return side_by_side(panels)


def side_by_side(panels: Sequence[Image.Image]) -> Image.Image:
    """Panels in one row, top-aligned, with margins."""
    return panel_grid([list(panels)])


def panel_grid(rows: Iterable[Sequence[Image.Image]]) -> Image.Image:
    """Panels in rows, each in a cell as large as the largest panel, with ``MARGIN``
    pixels between and around cells, on white."""
    rows = [list(row) for row in rows]
    if not rows or not any(rows):
        raise ValueError("panel_grid: no panels")
    cell_width = max(p.width for row in rows for p in row)
    cell_height = max(p.height for row in rows for p in row)
    columns = max(len(row) for row in rows)
    out = Image.new(
        "RGB",
        (columns * (cell_width + MARGIN) + MARGIN, len(rows) * (cell_height + MARGIN) + MARGIN),
        BACKGROUND,
    )
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            out.paste(panel, (MARGIN + c * (cell_width + MARGIN), MARGIN + r * (cell_height + MARGIN)))
    return out


LEGEND = (
    ("kept", "kept"),
    ("pruned", "pruned (dimmed)"),
    ("unseen", "no token: cropped or padded away (hatched)"),
    ("merged", "merged into the kept token of its outline colour"),
)
SWATCH = (36, 18)  # px of a legend swatch


def _swatch(kind: str) -> Image.Image:
    """A small colour ramp drawn the way ``kind`` pixels are."""
    width, height = SWATCH
    ramp = np.zeros((height, width, 3), dtype=np.uint8)
    ramp[..., 0] = np.linspace(90, 250, width, dtype=np.uint8)[None, :]
    ramp[..., 1] = 170
    ramp[..., 2] = np.linspace(230, 110, width, dtype=np.uint8)[None, :]
    state = np.full((height, width), {"pruned": PRUNED, "unseen": 0}.get(kind, KEPT))
    patch = Image.fromarray(_shade(ramp, state))
    if kind == "merged":
        ImageDraw.Draw(patch).rectangle((0, 0, width - 1, height - 1), outline=group_colour(3), width=2)
    return patch


def legend(merged: bool = True) -> Image.Image:
    """What the panels' shading means, one swatch and line each (``merged``: with the
    outline of merge groups)."""
    font = _font()
    entries = [entry for entry in LEGEND if merged or entry[0] != "merged"]
    line = SWATCH[1] + 6
    width = SWATCH[0] + 12 + max(int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(t, font=font)) for _, t in entries)
    out = Image.new("RGB", (width + 8, line * len(entries) + 4), BACKGROUND)
    draw = ImageDraw.Draw(out)
    for row, (kind, text) in enumerate(entries):
        top = 4 + row * line
        out.paste(_swatch(kind), (4, top))
        draw.text((SWATCH[0] + 12, top + 2), text, fill=(0, 0, 0), font=font)
    return out


def with_key(picture: Image.Image, *, prompt: str | None = None, original: Image.Image | None = None,
             merged: bool = True) -> Image.Image:
    """``picture`` over its key: the original image (if given), the prompt (if given)
    and the legend of the shading."""
    font = _font()
    blocks = []
    if original is not None:
        blocks.append(_caption(original, "original image"))
    text = legend(merged)
    if prompt:
        heading = f"prompt: {prompt}"
        limit = max(text.width, 480)
        while ImageDraw.Draw(text).textlength(heading, font=font) > limit and len(heading) > 4:
            heading = heading[:-4] + "..."
        header = Image.new("RGB", (max(text.width, int(ImageDraw.Draw(text).textlength(heading, font=font)) + 8),
                                   CAPTION_HEIGHT), BACKGROUND)
        ImageDraw.Draw(header).text((4, 4), heading, fill=(0, 0, 0), font=font)
        stacked = Image.new("RGB", (max(header.width, text.width), header.height + text.height), BACKGROUND)
        stacked.paste(header, (0, 0))
        stacked.paste(text, (0, header.height))
        text = stacked
    blocks.append(text)
    key = side_by_side(blocks)
    out = Image.new("RGB", (max(picture.width, key.width), picture.height + key.height), BACKGROUND)
    out.paste(picture, (0, 0))
    out.paste(key, (0, picture.height))
    return out
