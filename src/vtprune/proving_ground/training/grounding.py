"""Grounding losses: attention heads learn the hops of a visual question.

Trained from scratch on answers alone, the language model sits for thousands of steps
at the answer prior before it learns to find the few tokens of a named object among
~600 (the plateau before a retrieval circuit forms): more than a CPU budget allows.
Answering "is there a red star?" takes three hops, and each gets its own loss, as
does counting:

* bind: the anchor word reads the word before it with one head of the first decoder
  layer, which brings the colour word to its noun ("red" to "star" in "is there a
  red star?"): the noun names one object only together with it;
* look: the anchor word ("star"; both nouns of a relation question; see
  ``QA.anchors``) puts the attention of one head of the second decoder layer on the
  visual tokens of what it names, once the bind hop has given it its colour word;
* read: the token that predicts the answer (the ``:`` of ``ASSISTANT:``) puts the
  attention of one head of the third layer on the first anchor word and of another
  on the last (the same word when there is one), so that a relation question sees
  its two objects apart;
* count: the counted word ("stars" in "how many stars are there?") shares the
  attention of another head of the look layer evenly between ``<s>`` and the middle
  token of each object it counts (``Box.middle_patch``; all on ``<s>`` when there are
  none). Averaging over every token of the objects, as the look head does, says what
  they are but not how many; the share left on ``<s>``, 1 / (count + 1), says how
  many. Without it the model confuses three and four (measured: 13 of 20 fours
  answered "three"). The token is the middle one, not the top-left: trained on the
  top-left token, the head gave a large object's token a logit 2.2 +- 2.9 below
  ``<s>`` (a small object's: 0.1 +- 0.3), since that patch of a large cross, star or
  triangle holds only background, and counts with a large object among them were
  right 65% of the time against 86% without. On the middle token: 0.2 +- 0.9 and
  0.0 +- 0.3 below, and 79% against 92% (200 test questions each time).

Supervising only the look hop is not enough: measured on this task, the anchor
words find their objects within a hundred steps, yet the answer stays at its prior
for over a thousand more; with the read hop supervised too the answers follow within
a few hundred. Questions about an absence or the whole image have no anchors, except for
the counted word of a zero count, which the read hop reads as any other. The other
heads, and what the model does with what the supervised heads find, stay free.

The attention row is recomputed from the layer's own q / k projections (its input is
captured by a hook), so the model keeps SDPA attention.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ...attention import apply_rope, softmax_over_allowed
from .packing import PackedBatch


@contextmanager
def capture_attention_input(attention: nn.Module) -> Iterator[dict]:
    """Record the hidden states and rotary tables that ``attention`` receives."""
    seen: dict = {}

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        seen["hidden"] = args[0] if args else kwargs["hidden_states"]
        seen["rotary"] = kwargs["position_embeddings"]

    handle = attention.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def attention_log_probs(
    attention: nn.Module, seen: dict, batch: PackedBatch, rows: torch.Tensor, cols: torch.Tensor, head: int,
) -> torch.Tensor:
    """(n, L) log attention weights of ``head`` from the query at each (row, col) over
    its sequence, recomputed from the layer's q / k projections and RoPE as the layer
    applies them (masked keys get -inf)."""
    heads = attention.config.num_attention_heads
    if not 0 <= head < heads:
        raise ValueError(f"head must be in 0..{heads - 1} for this layer's {heads} heads; got {head}")
    hidden, (cos, sin) = seen["hidden"], seen["rotary"]
    dim = attention.head_dim
    kv_head = head // (heads // attention.config.num_key_value_heads)
    q_weight = attention.q_proj.weight[head * dim:(head + 1) * dim]
    k_weight = attention.k_proj.weight[kv_head * dim:(kv_head + 1) * dim]
    q = hidden[rows, cols] @ q_weight.T  # (n, dim)
    # Keys once per sequence of the batch (many queries share one), then per query.
    k = hidden @ k_weight.T  # (B, L, dim)
    if attention.q_proj.bias is not None:
        q = q + attention.q_proj.bias[head * dim:(head + 1) * dim]
        k = k + attention.k_proj.bias[kv_head * dim:(kv_head + 1) * dim]
    q, k = apply_rope(q, cos[rows, cols], sin[rows, cols]), apply_rope(k, cos, sin)
    # Every query against every sequence's keys, then its own: a product ~B times larger
    # than needed but far cheaper than gathering (n, L, dim) keys and their gradient.
    logits = torch.einsum("nd,bld->nbl", q, k)[torch.arange(len(rows)), rows] / math.sqrt(dim)  # (n, L)
    mask = batch.attention_mask
    visible = mask[rows if mask.shape[0] > 1 else torch.zeros_like(rows), 0, cols]  # (n, L)
    return softmax_over_allowed(logits, visible, log=True)


def focus_attention_loss(
    attention: nn.Module,
    seen: dict,
    batch: PackedBatch,
    rows: torch.Tensor,
    cols: torch.Tensor,
    focus: torch.Tensor,
    head: int,
    keys: slice | None = None,
) -> torch.Tensor:
    """-log(attention mass on the focus tokens) of the query at each (row, col), averaged.

    ``rows``, ``cols``: (n,) positions of the querying tokens in the batch;
    ``focus``: (n, K) bool, the keys each of them should attend to, among the K keys
    of ``keys`` (default: the visual tokens).
    """
    if rows.numel() == 0:
        return seen["hidden"].new_zeros(())
    s = batch.image_slice if keys is None else keys
    log_probs = attention_log_probs(attention, seen, batch, rows, cols, head)[:, s.start:s.stop]
    return -torch.logsumexp(log_probs.masked_fill(~focus, float("-inf")), dim=-1).mean()


def even_attention_loss(
    attention: nn.Module,
    seen: dict,
    batch: PackedBatch,
    rows: torch.Tensor,
    cols: torch.Tensor,
    targets: torch.Tensor,
    head: int,
) -> torch.Tensor:
    """Cross-entropy of the attention row of the query at each (row, col) against an even
    share over its target keys, averaged: ``targets`` is (n, L) bool over the whole
    sequence. Unlike :func:`focus_attention_loss` it fixes how the mass is shared, which
    is what lets the share left on ``<s>`` say how many targets there are."""
    if rows.numel() == 0:
        return seen["hidden"].new_zeros(())
    log_probs = attention_log_probs(attention, seen, batch, rows, cols, head)
    on_targets = log_probs.masked_fill(~targets, 0.0).sum(-1)
    return -(on_targets / targets.sum(-1)).mean()
