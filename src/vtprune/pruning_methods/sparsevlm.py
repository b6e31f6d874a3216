"""``sparsevlm``: SparseVLM, text-guided progressive pruning with token recycling.

Paper: "SparseVLM: Visual Token Sparsification for Efficient Vision-Language Model
Inference", arXiv 2410.04417 (ICML 2025; official code: github.com/Gumpest/SparseVLMs,
``llava/model/language_model/modelling_sparse_llama.py`` and ``score.py``, version 1.0).

1. *Raters*, once, at the language model's input: the instruction tokens (the text
   after the image) whose relevance to the image is above the mean, relevance being
   ``softmax_over_text(V T^T)`` averaged over the image's tokens (V the image's input
   features, T the instruction's input embeddings; signals ``entry_visual`` and
   ``text_embeds``).
2. At each pruning layer (the official layers 2, 6 and 15, 0-based, of 32: the layer
   runs on all tokens and its output is pruned, so here stages ``llm:3``, ``llm:7`` and
   ``llm:16``), each visual token is scored by the attention the raters pay it in that
   layer (heads averaged, then raters averaged; ``attn_rows``, recomputed under SDPA),
   and the top ``count`` go on (at most all but one, as the official ``min(count, v - 1)``).
3. *Recycling*: of the tokens pruned at that layer, the top 30% by score
   (``int(0.3 * pruned) + 1``) are clustered by density peaks (DPC-kNN on the layer's
   output hidden states, ``k = clusters``) into ``int(recycled / 10) + 1`` clusters, and
   each cluster's mean goes on as one more token.

The per-layer counts are the official ones (``score.py``, for 576 tokens): keep 64 ->
66, 30, 17; 96 -> 238, 48, 26; 128 -> 303, 110, 36; 192 -> 300, 200, 110, each plus
its recycled clusters (so 64 ends with 18 tokens, 128 with 39, 192 with 113). As in
PDrop, ``keep`` names the schedule, not the count after the last layer. Rebuilt for
other budgets: the counts as shares of the image's tokens, interpolated linearly
between the official budgets (below 64 of 576 scaled from 64's; above 192 towards
keeping everything at keep 1.0). Layers are given for a 32-layer model and scaled to
the model's depth (a model too shallow for all three keeps the last stages).

As in the official code: positions are renumbered after each drop (the default
``positions="compact"``, on 1-D RoPE models; see ``pdrop``), and each layer's merged
tokens follow the image's kept tokens, in cluster order, so they get the later ids
(the default ``placement="appended"``, through ``Selection.slots``). Measured end to
end on a tiny random LLaVA (4 prompts), the kept sets equal the official ones
(Jaccard 1.0) after all three layers at 64, 128 and 192. ``placement="centre"`` puts
each merged token at its density-peak centre's place instead (the tokens in sequence
order): the same first layer, then 0.46 / 0.51 / 0.69 after the second and 0.27 /
0.21 / 0.43 after the last, at 64 / 128 / 192. Differences:

* the official DPC-kNN adds ``rand * 1e-6`` to the densities to break ties; here ties
  go to the lower index (no randomness).
* the official raters are the text tokens after the image up to the end of the
  sequence of batch row 0; here each image's own instruction, per image (batches
  give each prompt's selection). With no token above the mean (a one-token
  instruction), every instruction token rates.
"""

from __future__ import annotations

import torch

from ..configs.sparsevlm import SparseVLMConfig, scaled_layers  # noqa: F401 - importable beside the selection code
from ..registry import Selection
from ..signals import Signals
from .scoring import gather_rows, keep_all, round_half_up

OFFICIAL_TOKENS = 576
# score.py, version 1.0: tokens kept by score after each pruning layer, per budget.
OFFICIAL_COUNTS = {64: (66, 30, 17), 96: (238, 48, 26), 128: (303, 110, 36), 192: (300, 200, 110)}


def stage_counts(tokens: int, budget: int) -> tuple[int, int, int]:
    """Tokens kept by score after each of the three pruning layers for an image of
    ``tokens`` tokens and budget ``budget`` (the official counts at 64/96/128/192 of 576)."""
    if budget >= tokens:
        return (tokens, tokens, tokens)
    share = budget / tokens
    points = sorted((b / OFFICIAL_TOKENS, tuple(c / OFFICIAL_TOKENS for c in counts)) for b, counts in OFFICIAL_COUNTS.items())
    if share <= points[0][0]:
        shares = tuple(c * share / points[0][0] for c in points[0][1])
    elif share >= points[-1][0]:
        at, counts = points[-1]
        t = (share - at) / (1.0 - at)
        shares = tuple(c + t * (1.0 - c) for c in counts)
    else:
        for (a, low), (b, high) in zip(points, points[1:]):
            if a <= share <= b:
                t = (share - a) / (b - a)
                shares = tuple(x + t * (y - x) for x, y in zip(low, high))
                break
    counts = tuple(max(1, round_half_up(x * tokens)) for x in shares)
    return counts  # type: ignore[return-value]


def recycled_count(pruned: int, recycle: float) -> int:
    """Pruned tokens recycled: the official ``int(0.3 * pruned) + 1`` (none when nothing was pruned)."""
    return 0 if pruned <= 0 or recycle <= 0 else min(pruned, int(recycle * pruned) + 1)


def cluster_count(recycled: int) -> int:
    """Clusters the recycled tokens merge into: the official ``int(recycled / 10) + 1``."""
    return 0 if recycled <= 0 else min(recycled, int(recycled / 10) + 1)


def schedule(tokens: int, budget: int, stages: int, recycle: float = 0.3) -> list[int]:
    """Visual tokens after each of the last ``stages`` pruning layers (kept plus merged)."""
    counts = stage_counts(tokens, budget)[3 - stages :] if stages else ()
    current, out = tokens, []
    for count in counts:
        if current <= 1 or budget >= tokens:
            out.append(current)
            continue
        kept = min(count, current - 1)
        current = kept + cluster_count(recycled_count(current - kept, recycle))
        out.append(current)
    return out


def rater_mask(visual: torch.Tensor, text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(I, T) the instruction tokens whose relevance to the image is above the mean.

    visual (I, N, D) the image's input features; text (I, T, D) the instruction's input
    embeddings, rows past ``mask`` (I, T) padding."""
    logits = visual.float() @ text.float().transpose(1, 2)  # (I, N, T)
    relevance = logits.masked_fill(~mask[:, None, :], float("-inf")).softmax(dim=2).mean(dim=1)  # (I, T)
    mean = (relevance * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1)
    raters = (relevance > mean) & mask
    return torch.where(raters.any(1, keepdim=True), raters, mask)


def density_peak_clusters(x: torch.Tensor, clusters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """DPC-kNN over (I, M, C) tokens into ``clusters`` clusters, as the official
    ``cluster_and_merge`` (without its tie-breaking noise).

    Returns the centres (I, clusters), indices into M, and each token's cluster (I, M)."""
    num_images, m, width = x.shape
    distance = torch.cdist(x.float(), x.float()) / width**0.5  # (I, M, M)
    nearest = distance.topk(clusters, dim=-1, largest=False).values
    density = (-(nearest**2).mean(dim=-1)).exp()  # (I, M)
    higher = density[:, None, :] > density[:, :, None]  # [i, j]: j is denser than i
    largest = distance.flatten(1).max(dim=-1).values[:, None, None]
    parent_distance = torch.where(higher, distance, largest).min(dim=-1).values
    centres = (parent_distance * density).topk(clusters, dim=-1).indices  # (I, clusters)
    to_centres = distance.gather(1, centres[:, :, None].expand(-1, -1, m))  # (I, clusters, M)
    assignment = to_centres.argmin(dim=1)  # (I, M)
    rows = torch.arange(num_images, device=x.device)[:, None]
    assignment[rows, centres] = torch.arange(clusters, device=x.device)[None, :]
    return centres, assignment


def select_sparsevlm_stage(
    signals: Signals, budget: int, config: SparseVLMConfig, *, stage: int, stages: int, layer: int
) -> Selection | torch.Tensor:
    """One pruning layer: keep the top tokens by rater attention, recycle the best of the rest."""
    tokens = signals.grid[0] * signals.grid[1]
    v = signals.num_tokens
    count = stage_counts(tokens, budget)[3 - stages + stage - 1]
    if v <= 1 or budget >= tokens:
        return keep_all(signals)
    kept_count = min(count, v - 1)
    mask = signals["text_mask"].bool()
    raters = rater_mask(signals["entry_visual"], signals["text_embeds"], mask).float()  # (I, T)
    attention = signals[f"attn_rows@llm:{layer}"].float()  # (I, T, v)
    score = (attention * raters[..., None]).sum(1) / raters.sum(1, keepdim=True).clamp(min=1)
    kept = score.topk(kept_count, dim=1).indices.sort(dim=1).values  # in the image's current order
    recycled = recycled_count(v - kept_count, config.recycle)
    clusters = cluster_count(recycled)
    if clusters == 0:
        return kept

    num_images, device = signals.num_images, signals.device
    rows = torch.arange(num_images, device=device)[:, None]
    is_kept = torch.zeros(num_images, v, dtype=torch.bool, device=device)
    is_kept[rows, kept] = True
    pruned = is_kept.to(torch.uint8).argsort(dim=1, stable=True)[:, : v - kept_count]  # ascending order
    best = score.gather(1, pruned).topk(recycled, dim=1).indices
    recycled_index = pruned.gather(1, best)  # (I, R) tokens recycled
    hidden = signals[f"hidden@llm:{layer}"]
    members = gather_rows(hidden.float(), recycled_index)  # (I, R, D)
    centres, assignment = density_peak_clusters(members, clusters)
    one_hot = torch.nn.functional.one_hot(assignment, clusters).float()  # (I, R, clusters)
    merged = (one_hot.transpose(1, 2) @ members) / one_hot.sum(1)[..., None]

    carriers = recycled_index.gather(1, centres)  # (I, clusters) where the merged tokens sit
    keep = torch.cat((kept, carriers), dim=1)
    features = torch.cat((gather_rows(hidden.float(), kept), merged), dim=1).to(hidden.dtype)
    owner = torch.full((num_images, v), -1, dtype=torch.long, device=device)
    owner[rows, kept] = torch.arange(kept_count, device=device)[None, :]
    owner[rows.expand_as(recycled_index), recycled_index] = kept_count + assignment
    # "appended": the kept tokens in their order, then the merged ones in cluster order.
    slots = torch.arange(keep.shape[1], device=device).expand_as(keep) if config.placement == "appended" else None
    return Selection(keep, features, owner, slots)
