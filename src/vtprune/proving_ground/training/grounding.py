"""Grounding losses: two attention heads learn the two hops of a visual question.

Trained from scratch on answers alone, the language model sits for thousands of steps
at the answer prior before it learns to find the few tokens of a named object among
~600 (the plateau before a retrieval circuit forms): more than a CPU budget allows.
Answering "what colour is the star?" takes two hops, and each gets its own loss:

* look: the anchor word ("star"; both nouns of a relation question; see
  ``QA.anchors``) puts the attention of one head of the second decoder layer on the
  visual tokens of what it names. Not the first layer: "tile" in "the red tile" or
  "circle" in "is there a red circle?" names one object only together with its
  colour word, which the first layer can bring to it;
* read: the token that predicts the answer (the ``:`` of ``ASSISTANT:``) puts the
  attention of one head of the third layer on the first anchor word and of another
  on the last (the same word when there is one), so that a relation question sees
  its two objects apart.

Supervising only the first hop is not enough: measured on this task, the anchor
words find their objects within a hundred steps, yet the answer stays at its prior
for over a thousand more; with both hops supervised the answers follow within a few
hundred. Questions about an absence or the whole image have no anchors. The other
heads, and what the model does with what these two heads find, stay free.

The attention row is recomputed from the layer's own q / k projections (its input is
captured by a hook), so the model keeps SDPA attention.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from transformers.models.llama.modeling_llama import rotate_half

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
    hidden, (cos, sin) = seen["hidden"], seen["rotary"]
    dim = attention.head_dim
    kv_head = head // (attention.config.num_attention_heads // attention.config.num_key_value_heads)
    q_weight = attention.q_proj.weight[head * dim:(head + 1) * dim]
    k_weight = attention.k_proj.weight[kv_head * dim:(kv_head + 1) * dim]
    q = hidden[rows, cols] @ q_weight.T  # (n, dim)
    k = hidden[rows] @ k_weight.T  # (n, L, dim): all keys of each query's sequence
    if attention.q_proj.bias is not None:
        q = q + attention.q_proj.bias[head * dim:(head + 1) * dim]
        k = k + attention.k_proj.bias[kv_head * dim:(kv_head + 1) * dim]
    q = q * cos[rows, cols] + rotate_half(q) * sin[rows, cols]  # RoPE, as the layer applies it
    k = k * cos[rows] + rotate_half(k) * sin[rows]
    logits = torch.einsum("nd,nld->nl", q, k) / math.sqrt(dim)  # (n, L)

    mask = batch.attention_mask
    visible = mask[rows if mask.shape[0] > 1 else torch.zeros_like(rows), 0, cols]  # (n, L)
    log_probs = torch.log_softmax(logits.masked_fill(~visible, float("-inf")), dim=-1)
    s = batch.image_slice if keys is None else keys
    on_focus = log_probs[:, s.start:s.stop].masked_fill(~focus, float("-inf"))
    return -torch.logsumexp(on_focus, dim=-1).mean()
