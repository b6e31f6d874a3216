"""``uniform``: a strided lattice on the image's patch grid (spatial pooling by selection).

Keeps ``budget`` tokens spread evenly over rows and columns: an r x c lattice with r/c
close to the grid's aspect ratio and r*c >= budget, thinned evenly to exactly
``budget`` points. At 144 of 24 x 24 it keeps every other row and column.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from ..configs.uniform import UniformConfig
from ..signals import Signals


@lru_cache(maxsize=256)
def lattice_indices(rows: int, cols: int, budget: int) -> tuple[int, ...]:
    """Raster indices of ``budget`` evenly spread points on a rows x cols grid, sorted."""
    total = rows * cols
    if budget >= total:
        return tuple(range(total))
    r = min(rows, max(1, round(math.sqrt(budget * rows / cols))))
    c = min(cols, math.ceil(budget / r))
    r = max(r, math.ceil(budget / c))  # c hit the grid width: add rows (still <= rows)
    lattice_rows = [math.floor((i + 0.5) * rows / r) for i in range(r)]
    lattice_cols = [math.floor((j + 0.5) * cols / c) for j in range(c)]
    points = [y * cols + x for y in lattice_rows for x in lattice_cols]
    # r*c >= budget: thin evenly; the stride (r*c)/budget >= 1 keeps the picks distinct.
    stride = len(points) / budget
    return tuple(points[math.floor((k + 0.5) * stride)] for k in range(budget))


def select_uniform(signals: Signals, budget: int, config: UniformConfig) -> torch.Tensor:
    rows, cols = signals.grid
    wanted = torch.tensor(lattice_indices(rows, cols, budget), device=signals.device)
    if signals.num_tokens == rows * cols:  # before any other stage: tokens are the grid itself
        return wanted.expand(signals.num_images, budget)
    # After an earlier stage only some cells remain (sorted in raster order): stride
    # evenly through them instead.
    stride = signals.num_tokens / budget
    picks = ((torch.arange(budget, device=signals.device) + 0.5) * stride).floor().long()
    return picks.expand(signals.num_images, budget)
