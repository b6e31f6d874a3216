"""``uniform``'s config: an evenly strided lattice of each image's patch grid."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import PruneConfig
from ..registry import PRE_LLM, Stage, lazy_select


@dataclass
class UniformConfig(PruneConfig):
    """Keep an evenly strided lattice of each image's patch grid."""

    method = "uniform"
    paper = "Uniform spatial sampling (the common baseline)"
    summary = "evenly strided lattice on each image's patch grid"

    def stages(self, num_layers: int) -> list[Stage]:
        return [Stage(PRE_LLM, lazy_select("uniform", "select_uniform"))]
