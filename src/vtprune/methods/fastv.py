"""``fastv``: FastV, attention ranking inside the language model.

Paper: "An Image is Worth 1/2 Tokens After Layer 2: Plug-and-Play Inference
Acceleration for Large Vision-Language Models", arXiv 2403.06764 (ECCV 2024).

After the first K decoder layers (K=2) ran on the full sequence, FastV keeps the
visual tokens that the prompt's last token attends to most (layer K's attention,
heads averaged) and drops the rest for all later layers. Nothing is rebuilt: this is
the official ranking, with the attention row recomputed by the runtime under SDPA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import PruneConfig, help_field
from ..registry import Stage, register
from ..signals import Signals
from .validation import require_int


@dataclass
class FastVConfig(PruneConfig):
    """Keep the top-``keep`` visual tokens by last-token attention after layer K."""

    method = "fastv"
    layer: int = help_field(2, "K: prune after the first K decoder layers ran on the full sequence (FastV uses K=2).")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.layer = require_int("layer", self.layer, low=1)


def select_fastv(signals: Signals, budget: int, config: FastVConfig) -> torch.Tensor:
    attention = signals[f"attn_last@llm:{config.layer}"].float()
    return attention.topk(min(budget, signals.num_tokens), dim=1).indices


def fastv_stages(config: FastVConfig, num_layers: int) -> list[Stage]:
    where = f"llm:{config.layer}"
    return [Stage(where, select_fastv, frozenset({f"attn_last@{where}"}))]


register(
    FastVConfig,
    paper="FastV: An Image is Worth 1/2 Tokens After Layer 2 (arXiv 2403.06764, ECCV 2024)",
    summary="after layer K, keep the visual tokens the last prompt token attends to most",
    stages=fastv_stages,
)(select_fastv)
