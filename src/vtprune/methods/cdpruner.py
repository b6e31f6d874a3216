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

As in the official code: cosine similarity in float32, relevance min-max normalised
per image to (0, 1] (the official code adds 1e-6 so no token's relevance is exactly
0), and optionally sharpened as exp(theta / (2 (1 - theta)) r) for theta < 1 (the
official code leaves this off, i.e. theta = 1). Differences: the official LLaVA code
takes r from the CLIP image and text embeddings and negates it (a CLIP quirk its
authors report); here r is the cosine of each token's LLM-input feature with the mean
of the instruction's input embeddings, with no negation. Once the kernel's rank is
used up (no token adds determinant) the remaining slots go to the most relevant tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import PruneConfig, help_field
from ..registry import register
from ..signals import Signals
from .scoring import cosine_matrix, keep_all, minmax, signal_prompt_relevance
from .validation import require_real

# A conditional gain below this share of the kernel's largest diagonal is float32
# round-off of a zero gain: the kernel's rank is spent and no token adds volume.
_RELATIVE_GAIN_FLOOR = 1e-5


@dataclass
class CDPrunerConfig(PruneConfig):
    """Greedy MAP of a DPP whose kernel weighs feature similarity by instruction relevance."""

    method = "cdpruner"
    theta: float = help_field(
        1.0,
        "Relevance trade-off in (0, 1]: 1 uses the normalised relevance r as is (the official code); "
        "theta < 1 uses exp(theta / (2 (1 - theta)) * r), which weighs relevance more as theta grows.",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.theta = require_real("theta", self.theta, low=0.0, high=1.0, low_open=True)


def relevance_weights(relevance: torch.Tensor, theta: float) -> torch.Tensor:
    """(I, N) positive kernel weights r from raw relevance scores."""
    weights = minmax(relevance) * (1.0 - 1e-6) + 1e-6  # in (0, 1]: no token is ruled out
    if theta < 1.0:
        weights = torch.exp(theta / (2.0 * (1.0 - theta)) * weights)
    return weights


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


@register(
    CDPrunerConfig,
    paper="CDPruner: Maximizing Conditional Diversity for Token Pruning (arXiv 2506.10967, NeurIPS 2025)",
    summary="greedy MAP of a DPP with kernel diag(r) S diag(r): feature similarity weighted by instruction relevance",
    needs=frozenset({"visual", "text_embeds"}),
)
def select_cdpruner(signals: Signals, budget: int, config: CDPrunerConfig) -> torch.Tensor:
    n = signals.num_tokens
    if budget >= n:
        return keep_all(signals)
    relevance = signal_prompt_relevance(signals)
    kernel = conditional_kernel(cosine_matrix(signals.visual), relevance_weights(relevance, config.theta))
    return greedy_dpp_map(kernel, budget, relevance)
