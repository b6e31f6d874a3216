"""``atp``: ATP, adaptive token pruning by a hybrid of saliency and text relevance.

Paper: ATP, adaptive token pruning; arXiv 2512.12701 (workshop paper).

A gate between the vision encoder and the projector scores each patch by a mix of
its intra-modal saliency (CLS attention of the vision layer the LLM reads) and its
inter-modal relevance to the prompt (cosine with the CLIP text embedding of the
prompt), and keeps the top B:

    S(i) = alpha * minmax(S_inter)(i) + (1 - alpha) * minmax(S_intra)(i)

Read from the paper: the two scores and the gate. Rebuilt: alpha = 0.5 and min-max
normalisation. The runtime computes S_inter (``text_relevance``) in CLIP space when
``text_tower`` names a CLIP text model, and otherwise from the LLM's input embeddings
of the prompt (with a warning); for encoders without a CLS token S_intra is the mean
attention a patch receives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import PruneConfig, help_field
from ..registry import PRE_LLM, Stage, register
from ..signals import Signals
from .scoring import minmax
from .validation import require_fraction


@dataclass
class ATPConfig(PruneConfig):
    """Keep the top tokens by a mix of vision saliency and prompt relevance."""

    method = "atp"
    alpha: float = help_field(
        0.5, "Weight of text relevance (S_inter) against vision saliency (S_intra); 1 = relevance only. In [0, 1]."
    )
    text_tower: str | None = help_field(
        None,
        "Hugging Face id or local path of the CLIPTextModelWithProjection matching the vision tower "
        "(LLaVA-1.5: openai/clip-vit-large-patch14-336) for relevance in CLIP space. None: relevance "
        "from the LLM's input embeddings of the prompt.",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.alpha = require_fraction("alpha", self.alpha)
        if self.text_tower is not None and (not isinstance(self.text_tower, str) or not self.text_tower.strip()):
            raise TypeError(f"text_tower must be None or a non-empty model id or path; got {self.text_tower!r}")


def hybrid_scores(signals: Signals, alpha: float) -> torch.Tensor:
    """(I, N) alpha * minmax(text relevance) + (1 - alpha) * minmax(vision saliency)."""
    score = None
    if alpha > 0:
        score = alpha * minmax(signals["text_relevance"])
    if alpha < 1:
        intra = (1.0 - alpha) * minmax(signals["vision_saliency"])
        score = intra if score is None else score + intra
    return score


def select_atp(signals: Signals, budget: int, config: ATPConfig) -> torch.Tensor:
    return hybrid_scores(signals, config.alpha).topk(min(budget, signals.num_tokens), dim=1).indices


def atp_stages(config: ATPConfig, num_layers: int) -> list[Stage]:
    # Only the scores with a non-zero weight are computed: alpha = 0 loads no text tower.
    needs = set()
    if config.alpha > 0:
        needs.add("text_relevance")
    if config.alpha < 1:
        needs.add("vision_saliency")
    return [Stage(PRE_LLM, select_atp, frozenset(needs))]


register(
    ATPConfig,
    paper="ATP: adaptive token pruning (arXiv 2512.12701, workshop paper)",
    summary="top tokens by alpha * text relevance + (1 - alpha) * vision CLS saliency, min-max normalised",
    stages=atp_stages,
)(select_atp)
