"""What one stage did to a forward: the single record every part of the runtime reads.

The prefill writes it, the report of the last forward (``handle.last_keep``,
``handle.stats``) reads its kept tokens and counts, and a prompt extended without a
cache replays its keep mask and merges (see prompt_replay.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Merge:
    """Features a stage wrote over kept tokens: at flat ``positions`` of its level's
    (B, length) sequence."""

    positions: torch.Tensor
    features: torch.Tensor
    length: int


@dataclass(frozen=True)
class Move:
    """Kept tokens a stage put in its own order: the token at flat ``sources`` of its
    level's (B, length) sequence goes to the slot at flat ``destinations`` (the same
    positions, permuted), once the level is compacted."""

    destinations: torch.Tensor
    sources: torch.Tensor
    length: int


@dataclass(frozen=True)
class GroupResult:
    """Kept tokens of a group of images, as indices into each image's full grid.

    merged_into: for merging methods, (I, rows * cols): the grid index of the kept token
                 each token's features went into (-1: none, or not present any more)
    """

    images: tuple[int, ...]
    kept: torch.Tensor  # (I, k) sorted
    merged_into: torch.Tensor | None = None


@dataclass
class StageOutcome:
    """What one stage kept of a forward's images.

    start:  the 0-based decoder layer it acts from (0: before the language model)
    keep:   (B, L) keep mask over its level's sequence (text and padding kept)
    groups: the kept tokens of every image group
    counts: tokens of every image (layout unit) after it
    merges: features it wrote over kept tokens
    moves:  kept tokens it put in its own order (see ``Move``)
    """

    start: int
    keep: torch.Tensor
    groups: list[GroupResult]
    counts: tuple[int, ...]
    merges: list[Merge] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)

    def replay(self, level, extra: int) -> torch.Tensor:
        """Write the merges into ``level`` (the same sequence plus ``extra`` tokens at the
        end of every row) and return the keep mask extended to it (new tokens: kept)."""
        for merge in self.merges:
            level.write_features(_extended(merge.positions, merge.length, extra), merge.features)
        return torch.cat((self.keep, self.keep.new_ones(self.keep.shape[0], extra)), dim=1)

    def flat_moves(self, extra: int = 0) -> tuple[torch.Tensor, torch.Tensor] | None:
        """All moves as flat (destinations, sources) of the level's sequence plus ``extra``
        tokens at the end of every row; ``None`` when the stage kept sequence order."""
        if not self.moves:
            return None
        return tuple(  # type: ignore[return-value]
            torch.cat([_extended(getattr(m, name).reshape(-1), m.length, extra) for m in self.moves])
            for name in ("destinations", "sources")
        )

    def at(self, start: int) -> "StageOutcome":
        """The same outcome recorded as acting from layer ``start``."""
        return StageOutcome(start, self.keep, self.groups, self.counts, self.merges, self.moves)


def _extended(positions: torch.Tensor, length: int, extra: int) -> torch.Tensor:
    """Flat positions of a (B, length) sequence, in the same sequence with ``extra``
    tokens appended to every row."""
    rows = torch.div(positions, length, rounding_mode="floor")
    return rows * (length + extra) + positions - rows * length
