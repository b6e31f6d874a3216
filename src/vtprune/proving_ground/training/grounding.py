"""Grounding loss: one attention head learns to look where the question points.

Trained from scratch on answers alone, the language model sits for thousands of steps
at the answer prior before it learns to find the few tokens of the named object
among ~600 (the classic plateau before a retrieval circuit forms): more than a CPU
budget allows. This loss shortens it. At the position that predicts the answer (the
last ``:``), head ``head`` of decoder layer ``layer`` is asked to put its attention
on the question's evidence (``QA.focus``: the named object, the counted objects, the
two related objects, the tile). Questions whose evidence is an absence or the whole
image (existence "no", counting "zero", global) are not supervised. The other heads,
and this head's use of what it finds, stay free. The weight fades to zero before
training ends.

The attention row is recomputed from the layer's own q / k projections (the input is
captured by a hook), so the model keeps SDPA attention.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from transformers.models.llama.modeling_llama import rotate_half

from .packing import IGNORE, PackedBatch


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


def answer_positions(batch: PackedBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols) of the positions that predict each block's answer, in block order."""
    rows, cols = (batch.labels != IGNORE).nonzero(as_tuple=True)
    return rows[0::2], cols[0::2]  # targets alternate answer, EOS within each block


def focus_attention_loss(
    attention: nn.Module, seen: dict, batch: PackedBatch, focus: torch.Tensor, head: int
) -> torch.Tensor:
    """-log(attention mass on the focus tokens), averaged over supervised questions.

    ``focus``: (questions, 576) bool, the visual tokens of each question's evidence.
    """
    supervised = focus.any(dim=1)
    if not supervised.any():
        return seen["hidden"].new_zeros(())
    rows, cols = answer_positions(batch)
    rows, cols, focus = rows[supervised], cols[supervised], focus[supervised]

    hidden, (cos, sin) = seen["hidden"], seen["rotary"]
    dim = attention.head_dim
    kv_head = head // (attention.config.num_attention_heads // attention.config.num_key_value_heads)
    q_weight = attention.q_proj.weight[head * dim:(head + 1) * dim]
    k_weight = attention.k_proj.weight[kv_head * dim:(kv_head + 1) * dim]
    q = hidden[rows, cols] @ q_weight.T  # (n, dim)
    k = hidden[rows] @ k_weight.T  # (n, L, dim): all keys of each question's sequence
    if attention.q_proj.bias is not None:
        q = q + attention.q_proj.bias[head * dim:(head + 1) * dim]
        k = k + attention.k_proj.bias[kv_head * dim:(kv_head + 1) * dim]
    q = q * cos[rows, cols] + rotate_half(q) * sin[rows, cols]  # RoPE, as the layer applies it
    k = k * cos[rows] + rotate_half(k) * sin[rows]
    logits = torch.einsum("nd,nld->nl", q, k) / math.sqrt(dim)  # (n, L)

    mask = batch.attention_mask
    visible = mask[rows if mask.shape[0] > 1 else torch.zeros_like(rows), 0, cols]  # (n, L)
    log_probs = torch.log_softmax(logits.masked_fill(~visible, float("-inf")), dim=-1)
    s = batch.image_slice
    on_focus = log_probs[:, s.start:s.stop].masked_fill(~focus, float("-inf"))
    return -torch.logsumexp(on_focus, dim=-1).mean()
