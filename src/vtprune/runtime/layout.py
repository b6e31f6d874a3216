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


@dataclass(frozen=True)
class ImageLayout:
    """The visual tokens of one forward.

    token_mask: (B, L) bool, True at the visual tokens that may be pruned
    counts:     current tokens of each image, in order of appearance
    grids:      (rows, cols) full token grid of each image; rows * cols >= count
                (equal before any pruning)
    """

    token_mask: torch.Tensor
    counts: tuple[int, ...]
    grids: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.grids):
            raise ValueError("one grid per image is required")
        for count, (rows, cols) in zip(self.counts, self.grids):
            if not 1 <= count <= rows * cols:
                raise ValueError(f"image with {count} tokens cannot have a {rows}x{cols} grid")

    @property
    def num_images(self) -> int:
        return len(self.counts)

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
        """(num_images,) batch row of each image."""
        first = self.flat_positions[torch.tensor(self.starts, device=self.token_mask.device)]
        return torch.div(first, self.seq_len, rounding_mode="floor")

    @cached_property
    def ordinal_of_image(self) -> torch.Tensor:
        """(num_images,) index of each image within its own prompt."""
        sample = self.sample_of_image
        first_of_sample = torch.searchsorted(sample, sample)  # images are sorted by sample
        return torch.arange(self.num_images, device=sample.device) - first_of_sample

    def groups(self) -> dict[tuple[tuple[int, int], int], list[int]]:
        """Images that share a token grid and a current token count, which a stage can
        process as one batch: (grid, count) -> image numbers."""
        out: dict[tuple[tuple[int, int], int], list[int]] = {}
        for image, key in enumerate(zip(self.grids, self.counts)):
            out.setdefault(key, []).append(image)
        return out


@dataclass
class ImageGroup:
    """Images that share a token grid, at one stage: the unit a stage selects over.

    images:      image numbers (see :class:`ImageLayout`)
    positions:   (I, N) flat positions of their current tokens in the forward's batch
    token_index: (I, N) index of each current token in its image's full grid
    cache:       adapters keep per-group intermediate results here
    """

    grid: tuple[int, int]
    images: tuple[int, ...]
    positions: torch.Tensor
    token_index: torch.Tensor
    cache: dict = field(default_factory=dict)
