"""Where a patch is: a 2-D start for the vision tower's position embeddings.

A relation question ("where is the red star relative to the blue circle?") is answered
by comparing where two objects are. The language model reads an object through the
values of its visual tokens, and values carry no RoPE, so the position must be in the
vision features themselves, as it is in CLIP's. A tower trained on patch content only
gives its learned position embeddings no reason to encode anything (measured on such a
tower: a linear probe recovers an object's row and column with R^2 ~ 0), so training
starts them from a 2-D sine / cosine table instead: half the channels vary with the
column, half with the row, at periods from a few patches to several image widths, so
the low frequencies make both coordinates linearly readable. The embeddings stay
ordinary learned parameters of ``CLIPVisionEmbeddings``; only their start is chosen.
"""

from __future__ import annotations

import math

import torch

from ..scenes import GRID

SHORTEST_PERIOD, LONGEST_PERIOD = 3.0, 4.0 * GRID  # in patches


def unit_coordinate(patches, grid: int = GRID):
    """A column or row in patches (0 at the centre of the first patch), a float or a
    tensor, scaled so that the first patch's centre is -1 and the last's +1: the scale
    of the position and locating targets."""
    return patches / (grid - 1) * 2 - 1


def grid_position_table(dim: int, grid: int = GRID, norm: float = 2.0) -> torch.Tensor:
    """(grid * grid, dim) in raster order: sin / cos of the column in the first half of
    the channels, of the row in the second, each token's vector of length ``norm``."""
    if dim % 4:
        raise ValueError(f"the vision width must be a multiple of 4 for a 2-D sin/cos table; got {dim}")
    pairs = dim // 4  # (sin, cos) pairs per axis
    periods = SHORTEST_PERIOD * (LONGEST_PERIOD / SHORTEST_PERIOD) ** (torch.arange(pairs) / max(1, pairs - 1))
    omega = 2 * math.pi / periods
    coords = torch.arange(grid, dtype=torch.float32)
    angles = coords[:, None] * omega[None, :]  # (grid, pairs)
    axis = torch.cat([angles.sin(), angles.cos()], dim=1)  # (grid, dim / 2)
    rows, cols = torch.meshgrid(coords.long(), coords.long(), indexing="ij")
    table = torch.cat([axis[cols.flatten()], axis[rows.flatten()]], dim=1)
    return table * (norm / math.sqrt(2 * pairs))


@torch.no_grad()
def start_with_grid_positions(vision_tower: torch.nn.Module, norm: float = 2.0) -> None:
    """Overwrite a CLIP vision tower's position embeddings with :func:`grid_position_table`
    (the CLS row, position 0, gets zeros)."""
    embedding = vision_tower.embeddings.position_embedding
    weight = embedding.weight
    patches = weight.shape[0] - 1
    grid = math.isqrt(patches)
    if grid * grid != patches:
        raise ValueError(f"expected a square patch grid plus CLS; the tower has {weight.shape[0]} positions")
    weight[0].zero_()
    weight[1:] = grid_position_table(weight.shape[1], grid, norm).to(weight.dtype)
