"""``sppruner``'s config: subjects, the rings around them, dropped tokens merged in."""

from __future__ import annotations

from dataclasses import dataclass

from ..checks import fraction
from ..config import PruneConfig, option
from ..registry import PRE_LLM, Stage, lazy_select


@dataclass
class SPprunerConfig(PruneConfig):
    """Subjects by saliency and relevance, their grid rings, dropped tokens merged into them."""

    method = "sppruner"
    paper = "SPpruner: focus-then-context subject-centric progressive reduction (arXiv 2605.20950)"
    summary = "subjects by saliency x relevance, their grid rings, dropped tokens merged into the nearest kept"
    lam: float = option(
        0.5, "Weight of vision saliency against prompt relevance in the subject score s. In [0, 1].", check=fraction()
    )
    subject_fraction: float = option(
        0.75,
        "f: share of the budget given to subjects, k1 = round(f * B) (at least 1); the rest "
        "goes to the rings around them. In [0, 1].",
        check=fraction(),
    )

    def stages(self, num_layers: int) -> list[Stage]:
        needs = frozenset({"visual", "vision_saliency", "text_embeds"})
        return [Stage(PRE_LLM, lazy_select("sppruner", "select_sppruner"), needs)]
