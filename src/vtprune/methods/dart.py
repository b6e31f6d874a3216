"""``dart``: DART, duplication-aware token reduction inside the language model.

Paper: "Stop Looking for Important Tokens in Multimodal Language Models: Duplication
Matters More", arXiv 2502.11494 (official code: github.com/ZichenWen1/DART).

After layer K (K=2), a few *pivot* tokens are chosen by the L1 norm of their layer-K
attention keys; then each pivot in turn claims its share of the budget among the
tokens least similar to it (cosine of the layer-K hidden states), so the kept set
holds the pivots plus the tokens least duplicated with them.

As in the official code: key L1 norm, pivots kept, the remaining budget split evenly
among the pivots, each pivot choosing its least similar tokens from those not yet
taken. Differences, because a stage sees only the image's own tokens: the official
LLaVA setting uses 4 image pivots plus 4 pivots among the text tokens after the image;
here all ``pivots`` (8 by default, the same total) are image tokens. The official code
also applies the model's final RMSNorm (with its weights) to the hidden states before
the cosine; here the cosine is of the raw layer-K hidden states. The official budget is
``pivots_image + 8 * (B // 8)`` tokens; here exactly B (the remainder goes to the
first pivots).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import PruneConfig, help_field
from ..registry import Stage, register
from ..signals import Signals
from .scoring import gather_rows, keep_all, unit_rows
from .validation import require_int


@dataclass
class DARTConfig(PruneConfig):
    """Keep key-norm pivots and the tokens least duplicated with them, after layer K."""

    method = "dart"
    layer: int = help_field(2, "K: prune after the first K decoder layers ran on the full sequence (DART: 2).")
    pivots: int = help_field(
        8,
        "Pivot tokens, chosen by the L1 norm of their layer-K keys (official LLaVA setting: "
        "4 image + 4 text pivots; here all are image tokens). Int >= 1.",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.layer = require_int("layer", self.layer, low=1)
        self.pivots = require_int("pivots", self.pivots, low=1)


def pivot_quotas(budget: int, pivots: int) -> list[int]:
    """Tokens each pivot claims besides itself: (budget - pivots) split evenly, the
    remainder one each to the first (strongest) pivots."""
    share, extra = divmod(budget - pivots, pivots)
    return [share + (1 if p < extra else 0) for p in range(pivots)]


def select_dart(signals: Signals, budget: int, config: DARTConfig) -> torch.Tensor:
    n = signals.num_tokens
    budget = min(budget, n)
    if budget >= n:
        return keep_all(signals)
    keys = signals[f"keys@llm:{config.layer}"].float()
    hidden = unit_rows(signals[f"hidden@llm:{config.layer}"])
    num_pivots = min(config.pivots, budget)
    pivots = keys.norm(p=1, dim=-1).topk(num_pivots, dim=1).indices  # strongest first
    rows = torch.arange(signals.num_images, device=signals.device)
    free = torch.ones(signals.num_images, n, dtype=torch.bool, device=signals.device)
    free[rows[:, None], pivots] = False
    picks = [pivots]
    for p, quota in enumerate(pivot_quotas(budget, num_pivots)):
        if quota == 0:
            continue
        pivot = gather_rows(hidden, pivots[:, p : p + 1])  # (I, 1, D)
        similarity = (hidden * pivot).sum(dim=-1).masked_fill(~free, float("inf"))
        chosen = similarity.topk(quota, dim=1, largest=False).indices
        free[rows[:, None], chosen] = False
        picks.append(chosen)
    return torch.cat(picks, dim=1)


def dart_stages(config: DARTConfig, num_layers: int) -> list[Stage]:
    where = f"llm:{config.layer}"
    return [Stage(where, select_dart, frozenset({f"keys@{where}", f"hidden@{where}"}))]


register(
    DARTConfig,
    paper="DART: Stop Looking for Important Tokens, Duplication Matters More (arXiv 2502.11494)",
    summary="after layer K, keep key-norm pivots and the tokens least duplicated with them",
    stages=dart_stages,
)(select_dart)
