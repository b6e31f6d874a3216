"""``fastv``: FastV, attention ranking inside the language model.

Paper: "An Image is Worth 1/2 Tokens After Layer 2: Plug-and-Play Inference
Acceleration for Large Vision-Language Models", arXiv 2403.06764 (ECCV 2024).

After the first K decoder layers (K=2) ran on the full sequence, FastV keeps the
visual tokens that the prompt's last token attends to most (layer K's attention,
heads averaged) and drops the rest for all later layers. Nothing is rebuilt: this is
the official ranking, with the attention row recomputed by the runtime under SDPA.
"""

from __future__ import annotations

import torch

from ..configs.fastv import FastVConfig
from ..signals import Signals


def select_fastv(signals: Signals, budget: int, config: FastVConfig) -> torch.Tensor:
    attention = signals[f"attn_last@llm:{config.layer}"].float()
    return attention.topk(min(budget, signals.num_tokens), dim=1).indices
