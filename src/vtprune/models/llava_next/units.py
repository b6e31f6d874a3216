"""A LLaVA-NeXT / OneVision forward's images and videos as one layout.

Each image or video is an :class:`Item`: its units (an image's base grid and
high-resolution grid; a video's frames stacked into one grid) and, along its
placeholders, which unit each token belongs to and which tokens are newlines (row
ends, never pruned). Images and videos are numbered together in order of appearance
(models/media_order.py) and their tokens put at their own kind's placeholders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ...runtime.forward_inputs import Forward
from ...runtime.layout import ImageLayout, row_end_keys
from ..media_order import units_in_prompt_order


@dataclass
class Item:
    """units: (tokens, grid, offset in the item's tokens, frames) of each unit;
    unit_of / row_of / newline_of: along the item's placeholders, each token's unit
    (within the item), the row a newline closes (-1: none) and whether it is a newline."""

    units: list[tuple[int, tuple[int, int], int, int]]
    unit_of: list[int]
    row_of: list[int]
    newline_of: list[bool]


def assemble_layout(adapter: Any, forward: Forward, items: dict[str, list[Item]]) -> ImageLayout:
    """The layout of ``items`` (per kind, in the order the model scatters them); notes in
    ``forward.extras["llava_units"]`` each unit's (kind, index among its kind's units)."""
    ids = {"image": adapter.image_token_id, "video": getattr(adapter.config, "video_token_id", None)}
    masks = {kind: adapter.placeholder_mask(forward, ids[kind]) for kind in items if items[kind]}
    order = units_in_prompt_order(masks, {kind: [len(i.unit_of) for i in found] for kind, found in items.items()})
    counts, grids, parents, offsets, frames, notes, base = [], [], [], [], [], [], {}
    within = {kind: [sum(len(i.units) for i in found[:n]) for n in range(len(found))] for kind, found in items.items()}
    for parent, (kind, index) in enumerate(order):
        base[(kind, index)] = len(counts)
        for unit, (count, grid, offset, stacked) in enumerate(items[kind][index].units):
            counts.append(count), grids.append(grid), parents.append(parent), offsets.append(offset)
            frames.append(stacked), notes.append((kind, within[kind][index] + unit))
    forward.extras["llava_units"] = notes
    shape = next(iter(masks.values())).shape
    device = next(iter(masks.values())).device
    token_mask = torch.zeros(shape, dtype=torch.bool, device=device).reshape(-1)
    row_ends = torch.full(token_mask.shape, -1, dtype=torch.long, device=device)
    for kind, mask in masks.items():
        found = items[kind]
        unit = torch.tensor([u + base[(kind, i)] for i, item in enumerate(found) for u in item.unit_of], device=device)
        row = torch.tensor([r for item in found for r in item.row_of], device=device)
        newline = torch.tensor([n for item in found for n in item.newline_of], device=device)
        flat = mask.reshape(-1)
        where = torch.argsort((~flat).to(torch.uint8), stable=True)[: len(unit)]
        token_mask[where] = ~newline
        row_ends[where] = torch.where(newline, row_end_keys(unit, row), -1)
    return ImageLayout(
        token_mask.view(shape), tuple(counts), tuple(grids), tuple(parents), tuple(offsets), row_ends.view(shape),
        tuple(frames),
    )
