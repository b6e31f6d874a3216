"""``coast``'s config: query anchors after layer K, then an entropy-driven head/tail split."""

from __future__ import annotations

from dataclasses import dataclass

from ..checks import fraction, integer
from ..config import PruneConfig, option
from ..registry import Stage, lazy_select


@dataclass
class COASTConfig(PruneConfig):
    """Anchors by last-token attention, then an entropy-driven head/tail split of the rest."""

    method = "coast"
    paper = "COAST: contrastive adaptive semantic token pruning (arXiv 2605.09429)"
    summary = "after layer K, query anchors plus an entropy-driven head/tail split by contrastive score"
    layer: int = option(2, "K: prune after the first K decoder layers ran on the full sequence.", check=integer(1))
    rho: float = option(
        0.8, "Share of the budget given to query anchors: n_anchor = floor(rho * B). In [0, 1].", check=fraction()
    )
    a_min: float = option(
        0.05, "Tail share of the non-anchor budget at zero attention entropy. In [0, 1], <= a_max.", check=fraction()
    )
    a_max: float = option(
        0.15, "Tail share of the non-anchor budget at maximal attention entropy. In [0, 1], >= a_min.", check=fraction()
    )

    def check_relations(self) -> None:
        if self.a_min > self.a_max:
            raise ValueError(f"a_min must be <= a_max; got a_min={self.a_min}, a_max={self.a_max}")

    def stages(self, num_layers: int) -> list[Stage]:
        where = f"llm:{self.layer}"
        needs = frozenset({f"attn_rows@{where}", f"attn_last@{where}", f"hidden@{where}"})
        return [Stage(where, lazy_select("coast", "select_coast"), needs)]
