"""Attention probabilities of chosen query rows, recomputed without eager attention.

Methods such as FastV rank visual tokens by the attention some text tokens pay them
in layer K. With SDPA or FlashAttention those probabilities are never materialised,
and switching the whole model to eager attention costs memory and speed. Instead the
rows that are needed are recomputed from what layer K itself used: its input hidden
states, its own q/k projections (the keys are captured from the layer's ``k_proj``
as it runs, so only the few query rows are projected again), RoPE with the layer's
cos/sin, grouped-query heads and the causal and padding masks. The result matches
``output_attentions=True`` of an eager model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..attention import apply_rope, attention_weights
from .token_view import LayerCapture


@dataclass(frozen=True)
class AttentionParts:
    """The pieces of a decoder layer that attention scores depend on."""

    norm: nn.Module  # the layer's input norm, applied before q/k/v
    q_proj: nn.Module
    num_heads: int
    num_kv_heads: int
    head_dim: int
    scaling: float
    k_proj: nn.Module | None = None  # needed only to project keys afresh (``keys_for``)


def rotated_keys(
    keys: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], num_kv_heads: int, head_dim: int
) -> torch.Tensor:
    """(B, L, H_kv * d) keys before RoPE -> the same after RoPE, as the layer's attention
    rotates them (float32, heads still concatenated)."""
    cos, sin = rope
    batch, length = keys.shape[:2]
    k = keys.view(batch, length, num_kv_heads, head_dim).float()
    k = apply_rope(k, cos.float()[:, :, None], sin.float()[:, :, None])
    return k.reshape(batch, length, num_kv_heads * head_dim)


def keys_for(parts: AttentionParts, hidden: torch.Tensor) -> torch.Tensor:
    """(B, L, H_kv * d) pre-RoPE keys a layer would compute from ``hidden`` (its input norm
    and ``k_proj``), for scoring with a layer that has not run yet."""
    if parts.k_proj is None:
        raise RuntimeError("these attention parts carry no k_proj")
    return parts.k_proj(parts.norm(hidden))


def rope_keys(
    parts: AttentionParts, keys: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], samples: torch.Tensor
) -> torch.Tensor:
    """(B, L, H_kv * d) pre-RoPE keys -> (I, H_kv, L, d) float32 keys of the batch rows
    ``samples`` after RoPE, as :func:`attention_rows` scores against them (computed once
    per image group and stage, and shared by every set of query rows scored there)."""
    cos, sin = rope
    num_images, length = samples.shape[0], keys.shape[1]
    k = keys[samples].view(num_images, length, parts.num_kv_heads, parts.head_dim)
    k = k.permute(0, 2, 1, 3).float()  # (I, H_kv, L, d)
    return apply_rope(k, cos[samples].float()[:, None], sin[samples].float()[:, None])


def _rotated_queries(
    parts: AttentionParts, hidden: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], samples: torch.Tensor,
    queries: torch.Tensor,
) -> torch.Tensor:
    """(I, H_kv, G, Q, d) float32 queries of the requested rows after RoPE: only those rows
    are projected, with the layer's own norm and q_proj."""
    cos, sin = rope
    (num_images, num_queries), groups = queries.shape, parts.num_heads // parts.num_kv_heads
    rows = hidden[samples[:, None], queries]  # (I, Q, D)
    q = parts.q_proj(parts.norm(rows)).view(num_images, num_queries, parts.num_kv_heads, groups, parts.head_dim)
    q = q.permute(0, 2, 3, 1, 4).float()
    q_cos = cos[samples[:, None], queries].float()[:, None, None]
    q_sin = sin[samples[:, None], queries].float()[:, None, None]
    return apply_rope(q, q_cos, q_sin)


def attention_rows(
    parts: AttentionParts,
    capture: LayerCapture,
    rope: tuple[torch.Tensor, torch.Tensor],
    samples: torch.Tensor,
    queries: torch.Tensor,
    key_mask: torch.Tensor | None,
    *,
    hidden: torch.Tensor | None = None,
    keys: torch.Tensor | None = None,
    rotated: torch.Tensor | None = None,
) -> torch.Tensor:
    """Head-averaged attention probabilities of the given query rows over all keys.

    rope:     the layer's (cos, sin), each (B, L, head_dim), as its attention applies them
    samples:  (I,) batch row of each requested set of rows
    queries:  (I, Q) sequence positions of the query tokens in that row
    key_mask: (B, L) real tokens (``None``: all real)
    hidden, keys: the (B, L, D) states the queries come from and their (B, L, H_kv * d)
              pre-RoPE keys (default: the captured layer's input and ``k_proj`` output);
              given to score with another layer's projections (PDrop: the next layer's).
    rotated:  those keys already through :func:`rope_keys` for ``samples`` (reused
              between the query sets of one group; default: rotated here)
    returns:  (I, Q, L) float32; row q of image i sums to 1 over the keys it may see
    """
    hidden = capture.hidden_in if hidden is None else hidden
    keys = capture.keys if keys is None else keys
    cos, sin = rope
    if cos.dim() != 3:
        raise RuntimeError(f"expected (batch, tokens, head_dim) RoPE tables, got {tuple(cos.shape)}")
    length = hidden.shape[1]
    q = _rotated_queries(parts, hidden, rope, samples, queries)  # (I, H_kv, G, Q, d)

    # Keys: the layer's own k_proj output, rotated like the layer rotates them.
    k = rope_keys(parts, keys, rope, samples) if rotated is None else rotated  # (I, H_kv, L, d)

    # Grouped-query attention without repeating the keys: each kv head serves G heads.
    allowed = torch.arange(length, device=queries.device)[None, None, :] <= queries[:, :, None]  # causal
    if key_mask is not None:
        allowed = allowed & key_mask[samples][:, None, :].bool()
    probs = attention_weights(q, k[:, :, None], parts.scaling, allowed[:, None, None])  # (I, H_kv, G, Q, L)
    return probs.mean(dim=(1, 2))  # average over all H = H_kv * G heads
