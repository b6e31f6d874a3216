"""A measured figure with its spread, and whether the spread lets it be read.

Speed figures are medians over repetitions; each carries its spread (the
interquartile range, or the whole range under four values), printed as ± half of it
relative to the median. A figure whose ± exceeds :data:`READABLE_SPREAD` is
*unclear*: the repetitions disagree too much for the median to say anything, and
reports mark it so instead of printing a clean number.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

READABLE_SPREAD = 0.15  # half the spread / median above which a figure is unclear


def spread(values: Sequence[float]) -> float:
    """Interquartile range (or the range, under four values)."""
    if len(values) < 2:
        return 0.0
    if len(values) < 4:
        return max(values) - min(values)
    quartiles = statistics.quantiles(values, n=4)
    return quartiles[2] - quartiles[0]


@dataclass(frozen=True)
class Figure:
    """The median of some repetitions and their spread (``None``: nothing measured)."""

    median: float | None
    spread: float | None = None
    count: int = 0

    @classmethod
    def of(cls, values: Sequence[float | None]) -> "Figure":
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if not finite:
            return cls(None)
        return cls(statistics.median(finite), spread(finite), len(finite))

    @classmethod
    def ratio(cls, values: Sequence[float], references: Sequence[float]) -> "Figure":
        """Per-repetition ratios value / reference (repetition i of both was measured
        back to back), their median and spread."""
        return cls.of([v / r if r else None for v, r in zip(values, references)])

    @property
    def relative_spread(self) -> float | None:
        """Half the spread over the median: the ± of :meth:`text`."""
        if self.median is None or not self.median:
            return None
        return self.spread / 2 / abs(self.median)

    @property
    def readable(self) -> bool:
        """Whether the spread is narrow enough for the median to be read."""
        return self.relative_spread is not None and self.relative_spread <= READABLE_SPREAD

    def text(self, unit: str = "x", digits: int = 2) -> str:
        """``1.05x ±4%`` (half the spread, relative), ``unclear (0.49x ±62%)`` when the
        spread is too wide, ``-`` when nothing was measured."""
        if self.median is None:
            return "-"
        value = f"{self.median:.{digits}f}{unit}"
        if self.relative_spread is None:
            return value
        value += f" ±{self.relative_spread:.0%}"
        return value if self.readable else f"unclear ({value})"

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "spread": self.spread, "repetitions": self.count, "readable": self.readable}
