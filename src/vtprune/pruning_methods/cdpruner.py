"""``cdpruner``: CDPruner, conditional determinantal point process over the visual tokens.

Paper: "Beyond Attention or Similarity: Maximizing Conditional Diversity for Token
Pruning in MLLMs", arXiv 2506.10967 (NeurIPS 2025; official code:
github.com/Theia-4869/CDPruner).

The kept set maximises the determinant of a DPP kernel conditioned on the instruction,
L = diag(r) S diag(r), with S the cosine similarity of the LLM-input features and r
each token's relevance to the instruction: sets that are both diverse and relevant
score high. The MAP set is found greedily by the fast incremental Cholesky algorithm
of Chen et al. (NeurIPS 2018), batched over images: each step adds the token with the
largest remaining conditional gain d_j^2 = L_jj - |c_j|^2 and updates every gain with
one (I, N) operation.

As in the official code: cosine similarity in float32, and optionally sharpened
relevance exp(theta / (2 (1 - theta)) r) for theta < 1 (the official code leaves this
off, i.e. theta = 1). Once the kernel's rank is used up (no token adds determinant)
the remaining slots go to the most relevant tokens (the official code would keep
adding tokens of zero gain in index order).

Relevance, two ways:

* ``relevance="clip"`` (the official LLaVA computation, ``llava_arch.py`` and
  ``clip_encoder.py``; needs ``text_tower``, LLaVA-1.5 only): the patches of the vision
  layer LLaVA reads (``mm_vision_select_layer``, -2) through the tower's post layer
  norm and CLIP's visual projection, cosine with the CLIP text embedding of the
  instruction, *negated* (a CLIP quirk its authors report), then
  ``(r - min + 1e-6) / (max - min)``. Differences: min and max are taken per image (the
  official code takes them over the whole batch, so a batch would select differently
  from its images alone); the instruction is encoded as one CLIP text of at most 77
  tokens (the official code cuts longer texts into 77-token segments, zero-padded, and
  averages the cosine over them).
* ``relevance="llm"`` (where no text tower is given): the cosine of each token's
  LLM-input feature with the mean of the instruction's input embeddings, not negated,
  min-max normalised per image to (0, 1] (scaled by 1 - 1e-6, plus 1e-6).

``relevance="auto"`` (the default) is "clip" when ``text_tower`` is given, else "llm".
Given the same relevance, the kept sets are the official ones.
"""

from __future__ import annotations

import torch

from ..configs.cdpruner import CDPrunerConfig
from ..signals import Signals
from .scoring import cosine_matrix, keep_all, minmax, signal_prompt_relevance

# A conditional gain below this share of the kernel's largest diagonal is float32
# round-off of a zero gain: the kernel's rank is spent and no token adds volume.
_RELATIVE_GAIN_FLOOR = 1e-5


def relevance_weights(relevance: torch.Tensor, theta: float) -> torch.Tensor:
    """(I, N) positive kernel weights r from raw relevance scores."""
    weights = minmax(relevance) * (1.0 - 1e-6) + 1e-6  # in (0, 1]: no token is ruled out
    if theta < 1.0:
        weights = torch.exp(theta / (2.0 * (1.0 - theta)) * weights)
    return weights


def official_clip_weights(cosine: torch.Tensor) -> torch.Tensor:
    """(I, N) the official CLIP relevance: negated cosine, ``(r - min + 1e-6) / (max - min)``
    per image (the official code's min and max are over the batch)."""
    relevance = -cosine.float()
    low = relevance.amin(dim=-1, keepdim=True)
    span = (relevance.amax(dim=-1, keepdim=True) - low).clamp(min=1e-12)
    return (relevance - low + 1e-6) / span


def conditional_kernel(similarity: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """L = diag(r) S diag(r), batched: (I, N, N)."""
    return weights[:, :, None] * similarity * weights[:, None, :]


def greedy_dpp_map(kernel: torch.Tensor, count: int, fallback: torch.Tensor) -> torch.Tensor:
    """Greedy MAP inference (fast incremental Cholesky), batched over images.

    kernel: (I, N, N) positive semi-definite float32. fallback: (I, N) scores ranking
    the tokens to add once no token increases the determinant. Returns (I, count) in the
    order chosen.
    """
    num_images, n, _ = kernel.shape
    image = torch.arange(num_images, device=kernel.device)
    gains = torch.diagonal(kernel, dim1=1, dim2=2).clone()  # d_j^2
    floor = _RELATIVE_GAIN_FLOOR * gains.amax(dim=1).clamp(min=1e-30)
    factors = kernel.new_zeros(count, num_images, n)  # rows c_k of the incremental Cholesky factor
    chosen = torch.zeros(num_images, n, dtype=torch.bool, device=kernel.device)
    picks = []
    for step in range(count):
        gains = gains.masked_fill(chosen, float("-inf"))
        best_gain, token = gains.max(dim=1)
        spent = best_gain <= floor
        token = torch.where(spent, fallback.masked_fill(chosen, float("-inf")).argmax(dim=1), token)
        picks.append(token)
        chosen[image, token] = True
        # e_j = (L[token, j] - <c_token, c_j>) / d_token; an image whose rank is spent adds nothing.
        projection = torch.einsum("ki,kin->in", factors[:step, image, token], factors[:step])
        scale = torch.where(spent, torch.zeros_like(best_gain), best_gain.clamp(min=1e-30).rsqrt())
        update = (kernel[image, token] - projection) * scale[:, None]
        factors[step] = update
        gains = gains - update**2
    return torch.stack(picks, dim=1)


def select_cdpruner(signals: Signals, budget: int, config: CDPrunerConfig) -> torch.Tensor:
    n = signals.num_tokens
    if budget >= n:
        return keep_all(signals)
    if config.relevance_source == "clip":
        weights = official_clip_weights(signals["clip_relevance"])
        if config.theta < 1.0:
            weights = torch.exp(config.theta / (2.0 * (1.0 - config.theta)) * weights)
        fallback = weights
    else:
        fallback = signal_prompt_relevance(signals)
        weights = relevance_weights(fallback, config.theta)
    kernel = conditional_kernel(cosine_matrix(signals.visual), weights)
    return greedy_dpp_map(kernel, budget, fallback)
