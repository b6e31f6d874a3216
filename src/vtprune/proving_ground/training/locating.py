"""Locating losses: the language model carries where the named objects are.

The vision tower's position loss puts each object token's column and row in its
features (``objective.PositionHead``), but that alone does not teach the language model
to use them: measured on this task, with every hop formed (attribute, existence and
reading above 90%), relation questions stayed at chance for 2,000 steps more. A
relation answer is a linear function of the offset between two objects ("left" when
the first object's column is smaller, ...), so two small training-only linear heads
ask for the offset along the path the hops already take:

* where: after the look layer, each anchor word that names one object regresses that
  object's centre (column, row in [-1, 1]): the look head must carry position as
  well as content;
* offset: after the read layer, the token that predicts a relation answer regresses
  the first object's centre minus the second's: the two read heads must bring both
  and keep them apart.

What the model then answers is left to the answer loss.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..scenes import PATCH, Box
from .positions import unit_coordinate


def box_centre(box: Box) -> tuple[float, float]:
    """A box's centre as (column, row) on the patch grid, scaled as ``objective.patch_coordinates``
    (the centre of patch 0 is -1, of the last patch +1)."""
    return tuple(unit_coordinate(c / PATCH - 0.5) for c in box.centre)  # type: ignore[return-value]


class LocationHeads(nn.Module):
    """Language model hidden state -> (column, row) of an object, or of an offset."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.where = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, 2))
        self.offset = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, 2))


@contextmanager
def capture_layer_outputs(layers: Sequence[nn.Module], indices: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Record the hidden states that the decoder layers ``indices`` return."""
    seen: dict[int, torch.Tensor] = {}
    handles = []
    for i in set(indices):
        def hook(module: nn.Module, args: tuple, output, i: int = i) -> None:
            seen[i] = output[0] if isinstance(output, tuple) else output
        handles.append(layers[i].register_forward_hook(hook))
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def _regression(head: nn.Module, hidden: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                targets: torch.Tensor) -> torch.Tensor:
    if rows.numel() == 0:
        return hidden.new_zeros(())
    return F.mse_loss(head(hidden[rows, cols]), targets.to(hidden.dtype))


def location_loss(heads: LocationHeads, look_output: torch.Tensor, read_output: torch.Tensor, anchors) -> torch.Tensor:
    """The where loss on the look layer's output plus the offset loss on the read layer's
    (``anchors``: ``batches.Anchors``)."""
    where = _regression(heads.where, look_output, anchors.where_rows, anchors.where_cols, anchors.where_xy)
    offset = _regression(heads.offset, read_output, anchors.offset_rows, anchors.offset_cols, anchors.offset_xy)
    return where + offset
