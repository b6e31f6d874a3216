"""``sts``'s config: repulsive structural sampling before the LLM, instruction attention after layer K."""

from __future__ import annotations

from dataclasses import dataclass

from ..checks import choice, integer, optional, real
from ..config import PruneConfig, option, round_half_up
from ..registry import PRE_LLM, Stage, lazy_select

SALIENCY_SOURCES = ("vision", "norm")


@dataclass
class STSConfig(PruneConfig):
    """Repulsive structural sampling before the LLM, instruction attention after layer K."""

    method = "sts"
    paper = "STS: structure-to-semantics, stage-aware pruning (arXiv 2606.03569)"
    summary = "repulsive spatial/feature sampling of 2B tokens before the LLM; instruction attention keeps B after K"
    layer: int = option(2, "K: stage 2 acts after the first K decoder layers ran.", check=integer(1))
    pool_factor: float = option(
        2.0,
        "Stage 1 keeps M1 = min(N, round(pool_factor * B)) tokens for stage 2 to choose from. >= 1.",
        check=real(1.0),
    )
    saliency: str = option(
        "vision",
        "Stage 1's first token: the most salient by 'vision' (vision CLS attention) or "
        "'norm' (largest feature norm of the LLM-input features).",
        check=choice(*SALIENCY_SOURCES),
    )
    w_p: float = option(1.0, "Weight of the spatial repulsion term. >= 0.", check=real(0.0))
    w_f: float = option(1.0, "Weight of the feature repulsion term. >= 0.", check=real(0.0))
    sigma_p: float | None = option(
        None,
        "Spatial range of the repulsion, in grid cells, > 0. None: the grid side / 4 (max of rows, cols).",
        check=optional(real(0.0, low_open=True)),
    )
    sigma_f: float = option(
        0.5, "Feature range of the repulsion (on 1 - cosine). > 0.", check=real(0.0, low_open=True)
    )

    def stages(self, num_layers: int) -> list[Stage]:
        first_needs = {"visual", "vision_saliency"} if self.saliency == "vision" else {"visual"}
        where = f"llm:{self.layer}"
        return [
            Stage(PRE_LLM, lazy_select("sts", "select_structure"), frozenset(first_needs), share=pool_size),
            Stage(where, lazy_select("sts", "select_instruction"), frozenset({f"attn_rows@{where}"})),
        ]


def pool_size(budget: int, n: int, config: STSConfig) -> int:
    """M1: tokens stage 1 passes on to stage 2, of an image of ``n`` tokens and budget B
    (the stage's share: computed per image, then split among its grids like B)."""
    return min(n, max(budget, round_half_up(config.pool_factor * budget)))
