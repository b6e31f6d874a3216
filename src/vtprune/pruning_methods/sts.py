"""``sts``: STS, structure-to-semantics stage-aware pruning.

Paper: STS, structure-to-semantics stage-aware pruning; arXiv 2606.03569.

High attention collapses onto semantically similar regions, so attention top-k loses
diversity and context. Stage 1 (before the LLM) samples a pool of M1 = 2B tokens that
repel each other in space and in features; stage 2 (after LLM layer K) keeps the B of
them the instruction attends to most.

Read from the paper: the two stages and their roles. Rebuilt (the paper was not
available beyond its abstract): stage 1 as greedy potential-energy minimisation,

    S = {argmax_i saliency_i}       (vision CLS attention, or the feature norm)
    repeat until |S| = M1:
        U(i) = sum over s in S of  w_p exp(-|g_i - g_s|^2 / sigma_p^2) + w_f exp(-(1 - cos(v_i, v_s)) / sigma_f)
        S += argmin over i not in S of U(i)

with U kept as a running sum (one tensor update per added token), and stage 2 as
r_i = mean over instruction tokens of A_K[t, i], keep the top B. Defaults M1 = 2B,
K = 2, w_p = w_f = 1, sigma_p = grid side / 4, sigma_f = 0.5.
"""

from __future__ import annotations

import torch

from ..configs.sts import STSConfig, pool_size  # noqa: F401 - importable beside the selection code
from ..signals import Signals
from .scoring import cosine_matrix, keep_all


def repulsion(signals: Signals, config: STSConfig) -> torch.Tensor:
    """(I, N, N) the energy term every pair of tokens adds: w_p exp(-|g_i - g_s|^2 / sigma_p^2)
    + w_f exp(-(1 - cos(v_i, v_s)) / sigma_f), row s being what picking s adds to every i."""
    coords = signals.coords
    sigma_p = config.sigma_p if config.sigma_p is not None else max(signals.grid) / 4.0
    distance2 = ((coords[:, :, None, :] - coords[:, None, :, :]) ** 2).sum(dim=-1)
    spatial = torch.exp(-distance2 / sigma_p**2)
    semantic = torch.exp(-(1.0 - cosine_matrix(signals.visual)) / config.sigma_f)
    return config.w_p * spatial + config.w_f * semantic


def select_structure(signals: Signals, pool: int, config: STSConfig) -> torch.Tensor:
    """Stage 1: greedy potential-energy minimisation over space and features, down to
    ``pool`` tokens (M1 of these images, see :func:`pool_size`).

    The pairwise terms are computed once (one (I, N, N) tensor); each step then adds
    the picked token's row to the running energy and takes the argmin of the tokens
    not yet picked (picked ones hold +inf), a few tensor operations per step and no
    host sync."""
    n = signals.num_tokens
    size = min(n, pool)
    if size >= n:
        return keep_all(signals)
    saliency = signals["vision_saliency"].float() if config.saliency == "vision" else signals.visual.float().norm(dim=-1)
    pair = repulsion(signals, config)

    image = torch.arange(signals.num_images, device=signals.device)
    energy = torch.zeros(signals.num_images, n, device=signals.device)
    picks = torch.empty(signals.num_images, size, dtype=torch.long, device=signals.device)
    token = saliency.argmax(dim=1)
    for step in range(size):  # greedy: each pick depends on the previous ones
        picks[:, step] = token
        if step == size - 1:
            break
        energy[image, token] = float("inf")
        energy += pair[image, token]
        token = energy.argmin(dim=1)
    return picks


def select_instruction(signals: Signals, budget: int, config: STSConfig) -> torch.Tensor:
    """Stage 2: keep the tokens the instruction attends to most at layer K (mean over its tokens)."""
    rows = signals[f"attn_rows@llm:{config.layer}"].float()
    weights = signals["text_mask"].float()
    score = (rows * weights[..., None]).sum(dim=1) / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
    return score.topk(min(budget, signals.num_tokens), dim=1).indices
