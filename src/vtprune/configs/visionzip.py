"""``visionzip``'s config: dominant tokens plus merged contextual tokens."""

from __future__ import annotations

from dataclasses import dataclass

from ..checks import choice, fraction
from ..config import PruneConfig, option
from ..registry import PRE_LLM, Stage, lazy_select

MERGE_MODES = ("official", "mean")


@dataclass
class VisionZipConfig(PruneConfig):
    """Dominant tokens by vision CLS attention, the rest merged into contextual tokens."""

    method = "visionzip"
    paper = "VisionZip: Longer is Better but Not Necessary (arXiv 2412.04467, CVPR 2025)"
    summary = "dominant tokens by vision CLS attention plus contextual tokens merged by key similarity"
    contextual_ratio: float = option(
        10 / 64,
        "Share of the budget given to merged contextual tokens: contextual = round(B * ratio) "
        "(the paper's 10 of 64, 20 of 128, 30 of 192). In [0, 1].",
        check=fraction(),
    )

    merge: str = option(
        "official",
        "Contextual token features: 'official' (target + mean of the tokens assigned to it, as the "
        "official code) or 'mean' (the mean of the target and its assigned tokens).",
        check=choice(*MERGE_MODES),
    )

    def stages(self, num_layers: int) -> list[Stage]:
        needs = frozenset({"visual", "vision_saliency", "vision_keys"})
        return [Stage(PRE_LLM, lazy_select("visionzip", "select_visionzip"), needs)]
