"""``fastv``'s config: attention ranking after layer K of the language model."""

from __future__ import annotations

from dataclasses import dataclass

from ..checks import integer
from ..config import PruneConfig, option
from ..registry import Stage, lazy_select


@dataclass
class FastVConfig(PruneConfig):
    """Keep the top-``keep`` visual tokens by last-token attention after layer K."""

    method = "fastv"
    paper = "FastV: An Image is Worth 1/2 Tokens After Layer 2 (arXiv 2403.06764, ECCV 2024)"
    summary = "after layer K, keep the visual tokens the last prompt token attends to most"
    layer: int = option(
        2, "K: prune after the first K decoder layers ran on the full sequence (FastV uses K=2).", check=integer(1)
    )

    def stages(self, num_layers: int) -> list[Stage]:
        where = f"llm:{self.layer}"
        return [Stage(where, lazy_select("fastv", "select_fastv"), frozenset({f"attn_last@{where}"}))]
