"""SparseVLM against a transcription of the official code (Gumpest/SparseVLMs, v1.0:
``modelling_sparse_llama.py``, ``score.py``, ``utils.cluster_and_merge``)."""

from __future__ import annotations

import pytest
import torch

from vtprune.pruning_methods.sparsevlm import (
    SparseVLMConfig,
    rater_mask,
    scaled_layers,
    schedule,
    select_sparsevlm_stage,
    stage_counts,
)
from vtprune.registry import Selection
from vtprune.signals import Signals

from .method_inputs import SignalBank, run_method

OFFICIAL = {64: [66, 30, 17], 128: [303, 110, 36], 192: [300, 200, 110]}


def official_raters(v_t: torch.Tensor, t_t: torch.Tensor) -> torch.Tensor:
    """``t_token_idx``: one image's features (N, D) against its text (T, D)."""
    m_v_t = (v_t[None] @ t_t[None].transpose(1, 2)).softmax(2).mean(1)  # [1, T]
    return torch.where(m_v_t > m_v_t.mean())[1]


def official_cluster_and_merge(x: torch.Tensor, cluster_num: int):
    """``cluster_and_merge`` without its tie-breaking noise; also returns the centres."""
    b, n, c = x.shape
    dist_matrix = (x[:, :, None, :] - x[:, None, :, :]).norm(dim=-1, p=2) / (c**0.5)
    dist_nearest, _ = torch.topk(dist_matrix, k=cluster_num, dim=-1, largest=False)
    density = (-(dist_nearest**2).mean(dim=-1)).exp()
    mask = (density[:, None, :] > density[:, :, None]).type(x.dtype)
    dist_max = dist_matrix.flatten(1).max(dim=-1)[0][:, None, None]
    dist, _ = (dist_matrix * mask + dist_max * (1 - mask)).min(dim=-1)
    score = dist * density
    _, index_down = torch.topk(score, k=cluster_num, dim=-1)
    to_centres = torch.stack([dist_matrix[i, index_down[i]] for i in range(b)])  # index_points
    idx_cluster = to_centres.argmin(dim=1)
    idx_batch = torch.arange(b)[:, None].expand(b, cluster_num)
    idx_tmp = torch.arange(cluster_num)[None, :].expand(b, cluster_num)
    idx_cluster[idx_batch.reshape(-1), index_down.reshape(-1)] = idx_tmp.reshape(-1)
    idx = idx_cluster + torch.arange(b)[:, None] * cluster_num
    token_weight = x.new_ones(b, n, 1)
    all_weight = token_weight.new_zeros(b * cluster_num, 1)
    all_weight.index_add_(dim=0, index=idx.reshape(b * n), source=token_weight.reshape(b * n, 1))
    all_weight = all_weight + 1e-6
    norm_weight = token_weight / all_weight[idx]
    x_merged = x.new_zeros(b * cluster_num, c)
    x_merged.index_add_(dim=0, index=idx.reshape(b * n), source=(x * norm_weight).reshape(b * n, c))
    return x_merged.reshape(b, cluster_num, c), index_down


def official_layer(relation_rows: torch.Tensor, raters: torch.Tensor, hidden: torch.Tensor, count: int):
    """One pruning layer on one image: ``attn_postprocess_topk`` then the merge branch.

    relation_rows (T, v): heads-averaged attention of the text rows to the visual tokens;
    hidden (v, D): the layer's output at the visual tokens. Returns the kept visual
    tokens (ascending), the merged features and the recycled tokens that are the centres."""
    v = relation_rows.shape[1]
    relation_vis_text = relation_rows[raters].mean(0)[None]  # [1, v]
    mask = torch.zeros_like(relation_vis_text, dtype=torch.bool)
    _, indices = torch.topk(relation_vis_text, min(count, v - 1), dim=1)
    mask[0][indices] = 1
    kept = torch.where(mask[0])[0]
    merge_idx_stage1 = torch.where(mask == 0)[1]  # pruned, ascending
    merge_stage1 = relation_vis_text[0][merge_idx_stage1]
    num = int(merge_idx_stage1.shape[0] * 0.3) + 1
    stage2_idx = merge_stage1.topk(num)[1]
    recycled = merge_idx_stage1[stage2_idx]
    cluster_num = int(num / 10) + 1
    merged, centres = official_cluster_and_merge(hidden[recycled][None], cluster_num)
    return kept, merged[0], recycled[centres[0]]


def test_official_counts_and_schedule() -> None:
    for budget, counts in OFFICIAL.items():
        assert list(stage_counts(576, budget)) == counts
    assert schedule(576, 64, 3) == [82, 32, 18]
    assert schedule(576, 128, 3) == [312, 117, 39]
    assert schedule(576, 576, 3) == [576, 576, 576]
    assert scaled_layers((3, 7, 16), 32) == (3, 7, 16)
    assert scaled_layers((3, 7, 16), 4) == (1, 2, 3)
    assert scaled_layers((3, 7, 16), 2) == (1,)


def test_raters_are_the_official_text_tokens() -> None:
    for seed in range(4):
        gen = torch.Generator().manual_seed(seed)
        visual, text = torch.randn(2, 576, 32, generator=gen), torch.randn(2, 9, 32, generator=gen)
        mask = torch.ones(2, 9, dtype=torch.bool)
        mask[1, 6:] = False
        ours = rater_mask(visual, text, mask)
        assert torch.nonzero(ours[0]).flatten().tolist() == official_raters(visual[0], text[0]).tolist()
        assert torch.nonzero(ours[1]).flatten().tolist() == official_raters(visual[1], text[1, :6]).tolist()


def stage_signals(bank: SignalBank, v: int, layer: int) -> Signals:
    index = torch.arange(v).expand(bank.images, v)  # the first v tokens stand for the current ones
    return Signals.from_tensors(
        bank.grid,
        token_index=index,
        **{
            "entry_visual": bank["entry_visual"],
            "text_embeds": bank["text_embeds"],
            "text_mask": bank["text_mask"],
            f"attn_rows@llm:{layer}": bank[f"attn_rows@llm:{layer}"][:, :, :v],
            f"hidden@llm:{layer}": bank[f"hidden@llm:{layer}"][:, :v],
        },
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("budget", [64, 128, 192])
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_each_layer_selects_and_merges_what_the_official_code_does(seed, budget, stage) -> None:
    bank = SignalBank(images=2, grid=(24, 24), dim=32, text_lengths=(10, 7), seed=seed)
    v = [576, *schedule(576, budget, 3)][stage - 1]  # tokens reaching this layer
    layer = (3, 7, 16)[stage - 1]
    out = select_sparsevlm_stage(
        stage_signals(bank, v, layer), budget, SparseVLMConfig(keep=budget), stage=stage, stages=3, layer=layer
    )
    assert isinstance(out, Selection)
    for i in range(2):
        length = bank.text_lengths[i]
        raters = official_raters(bank["entry_visual"][i], bank["text_embeds"][i, :length])
        kept, merged, centres = official_layer(
            bank[f"attn_rows@llm:{layer}"][i, :length, :v], raters, bank[f"hidden@llm:{layer}"][i, :v],
            OFFICIAL[budget][stage - 1],
        )
        features = dict(zip(out.keep[i].tolist(), out.features[i]))
        assert set(features) == set(kept.tolist()) | set(centres.tolist())
        assert len(features) == len(kept) + len(centres) == schedule(576, budget, 3)[stage - 1]
        for token in kept.tolist():
            torch.testing.assert_close(features[token], bank[f"hidden@llm:{layer}"][i, token])
        for slot, token in enumerate(centres.tolist()):
            torch.testing.assert_close(features[token], merged[slot], atol=1e-5, rtol=1e-5)


def test_all_stages_run_to_the_official_final_count() -> None:
    bank = SignalBank(images=2, grid=(24, 24), text_lengths=(6, 4), seed=4)
    outcome = run_method(SparseVLMConfig(keep=64), bank, num_layers=32)
    assert outcome.stage_sizes == [82, 32, 18]
