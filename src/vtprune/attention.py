"""Attention weights recomputed from queries and keys, as a layer computes them.

Every signal read from attention (FastV's last-token row in the LLM, CLIP's CLS row,
the attention a Qwen ViT patch receives, the proving ground's supervised hops) is
recomputed from a layer's own q/k projections rather than from eager attention, which
SDPA and FlashAttention never materialise. These are the pieces they share: rotate-half
RoPE and the scaled, masked softmax, in float32 so that bf16 models score as fp32 ones.
"""

from __future__ import annotations

import torch


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """The rotate-half companion of RoPE (Llama, Qwen2, Qwen2-VL's ViT)."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE; ``x`` (..., L, d), ``cos``/``sin`` broadcastable to it."""
    return x * cos + rotate_half(x) * sin


def attention_weights(
    query: torch.Tensor,
    keys: torch.Tensor,
    scale: float,
    allowed: torch.Tensor | None = None,
    *,
    log: bool = False,
) -> torch.Tensor:
    """Softmax over keys of ``scale * query @ keys^T``, in float32.

    query:   (..., Q, d); keys: (..., K, d), batch dimensions broadcast
    allowed: optional boolean mask broadcastable to (..., Q, K); False keys get no weight
    log:     return log-probabilities (training losses), else probabilities
    """
    scores = torch.matmul(query.float(), keys.float().transpose(-1, -2)) * scale
    return softmax_over_allowed(scores, allowed, log=log)


def softmax_over_allowed(scores: torch.Tensor, allowed: torch.Tensor | None, *, log: bool = False) -> torch.Tensor:
    """Softmax (or log-softmax) over the last dimension of the keys ``allowed`` allows."""
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.log_softmax(scores, dim=-1) if log else torch.softmax(scores, dim=-1)
