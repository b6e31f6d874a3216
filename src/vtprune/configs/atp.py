"""``atp``'s config: a mix of vision saliency and prompt relevance, top B kept."""

from __future__ import annotations

from dataclasses import dataclass

from ..checks import fraction, model_reference
from ..config import PruneConfig, option
from ..registry import PRE_LLM, Stage, lazy_select


@dataclass
class ATPConfig(PruneConfig):
    """Keep the top tokens by a mix of vision saliency and prompt relevance."""

    method = "atp"
    paper = "ATP: adaptive token pruning (arXiv 2512.12701, workshop paper)"
    summary = "top tokens by alpha * text relevance + (1 - alpha) * vision CLS saliency, min-max normalised"
    alpha: float = option(
        0.5,
        "Weight of text relevance (S_inter) against vision saliency (S_intra); 1 = relevance only. In [0, 1].",
        check=fraction(),
    )
    text_tower: str | None = option(
        None,
        "Hugging Face id or local path of the CLIPTextModelWithProjection matching the vision tower "
        "(LLaVA-1.5: openai/clip-vit-large-patch14-336) for relevance in CLIP space. None: relevance "
        "from the LLM's input embeddings of the prompt.",
        check=model_reference(),
    )

    def stages(self, num_layers: int) -> list[Stage]:
        # Only the scores with a non-zero weight are computed: alpha = 0 loads no text tower.
        needs = set()
        if self.alpha > 0:
            needs.add("text_relevance")
        if self.alpha < 1:
            needs.add("vision_saliency")
        return [Stage(PRE_LLM, lazy_select("atp", "select_atp"), frozenset(needs))]
