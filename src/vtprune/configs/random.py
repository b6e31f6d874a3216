"""``random``'s config: a seeded uniformly random subset of each image's tokens."""

from __future__ import annotations

from dataclasses import dataclass

from ..checks import integer
from ..config import PruneConfig, option
from ..registry import PRE_LLM, Stage, lazy_select


@dataclass
class RandomConfig(PruneConfig):
    """Keep a seeded uniformly random subset of each image's visual tokens."""

    method = "random"
    paper = "Random subset (the common baseline)"
    summary = "seeded uniformly random subset of each image's tokens"
    seed: int = option(0, "Seed of the draw; the same seed keeps the same tokens of the same image.", check=integer())

    def stages(self, num_layers: int) -> list[Stage]:
        return [Stage(PRE_LLM, lazy_select("random", "select_random"))]
