"""Where the images are in a batch of token sequences.

An adapter describes the images of one forward as an :class:`ImageLayout` (which
positions are visual tokens, how many tokens each image has and its grid); this
module turns that into per-image index tensors without a Python loop over tokens.
Images are numbered in order of appearance, row by row through the batch: the order
in which transformers scatters image features into the sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch

ROW_KEY = 1 << 20  # rows per unit in a ``row_ends`` key (far above any real grid)


def row_end_keys(unit: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """``row_ends`` of tokens closing row ``row`` of unit ``unit`` (row -1: closing none)."""
    return torch.where(row >= 0, unit * ROW_KEY + row, -2)


@dataclass(frozen=True)
class ImageLayout:
    """The visual tokens of one forward.

    token_mask: (B, L) bool, True at the visual tokens that may be pruned
    counts:     current tokens of each image, in order of appearance (0 for a unit
                whose image's budget went to its other units)
    grids:      (rows, cols) full token grid of each image; rows * cols >= count
                (equal before any pruning)
    parents:    for models whose images come in several grids (LLaVA-NeXT: the base
                image, then its high-resolution grid), the image each grid belongs to;
                the "images" above are then those grids, pruned as separate units that
                share their image's budget. Default: every grid is an image.
    offsets:    where each unit's token indices start within its image's tokens
    row_ends:   (B, L) long, for image tokens that are not pruned as part of a grid
                (LLaVA-NeXT's newline tokens): unit * ROW_KEY + row for a token closing
                that row, -2 for one closing no row; -1 elsewhere. ``None``: no such
                tokens.
    """

    token_mask: torch.Tensor
    counts: tuple[int, ...]
    grids: tuple[tuple[int, int], ...]
    parents: tuple[int, ...] = ()
    offsets: tuple[int, ...] = ()
    row_ends: torch.Tensor | None = None
    frames: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.grids):
            raise ValueError("one grid per image is required")
        if not self.parents:
            object.__setattr__(self, "parents", tuple(range(len(self.counts))))
            object.__setattr__(self, "offsets", (0,) * len(self.counts))
        if not self.frames:
            object.__setattr__(self, "frames", (1,) * len(self.counts))
        for frames, (rows, _) in zip(self.frames, self.grids):
            if frames < 1 or rows % frames:
                raise ValueError(f"a grid of {rows} rows cannot stack {frames} frames")
        for count, (rows, cols) in zip(self.counts, self.grids):
            if not 0 <= count <= rows * cols:
                raise ValueError(f"image with {count} tokens cannot have a {rows}x{cols} grid")

    @property
    def num_units(self) -> int:
        """Units (grids) to prune; equal to the images except for multi-grid models."""
        return len(self.counts)

    @property
    def num_parents(self) -> int:
        return self.parents[-1] + 1 if self.parents else 0

    def budgets(self, config, share=None) -> tuple[int, ...]:
        """Each unit's budget: its image's budget (from the image's full token count), or
        ``share(budget, tokens, config)`` of it, shared among the image's units in
        proportion to their size."""
        from ..config import split_budget

        full = [rows * cols for rows, cols in self.grids]
        out = [0] * len(full)
        for parent in range(self.num_parents):
            units = [u for u, p in enumerate(self.parents) if p == parent]
            sizes = [full[u] for u in units]
            budget = config.budget(sum(sizes))
            if share is not None:
                budget = share(budget, sum(sizes), config)
            for unit, share_of_unit in zip(units, split_budget(budget, sizes)):
                out[unit] = share_of_unit
        return tuple(out)

    @property
    def seq_len(self) -> int:
        return self.token_mask.shape[1]

    @cached_property
    def flat_positions(self) -> torch.Tensor:
        """(total,) flat (b * L + l) position of every visual token, in order."""
        total = sum(self.counts)
        flat = self.token_mask.reshape(-1)
        # A stable sort of "not visual" lists the visual positions first, in order,
        # and, unlike nonzero(), needs no host sync to know how many there are.
        return torch.argsort((~flat).to(torch.uint8), stable=True)[:total]

    @cached_property
    def starts(self) -> list[int]:
        """Offset of each image's first token in :attr:`flat_positions`."""
        offsets, total = [], 0
        for count in self.counts:
            offsets.append(total)
            total += count
        return offsets

    def image_positions(self, images: list[int]) -> torch.Tensor:
        """(I, N) flat positions of the tokens of ``images``, which share a token count."""
        count = self.counts[images[0]]
        starts = torch.tensor([self.starts[i] for i in images], device=self.token_mask.device)
        return self.flat_positions[starts[:, None] + torch.arange(count, device=starts.device)]

    @cached_property
    def sample_of_image(self) -> torch.Tensor:
        """(num_units,) batch row of each unit."""
        # A unit with no tokens left takes the row of its image's unit that has some.
        source = [i if self.counts[i] else self._unit_with_tokens(i) for i in range(self.num_units)]
        first = self.flat_positions[torch.tensor([self.starts[i] for i in source], device=self.token_mask.device)]
        return torch.div(first, self.seq_len, rounding_mode="floor")

    def _unit_with_tokens(self, unit: int) -> int:
        for other, parent in enumerate(self.parents):
            if parent == self.parents[unit] and self.counts[other]:
                return other
        raise ValueError(f"image {self.parents[unit]} has no tokens left in any of its grids")

    @cached_property
    def ordinal_of_image(self) -> torch.Tensor:
        """(num_units,) index of each unit's image within its own prompt."""
        sample = self.sample_of_image
        first_of_sample = torch.searchsorted(sample, sample)  # images are sorted by sample
        return torch.arange(self.num_units, device=sample.device) - first_of_sample

    def groups(self, budgets: tuple | None = None) -> dict[tuple, list[int]]:
        """Images that share a token grid, a current token count (and a budget, when
        given), which a stage can process as one batch: key -> image numbers."""
        out: dict[tuple, list[int]] = {}
        keys = zip(self.grids, self.counts, budgets) if budgets is not None else zip(self.grids, self.counts)
        for image, key in enumerate(keys):
            out.setdefault(key, []).append(image)
        return out


@dataclass
class ImageGroup:
    """Images that share a token grid, at one stage: the unit a stage selects over.

    images:      image numbers (see :class:`ImageLayout`)
    positions:   (I, N) flat positions of their current tokens in the forward's batch
    token_index: (I, N) index of each current token in its image's full grid
    cache:       adapters keep per-group intermediate results here
    last_position: (I,) flat position of the last token of each image, when the group
                 holds only part of it (one frame of a video): the image's instruction is
                 the text after the whole image
    """

    grid: tuple[int, int]
    images: tuple[int, ...]
    positions: torch.Tensor
    token_index: torch.Tensor
    cache: dict = field(default_factory=dict)
    last_position: torch.Tensor | None = None
