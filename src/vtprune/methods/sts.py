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

from dataclasses import dataclass

import torch

from ..config import PruneConfig, help_field
from ..registry import PRE_LLM, Stage, register
from ..signals import Signals
from .scoring import cosine_matrix, gather_rows, keep_all, round_half_up
from .validation import require_choice, require_int, require_real

SALIENCY_SOURCES = ("vision", "norm")


@dataclass
class STSConfig(PruneConfig):
    """Repulsive structural sampling before the LLM, instruction attention after layer K."""

    method = "sts"
    layer: int = help_field(2, "K: stage 2 acts after the first K decoder layers ran.")
    pool_factor: float = help_field(
        2.0, "Stage 1 keeps M1 = min(N, round(pool_factor * B)) tokens for stage 2 to choose from. >= 1."
    )
    saliency: str = help_field(
        "vision",
        "Stage 1's first token: the most salient by 'vision' (vision CLS attention) or "
        "'norm' (largest feature norm of the LLM-input features).",
    )
    w_p: float = help_field(1.0, "Weight of the spatial repulsion term. >= 0.")
    w_f: float = help_field(1.0, "Weight of the feature repulsion term. >= 0.")
    sigma_p: float | None = help_field(
        None, "Spatial range of the repulsion, in grid cells, > 0. None: the grid side / 4 (max of rows, cols)."
    )
    sigma_f: float = help_field(0.5, "Feature range of the repulsion (on 1 - cosine). > 0.")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.layer = require_int("layer", self.layer, low=1)
        self.pool_factor = require_real("pool_factor", self.pool_factor, low=1.0)
        self.saliency = require_choice("saliency", self.saliency, SALIENCY_SOURCES)
        self.w_p = require_real("w_p", self.w_p, low=0.0)
        self.w_f = require_real("w_f", self.w_f, low=0.0)
        if self.sigma_p is not None:
            self.sigma_p = require_real("sigma_p", self.sigma_p, low=0.0, low_open=True)
        self.sigma_f = require_real("sigma_f", self.sigma_f, low=0.0, low_open=True)


def pool_size(budget: int, n: int, config: STSConfig) -> int:
    """M1: tokens stage 1 passes on to stage 2, of an image of ``n`` tokens and budget B
    (the stage's share: computed per image, then split among its grids like B)."""
    return min(n, max(budget, round_half_up(config.pool_factor * budget)))


def select_structure(signals: Signals, pool: int, config: STSConfig) -> torch.Tensor:
    """Stage 1: greedy potential-energy minimisation over space and features, down to
    ``pool`` tokens (M1 of these images, see :func:`pool_size`)."""
    n = signals.num_tokens
    size = min(n, pool)
    if size >= n:
        return keep_all(signals)
    visual = signals.visual
    similarity = cosine_matrix(visual)
    saliency = signals["vision_saliency"].float() if config.saliency == "vision" else visual.float().norm(dim=-1)
    coords = signals.coords
    sigma_p = config.sigma_p if config.sigma_p is not None else max(signals.grid) / 4.0

    image = torch.arange(signals.num_images, device=signals.device)
    chosen = torch.zeros(signals.num_images, n, dtype=torch.bool, device=signals.device)
    energy = torch.zeros(signals.num_images, n, device=signals.device)
    token = saliency.argmax(dim=1)
    picks = []
    for step in range(size):
        picks.append(token)
        chosen[image, token] = True
        if step == size - 1:
            break
        where = gather_rows(coords, token[:, None])  # (I, 1, 2)
        distance2 = ((coords - where) ** 2).sum(dim=-1)
        cosine = similarity[image, token]
        spatial = torch.exp(-distance2 / sigma_p**2)
        semantic = torch.exp(-(1.0 - cosine) / config.sigma_f)
        energy += config.w_p * spatial + config.w_f * semantic
        token = energy.masked_fill(chosen, float("inf")).argmin(dim=1)
    return torch.stack(picks, dim=1)


def select_instruction(signals: Signals, budget: int, config: STSConfig) -> torch.Tensor:
    """Stage 2: keep the tokens the instruction attends to most at layer K (mean over its tokens)."""
    rows = signals[f"attn_rows@llm:{config.layer}"].float()
    weights = signals["text_mask"].float()
    score = (rows * weights[..., None]).sum(dim=1) / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
    return score.topk(min(budget, signals.num_tokens), dim=1).indices


def sts_stages(config: STSConfig, num_layers: int) -> list[Stage]:
    first_needs = {"visual", "vision_saliency"} if config.saliency == "vision" else {"visual"}
    where = f"llm:{config.layer}"
    return [
        Stage(PRE_LLM, select_structure, frozenset(first_needs), share=pool_size),
        Stage(where, select_instruction, frozenset({f"attn_rows@{where}"})),
    ]


register(
    STSConfig,
    paper="STS: structure-to-semantics, stage-aware pruning (arXiv 2606.03569)",
    summary="repulsive spatial/feature sampling of 2B tokens before the LLM; instruction attention keeps B after K",
    stages=sts_stages,
)(select_structure)
