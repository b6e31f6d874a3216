"""``zspaprune``'s config: a prompt-relevant core, then farthest-point diversity."""

from __future__ import annotations

from dataclasses import dataclass

from ..checks import fraction
from ..config import PruneConfig, option
from ..registry import PRE_LLM, Stage, lazy_select


@dataclass
class ZSPAPruneConfig(PruneConfig):
    """A prompt-relevant core, then farthest-point diversity tokens."""

    method = "zspaprune"
    paper = "ZSPAPrune: zero-shot prompt-aware pruning (arXiv 2510.17197, ICLR 2026 submission)"
    summary = "prompt-relevant core by cosine to the prompt, then farthest-point diversity tokens"
    relevance_fraction: float = option(
        0.6,
        "r: share of the budget kept as the prompt-relevant core (at least one token); the rest "
        "is filled by farthest-point diversity. In [0, 1].",
        check=fraction(),
    )

    def stages(self, num_layers: int) -> list[Stage]:
        return [Stage(PRE_LLM, lazy_select("zspaprune", "select_zspaprune"), frozenset({"visual", "text_embeds"}))]
