"""``coast``: COAST, contrastive adaptive semantic token pruning inside the language model.

Paper: COAST, contrastive adaptive semantic token pruning; arXiv 2605.09429.

Shallow attention ranking drops tokens that matter later, so after layer K COAST
keeps *query anchors* (the tokens the last prompt token attends to most) and splits
the rest of the budget by how dispersed the instruction's attention is (its entropy):
tokens close to the anchors but far from the least-attended ones (the head of a
contrastive score) and tokens least like the anchors (the tail, complementary
context). Dispersed attention moves budget from the head to the tail.

Read from the paper: anchors from the LLM's cross-modal attention, the entropy-driven
split, the contrastive routing score. Rebuilt (the equations as numbered by a
third-party port that cites the paper; the paper itself was not available): the exact
formulas below and the defaults rho=0.8, a_min=0.05, a_max=0.15.

    s_last[j] = A_K[last token, j];   s_glo[j] = max over instruction tokens t of A_K[t, j]
    p = s_glo / sum(s_glo);  H = -sum p log p / log N                     (in [0, 1])
    n_anchor = floor(rho B);  anchors = top n_anchor of s_last;  rest = B - n_anchor
    n_tail = floor(rest (a_min + (a_max - a_min) H));  n_head = rest - n_tail
    refs = the K_R lowest s_glo tokens, K_R = max(1, min(N // 10, N - n_anchor - B))
    score(c) = max_a cos(h_c, h_a) - mean_r cos(h_c, h_r)                 (layer-K hidden states)
    keep = anchors + top n_head of score + bottom n_tail of score          (among non-anchors)
"""

from __future__ import annotations

import math

import torch

from ..configs.coast import COASTConfig
from ..signals import Signals
from .scoring import floor_count, gather_rows, keep_all, unit_rows


def normalised_entropy(scores: torch.Tensor) -> torch.Tensor:
    """(I, N) non-negative scores -> (I,) entropy of scores / sum, divided by log N (in [0, 1])."""
    n = scores.shape[-1]
    if n < 2:
        return scores.new_zeros(scores.shape[0])
    total = scores.sum(dim=-1, keepdim=True)
    uniform = torch.full_like(scores, 1.0 / n)
    p = torch.where(total > 0, scores / total.clamp(min=1e-30), uniform)
    return (-torch.xlogy(p, p).sum(dim=-1) / math.log(n)).clamp(0.0, 1.0)


def tail_counts(rest: int, entropy: torch.Tensor, config: COASTConfig) -> torch.Tensor:
    """(I,) tokens of the non-anchor budget ``rest`` that go to the tail of the score."""
    # float64 where the device has it (MPS does not); the tolerance keeps round-off in
    # the share from flooring an exact count such as 5.0 to 4.
    precise = entropy.device.type != "mps"
    share = config.a_min + (config.a_max - config.a_min) * entropy.to(torch.float64 if precise else torch.float32)
    return torch.floor(rest * share + (1e-9 if precise else 1e-4)).long().clamp(0, rest)


def reference_count(n: int, n_anchor: int, budget: int) -> int:
    """K_R: how many of the least-attended tokens serve as the contrast references."""
    return max(1, min(n // 10, n - n_anchor - budget))


def contrast_scores(hidden: torch.Tensor, anchors: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
    """(I, N) max cosine to the anchors minus mean cosine to the references (Eq. 8-10)."""
    unit = unit_rows(hidden)
    to_refs = (unit @ gather_rows(unit, refs).transpose(1, 2)).mean(dim=-1)
    if anchors.shape[1] == 0:
        return -to_refs
    to_anchors = (unit @ gather_rows(unit, anchors).transpose(1, 2)).amax(dim=-1)
    return to_anchors - to_refs


def select_coast(signals: Signals, budget: int, config: COASTConfig) -> torch.Tensor:
    n = signals.num_tokens
    budget = min(budget, n)
    if budget >= n:
        return keep_all(signals)
    where = f"llm:{config.layer}"
    last = signals[f"attn_last@{where}"].float()
    rows = signals[f"attn_rows@{where}"].float()
    text_mask = signals["text_mask"]
    s_glo = rows.masked_fill(~text_mask[..., None], float("-inf")).amax(dim=1)
    s_glo = torch.where(text_mask.any(dim=1, keepdim=True), s_glo, last)  # no instruction rows: use the last token

    n_anchor = floor_count(config.rho * budget)
    rest = budget - n_anchor
    n_tail = tail_counts(rest, normalised_entropy(s_glo), config)
    n_head = rest - n_tail

    anchors = last.topk(n_anchor, dim=1).indices
    refs = s_glo.topk(reference_count(n, n_anchor, budget), dim=1, largest=False).indices
    score = contrast_scores(signals[f"hidden@{where}"], anchors, refs)

    # Anchors sort first (+inf), then the other tokens by descending score: the head is
    # the first n_head of those, the tail their last n_tail. One gather serves every
    # image although each has its own split.
    image = torch.arange(signals.num_images, device=signals.device)
    is_anchor = torch.zeros(signals.num_images, n, dtype=torch.bool, device=signals.device)
    is_anchor[image[:, None], anchors] = True
    order = score.masked_fill(is_anchor, float("inf")).argsort(dim=1, descending=True, stable=True)
    slot = torch.arange(rest, device=signals.device)[None, :]
    others = n - n_anchor
    position = torch.where(slot < n_head[:, None], slot, others - rest + slot) + n_anchor
    return torch.cat((anchors, order.gather(1, position)), dim=1)
