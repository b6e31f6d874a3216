"""``divprune``'s config: max-min diversity of the kept visual tokens."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import PruneConfig
from ..registry import PRE_LLM, Stage, lazy_select


@dataclass
class DivPruneConfig(PruneConfig):
    """Keep a max-min diverse subset of each image's tokens (cosine distance)."""

    method = "divprune"
    paper = "DivPrune: Diversity-based Visual Token Pruning (arXiv 2503.02175, CVPR 2025)"
    summary = "greedy max-min diversity on the cosine distance of the LLM-input features"

    def stages(self, num_layers: int) -> list[Stage]:
        return [Stage(PRE_LLM, lazy_select("divprune", "select_divprune"), frozenset({"visual"}))]
