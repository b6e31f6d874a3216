"""``zspaprune``: ZSPAPrune, zero-shot prompt-aware pruning.

Paper: ZSPAPrune, zero-shot prompt-aware token pruning; arXiv 2510.17197 (ICLR 2026
submission).

Pruning as a balance of task relevance and information diversity: a core of the
tokens most relevant to the prompt, then tokens added by farthest-point steps (each
the token whose largest similarity to the kept set is smallest) to keep the broader
context. No attention is needed, so it works under FlashAttention.

    t = mean of the input embeddings of the prompt's instruction tokens
    s_j = cos(v_j, t);  core = top round(r * B) of s
    while |S| < B:  S += argmin over j not in S of ( max over u in S of cos(v_j, v_u) )

Read from the paper: the core-plus-diversity scheme. Rebuilt: r = 0.6 (the paper tunes
it per dataset). The maximum over the kept set is the farthest-point rule; taking the
minimum is a known bug in ports. The core always holds at least one token so that the
diversity steps have a start: with r = 0 it is the single most relevant token.
"""

from __future__ import annotations

import torch

from ..configs.zspaprune import ZSPAPruneConfig
from ..signals import Signals
from .greedy import farthest_point_fill
from .scoring import cosine_matrix, keep_all, round_half_up, signal_prompt_relevance


def core_size(budget: int, relevance_fraction: float) -> int:
    return min(budget, max(1, round_half_up(relevance_fraction * budget)))


def select_zspaprune(signals: Signals, budget: int, config: ZSPAPruneConfig) -> torch.Tensor:
    n = signals.num_tokens
    if budget >= n:
        return keep_all(signals)
    relevance = signal_prompt_relevance(signals)
    core = relevance.topk(core_size(budget, config.relevance_fraction), dim=1).indices
    return farthest_point_fill(cosine_matrix(signals.visual), core, budget)
