"""``visionzip``: VisionZip, dominant tokens plus merged contextual tokens.

Paper: "VisionZip: Longer is Better but Not Necessary in Vision Language Models",
arXiv 2412.04467 (CVPR 2025; official code: github.com/dvlab-research/VisionZip).

VisionZip keeps the *dominant* tokens, those the vision CLS token attends to most in
the vision layer the LLM reads, and folds the rest into a few *contextual* tokens:
uniformly strided targets among the remaining tokens, each absorbing the remaining
tokens whose attention keys are most similar to it. The split is 54 + 10 tokens at
64, 108 + 20 at 128 and 162 + 30 at 192, i.e. contextual = round(B * 10 / 64).

As in the official code (``visionzip/clip_encoder.py``): dominant by CLS attention
(heads summed or averaged rank the same), targets every ``(N - dominant) //
contextual``-th remaining token in raster order, assignment by the cosine of the keys,
and each contextual token is ``target + mean(assigned)`` (the target itself when
nothing is assigned to it: the official ``counts.clamp(min=1)``). ``merge="mean"``
takes the plain group mean ``(target + sum(assigned)) / (1 + n)`` instead, which keeps
the contextual token on the scale of the others. Kept sets are the same in both.
Differences: the official LLaVA code counts the CLS token among the dominant tokens
(the LLM then sees it); a stage here keeps image tokens only, so all dominant slots go
to patches. The official code merges vision features before the projector; here the
merged features are means of the projected features (``visual``), which the runtime
writes in place of each target's own. Keys are the vision layer's keys averaged over
heads (``vision_keys``), the official merge metric.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..configs.visionzip import VisionZipConfig
from ..registry import Selection
from ..signals import Signals
from .scoring import gather_rows, keep_all, round_half_up, unit_rows


def dominant_and_contextual(budget: int, contextual_ratio: float) -> tuple[int, int]:
    """(dominant, contextual) token counts of a budget."""
    contextual = min(budget, round_half_up(budget * contextual_ratio))
    return budget - contextual, contextual


def merge_contextual(
    remaining: torch.Tensor, keys: torch.Tensor, features: torch.Tensor, contextual: int, merge: str = "official"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fold the ``remaining`` tokens (I, R), in raster order, into ``contextual`` targets.

    Returns the targets' indices (I, C), their merged features (I, C, D) (``"official"``:
    the target plus the mean of the remaining tokens whose keys are closest to it;
    ``"mean"``: the mean of the target and those tokens), and for each remaining token
    the target (0..C-1) it went into (I, R).
    """
    count = remaining.shape[1]
    step = max(1, count // contextual)
    target_slots = torch.arange(0, count, step, device=remaining.device)[:contextual]
    is_target = torch.zeros(count, dtype=torch.bool, device=remaining.device)
    is_target[target_slots] = True
    targets = remaining[:, target_slots]
    others = remaining[:, ~is_target]

    unit = unit_rows(keys)
    similarity = gather_rows(unit, others) @ gather_rows(unit, targets).transpose(1, 2)  # (I, R - C, C)
    chosen = similarity.argmax(dim=-1)  # (I, R - C)
    assignment = F.one_hot(chosen, contextual).float()
    assigned = assignment.transpose(1, 2) @ gather_rows(features, others)  # (I, C, D) sums
    counts = assignment.sum(dim=1)[..., None]  # (I, C, 1)
    target_features = gather_rows(features, targets)
    if merge == "official":
        merged = target_features + assigned / counts.clamp(min=1.0)
    else:
        merged = (target_features + assigned) / (1.0 + counts)
    owner = torch.empty(remaining.shape, dtype=torch.long, device=remaining.device)
    owner[:, target_slots] = torch.arange(contextual, device=remaining.device)
    owner[:, ~is_target] = chosen
    return targets, merged, owner


def select_visionzip(signals: Signals, budget: int, config: VisionZipConfig) -> Selection | torch.Tensor:
    n = signals.num_tokens
    budget = min(budget, n)
    if budget >= n:
        return keep_all(signals)
    dominant_count, contextual = dominant_and_contextual(budget, config.contextual_ratio)
    dominant = signals["vision_saliency"].float().topk(dominant_count, dim=1).indices
    if contextual == 0:
        return dominant
    # The remaining tokens in raster order: a stable sort puts the non-dominant first.
    is_dominant = torch.zeros(signals.num_images, n, dtype=torch.bool, device=signals.device)
    is_dominant[torch.arange(signals.num_images, device=signals.device)[:, None], dominant] = True
    remaining = is_dominant.to(torch.uint8).argsort(dim=1, stable=True)[:, : n - dominant_count]

    visual = signals.visual
    features = visual.float()
    targets, merged, owner_of_remaining = merge_contextual(
        remaining, signals["vision_keys"], features, contextual, config.merge
    )
    keep = torch.cat((dominant, targets), dim=1)
    kept_features = torch.cat((gather_rows(features, dominant), merged), dim=1)
    # Which column of ``keep`` each token went into: dominant tokens their own column,
    # the remaining ones their contextual target's.
    image = torch.arange(signals.num_images, device=signals.device)[:, None]
    owner = torch.empty(signals.num_images, n, dtype=torch.long, device=signals.device)
    owner[image, dominant] = torch.arange(dominant_count, device=signals.device)
    owner[image, remaining] = dominant_count + owner_of_remaining
    return Selection(keep, kept_features.to(visual.dtype), owner)
