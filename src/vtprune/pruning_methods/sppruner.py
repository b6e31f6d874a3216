"""``sppruner``: SPpruner, focus-then-context subject-centric token reduction.

Paper: SPpruner, focus-then-context subject-centric progressive reduction;
arXiv 2605.20950.

A focus step finds the visual subjects from the interplay of visual saliency and
semantic relevance to the prompt (the whole set of subjects, not only the best match);
a context step then keeps the tokens on the rings around the subjects and folds every
dropped token into its nearest kept token, so the kept tokens carry their
neighbourhood's content.

Read from the paper: the focus module (saliency x relevance, all subjects) and the
context-aware structural scan that aggregates neighbouring cues. Rebuilt (the paper
was not available beyond its abstract):

    s_i = lam * minmax(saliency_i) + (1 - lam) * minmax(relevance_i)
          relevance_i = cos(v_i, mean of the prompt's token embeddings)
    subjects: the top k1 = round(f B) tokens by s (at least one)
    rings:    the other B - k1 slots grow the subjects' clusters ring by ring: tokens at
              grid distance 1 from a subject first, then 2, ...; by s within a ring
    merge:    each dropped token j joins its nearest kept token k (grid distance, ties by
              higher feature cosine, then raster order), weighted by w_jk = max(0, cos):
              h_k <- (h_k + sum_j w_jk h_j) / (1 + sum_j w_jk)

Grid distance is the ring (Chebyshev) distance max(|drow|, |dcol|). The weights use
the tokens' own features, so the raster scan of the paper's description only fixes the
order of ties and the result does not depend on it. Defaults lam = 0.5, f = 0.75.
"""

from __future__ import annotations

import torch

from ..configs.sppruner import SPprunerConfig
from ..registry import Selection
from ..signals import Signals
from .scoring import gather_rows, keep_all, minmax, round_half_up, signal_prompt_relevance, unit_rows


def subject_scores(signals: Signals, lam: float) -> torch.Tensor:
    """(I, N) s = lam * minmax(vision saliency) + (1 - lam) * minmax(prompt relevance)."""
    saliency = minmax(signals["vision_saliency"])
    relevance = minmax(signal_prompt_relevance(signals))
    return lam * saliency + (1.0 - lam) * relevance


def ring_distance(coords: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(I, N, 2), (I, k, 2) -> (I, N, k) Chebyshev distance on the grid."""
    return (coords[:, :, None, :] - centres[:, None, :, :]).abs().amax(dim=-1)


def select_subjects_and_rings(coords: torch.Tensor, score: torch.Tensor, budget: int, subjects: int) -> torch.Tensor:
    """(I, budget): the ``subjects`` top-score tokens, then the nearest rings around them."""
    top = score.topk(subjects, dim=1).indices
    distance = ring_distance(coords, gather_rows(coords, top)).amin(dim=-1)  # 0 on subjects
    # Lexicographic (ring, -score): rings are integers and the score lies in [0, 1].
    order_key = 2.0 * distance - score
    return order_key.topk(budget, dim=1, largest=False).indices


def merge_into_nearest(
    coords: torch.Tensor, features: torch.Tensor, keep: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(I, k, D) features of the ``keep`` tokens after each dropped token merged into its
    nearest kept token with weight max(0, cos), and (I, N) the column of ``keep`` each
    token went into (-1: weight 0). Exact ties go to the kept token listed first."""
    num_images, n, _ = features.shape
    image = torch.arange(num_images, device=features.device)
    kept = torch.zeros(num_images, n, dtype=torch.bool, device=features.device)
    kept[image[:, None], keep] = True
    unit = unit_rows(features)
    cosine = unit @ gather_rows(unit, keep).transpose(1, 2)  # (I, N, k)
    distance = ring_distance(coords, gather_rows(coords, keep))
    # Nearest by integer ring distance; cosine (in [-1, 1]) only breaks ties; argmin
    # takes the first listed kept token of any remaining tie.
    owner = (4.0 * distance - cosine).argmin(dim=-1)  # (I, N)
    weight = cosine.gather(-1, owner[..., None]).squeeze(-1).clamp(min=0.0)
    weight = weight.masked_fill(kept, 0.0)  # kept tokens count once, through the 1 + ...
    assignment = torch.zeros(num_images, keep.shape[1], n, device=features.device)
    assignment.scatter_(1, owner[:, None, :], weight[:, None, :])
    merged = gather_rows(features, keep) + assignment @ features
    owner = owner.masked_fill(~kept & (weight == 0), -1)
    return merged / (1.0 + assignment.sum(dim=-1, keepdim=True)), owner


def select_sppruner(signals: Signals, budget: int, config: SPprunerConfig) -> Selection | torch.Tensor:
    n = signals.num_tokens
    if budget >= n:
        return keep_all(signals)
    subjects = min(budget, max(1, round_half_up(config.subject_fraction * budget)))
    coords = signals.coords
    keep = select_subjects_and_rings(coords, subject_scores(signals, config.lam), budget, subjects)
    keep = keep.sort(dim=1).values  # raster order, which breaks the merge's last ties
    visual = signals.visual
    merged, owner = merge_into_nearest(coords, visual.float(), keep)
    return Selection(keep, merged.to(visual.dtype), owner)
