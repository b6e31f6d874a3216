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

import torch

from ..configs.atp import ATPConfig
from ..signals import Signals
from .scoring import minmax


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
