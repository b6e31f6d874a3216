"""The attention rows of a decoder layer: scoring against keys rotated once per group
gives the same rows as rotating them for each query set, and both are the softmax of
the layer's scaled scores; instruction embeddings are gathered from the LLM input."""

import math

import torch
from torch import nn

from vtprune.attention import apply_rope
from vtprune.runtime.attention_rows import AttentionParts, attention_rows, rope_keys
from vtprune.runtime.compaction import plan_compaction
from vtprune.runtime.layout import ImageLayout
from vtprune.runtime.token_view import LayerCapture, TokenView

HEADS, KV_HEADS, HEAD_DIM, WIDTH, LENGTH = 4, 2, 8, 16, 11


def layer_parts(seed: int = 0) -> tuple[AttentionParts, LayerCapture, tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    q_proj = nn.Linear(WIDTH, HEADS * HEAD_DIM, bias=False)
    k_proj = nn.Linear(WIDTH, KV_HEADS * HEAD_DIM, bias=False)
    with torch.no_grad():
        q_proj.weight.copy_(torch.randn(q_proj.weight.shape, generator=gen))
        k_proj.weight.copy_(torch.randn(k_proj.weight.shape, generator=gen))
    parts = AttentionParts(nn.Identity(), q_proj, HEADS, KV_HEADS, HEAD_DIM, HEAD_DIM**-0.5, k_proj)
    hidden = torch.randn(2, LENGTH, WIDTH, generator=gen)
    angle = torch.arange(LENGTH)[None, :, None] * 0.3 ** torch.arange(HEAD_DIM // 2).repeat(2)[None, None, :]
    rope = (angle.cos().expand(2, -1, -1), angle.sin().expand(2, -1, -1))
    capture = LayerCapture(1, nn.Identity(), hidden, rope, keys=k_proj(hidden))
    return parts, capture, rope


def eager_row(parts, capture, rope, sample: int, query: int, mask: torch.Tensor) -> torch.Tensor:
    """One query row, heads averaged, written out head by head."""
    cos, sin = rope[0][sample], rope[1][sample]
    q = parts.q_proj(capture.hidden_in[sample, query]).view(HEADS, HEAD_DIM)
    k = capture.keys[sample].view(LENGTH, KV_HEADS, HEAD_DIM)
    rows = []
    for head in range(HEADS):
        qh = apply_rope(q[head], cos[query], sin[query])
        kh = apply_rope(k[:, head // (HEADS // KV_HEADS)], cos, sin)
        scores = (kh @ qh) / math.sqrt(HEAD_DIM)
        allowed = (torch.arange(LENGTH) <= query) & mask[sample].bool()
        rows.append(scores.masked_fill(~allowed, float("-inf")).softmax(-1))
    return torch.stack(rows).mean(0)


def test_rows_against_keys_rotated_once_equal_rows_rotated_each_time() -> None:
    parts, capture, rope = layer_parts()
    mask = torch.ones(2, LENGTH, dtype=torch.long)
    mask[1, :2] = 0  # left padding in the second row
    samples = torch.tensor([1, 0])
    instruction = torch.tensor([[7, 8, 9], [6, 8, 10]])
    last = torch.tensor([[10], [10]])
    rotated = rope_keys(parts, capture.keys, rope, samples)
    for queries in (instruction, last):
        shared = attention_rows(parts, capture, rope, samples, queries, mask, rotated=rotated)
        alone = attention_rows(parts, capture, rope, samples, queries, mask)
        assert torch.equal(shared, alone)
        for i, sample in enumerate(samples.tolist()):
            for j, query in enumerate(queries[i].tolist()):
                torch.testing.assert_close(shared[i, j], eager_row(parts, capture, rope, sample, query, mask))
    assert shared[0, 0, :2].sum() == 0  # padding gets no attention


def test_embeds_at_a_layer_are_the_input_rows_of_the_kept_tokens() -> None:
    gen = torch.Generator().manual_seed(3)
    embeds = torch.randn(2, 9, 5, generator=gen)
    token_mask = torch.zeros(2, 9, dtype=torch.bool)
    token_mask[:, 2:6] = True
    layout = ImageLayout(token_mask, (4, 4), ((2, 2), (2, 2)))
    entry = TokenView.at_input(layout, embeds, None)
    keep = torch.ones(2, 9, dtype=torch.bool)
    keep[0, [2, 4]] = False
    keep[1, [3]] = False
    compaction = plan_compaction(keep)
    level = entry.compact(compaction, (2, 3), compaction.mask(None))
    level.capture = LayerCapture(0, nn.Identity(), torch.zeros(2, compaction.length, 5), (None, None))
    flat = torch.tensor([[1, 4, 7], [8, 12, 15]])
    rows = level.embeds_at(flat)  # only these rows gathered
    # row 0 kept 7 of 9 tokens: one left pad, then input positions 0, 1, 3, 5, 6, 7, 8
    assert torch.equal(rows[0], embeds[0, [0, 5, 8]])
    assert torch.equal(rows[1], embeds[1, [0, 5, 8]])  # row 1: positions 0-2, 4-8
    assert torch.equal(rows, level.embeds.reshape(-1, 5)[flat])  # the whole sequence gathered, then the rows
