"""End to end on a tiny LLaVA (576 tokens per image): vtprune's baselines select what
transcriptions of the official code select, with the signals read from the same layers
and rows the official code reads. One prompt, no padding, as the official code runs.

The transcriptions drive the model's own decoder layers (and an eager copy for
attention maps) the way the official modeling files do; they share nothing with
vtprune's runtime."""

from __future__ import annotations

import pytest
import torch

import vtprune
from vtprune.testing import IMAGE, make_batch, tiny_llava

from helpers import full_embeddings
from methods.test_dart import official_dart
from methods.test_sparsevlm import official_layer, official_raters

LAYERS = 32
PROMPT = [5, IMAGE, 7]


@pytest.fixture(scope="module")
def models():
    return tiny_llava(grid=24, layers=LAYERS), tiny_llava(grid=24, layers=LAYERS, attn="eager")


@pytest.fixture(scope="module")
def batch(models):
    return make_batch(models[0], [PROMPT])


def image_span(model, batch) -> tuple[int, int]:
    ids = batch["input_ids"][0]
    where = torch.nonzero(ids == model.config.image_token_id).flatten()
    return int(where[0]), len(where)


def kept_by_stage(model, batch, method, **config) -> dict[str, list[int]]:
    handle = vtprune.prune(model, method, **config)
    try:
        with torch.no_grad():
            model(**batch)
        return {stage: sorted(kept[0][0].tolist()) for stage, kept in handle.keep_by_stage.items()}
    finally:
        handle.remove()


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def renumbered_layer(lm, layer, hidden):
    """One decoder layer over ``hidden`` with positions ``arange(len)`` (the official
    codes renumber after every drop): its output and the rotary tables it used."""
    positions = torch.arange(hidden.shape[1])[None]
    cos, sin = lm.rotary_emb(hidden, positions)
    out = layer(hidden, attention_mask=None, position_ids=positions, position_embeddings=(cos, sin))
    return (out[0] if isinstance(out, tuple) else out), cos, sin


def test_fastv(models, batch):
    """FastV: layer K=2's attention (eager, heads averaged) from the last token."""
    model, eager = models
    start, count = image_span(model, batch)
    with torch.no_grad():
        attention = eager(**batch, output_attentions=True).attentions[1][0].mean(0)  # (L, L)
    for budget in (64, 128, 192):
        official = attention[-1, start : start + count].topk(budget).indices.sort().values.tolist()
        assert kept_by_stage(model, batch, "fastv", keep=budget)["llm:2"] == official


def official_pdrop(model, batch, layer_list, ratio):
    """``LlamaModel.forward`` of PyramidDrop with ``pdrop_rank_drop``: after layer index
    ``rank_layer - 1``, rank by ``layers[rank_layer]``'s q/k on the hidden states, keep
    ``int(N * ratio**stage)``, renumber the positions ``arange(len)``."""
    lm = model.model.language_model
    start, count = image_span(model, batch)
    hidden = full_embeddings(model, batch)
    alive = torch.arange(count)  # original indices of the image tokens still there
    kept = {}
    with torch.no_grad():
        for index, layer in enumerate(lm.layers):
            hidden, cos, sin = renumbered_layer(lm, layer, hidden)
            rank_layer = index + 1
            if rank_layer not in layer_list:
                continue
            stage = layer_list.index(rank_layer)
            attn = lm.layers[rank_layer].self_attn
            x = lm.layers[rank_layer].input_layernorm(hidden)[0]
            heads, kv, d = attn.config.num_attention_heads, attn.config.num_key_value_heads, attn.head_dim
            q = rope(attn.q_proj(x).view(-1, heads, d).transpose(0, 1), cos[0], sin[0])
            k = rope(attn.k_proj(x).view(-1, kv, d).transpose(0, 1), cos[0], sin[0])
            k = k.repeat_interleave(heads // kv, dim=0)
            weights = torch.softmax((q[:, -1:] @ k.transpose(1, 2)) / d**0.5, dim=-1, dtype=torch.float32)
            image_tokens = int(count * ratio**stage)
            keep_length = int(count * ratio ** (stage + 1))
            scores = weights.mean(0)[:, start : start + image_tokens].mean(0)
            top = scores.topk(keep_length).indices.sort().values
            hidden = torch.cat([hidden[:, :start], hidden[:, start + top], hidden[:, start + image_tokens :]], dim=1)
            alive = alive[top]
            kept[f"llm:{rank_layer}"] = alive.tolist()
    return kept


@pytest.mark.parametrize("layers", [(8, 16, 24), (2, 6, 12)])
def test_pdrop(models, batch, layers):
    """PDrop: the next layer's attention at each boundary, positions renumbered."""
    model = models[0]
    official = official_pdrop(model, batch, list(layers), 0.5)
    ours = kept_by_stage(model, batch, "pdrop", keep=0.25, layers=layers, ratio=0.5)
    for stage, tokens in official.items():
        assert ours[stage] == tokens, stage


def test_dart(models, batch):
    """DART: post-RoPE keys of layer K=2 (index 1), final-norm hidden states after it,
    4 image + 4 text pivots, at the official token count."""
    model = models[0]
    lm = model.model.language_model
    start, count = image_span(model, batch)
    with torch.no_grad():
        states = model(**batch, output_hidden_states=True).hidden_states
        layer = lm.layers[1]
        positions = torch.arange(states[1].shape[1])[None]
        cos, sin = lm.rotary_emb(states[1], positions)
        kv, d = layer.self_attn.config.num_key_value_heads, layer.self_attn.head_dim
        keys = layer.self_attn.k_proj(layer.input_layernorm(states[1]))[0].view(-1, kv, d).transpose(0, 1)
        keys = rope(keys, cos[0], sin[0]).transpose(0, 1).reshape(keys.shape[1], -1)  # (L, kv * d)
        normed = lm.norm(states[2])[0]
    end = start + count
    for budget in (64, 128, 192):
        official = official_dart(keys[start:end], keys[end:], normed[start:end], normed[end:], budget)
        ours = kept_by_stage(model, batch, "dart", keep=4 + 8 * (budget // 8))["llm:2"]
        assert set(ours) == official


def test_sparsevlm_first_layer(models, batch):
    """SparseVLM: raters from the LLM input, layer index 2's attention (eager) from them,
    the layer's output for the merge; the first pruning layer's kept set."""
    model, eager = models
    start, count = image_span(model, batch)
    embeds = full_embeddings(model, batch)[0]
    with torch.no_grad():
        out = eager(**batch, output_attentions=True, output_hidden_states=True)
    attention = out.attentions[2][0].mean(0)  # (L, L) heads averaged
    hidden = out.hidden_states[3][0]
    end = start + count
    raters = official_raters(embeds[start:end], embeds[end:])
    for budget, first in ((64, 66), (128, 303), (192, 300)):
        kept, _, centres = official_layer(attention[end:, start:end], raters, hidden[start:end], first)
        ours = kept_by_stage(model, batch, "sparsevlm", keep=budget)["llm:3"]
        assert set(ours) == set(kept.tolist()) | set(centres.tolist())


def attention_of(layer, hidden, cos, sin) -> torch.Tensor:
    """(L, L) causal attention probabilities of ``layer`` on ``hidden`` (1, L, D), heads averaged."""
    attn = layer.self_attn
    x = layer.input_layernorm(hidden)[0]
    heads, kv, d = attn.config.num_attention_heads, attn.config.num_key_value_heads, attn.head_dim
    q = rope(attn.q_proj(x).view(-1, heads, d).transpose(0, 1), cos[0], sin[0])
    k = rope(attn.k_proj(x).view(-1, kv, d).transpose(0, 1), cos[0], sin[0]).repeat_interleave(heads // kv, 0)
    scores = q @ k.transpose(1, 2) / d**0.5
    length = scores.shape[-1]
    scores = scores.masked_fill(torch.ones(length, length, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1).mean(0)


def official_sparsevlm(model, batch, budget, placement="appended"):
    """``LlamaModel.forward`` of SparseVLM v1.0 on one prompt: raters at the input; at
    layer indices 2, 6, 15 the layer's attention from the raters, top-k, the best 30% of
    the pruned clustered and merged; positions ``arange(len)`` after each drop.

    placement="appended" puts the merged tokens after the kept visual tokens (the
    official code); "centre" puts each at its cluster centre's place (vtprune's
    ``placement="centre"``). Returns the kept image tokens after each pruning layer (a merged
    token counted as its centre)."""
    lm = model.model.language_model
    start, count = image_span(model, batch)
    hidden = full_embeddings(model, batch)
    ids, visual = list(range(count)), count
    entry = hidden[0]
    raters = official_raters(entry[start : start + count], entry[start + count :])
    kept_after = []
    with torch.no_grad():
        for index, layer in enumerate(lm.layers):
            out, cos, sin = renumbered_layer(lm, layer, hidden)
            if index not in (2, 6, 15):
                hidden = out
                continue
            text_start = start + visual
            rows = attention_of(layer, hidden, cos, sin)[text_start:, start:text_start]
            count_here = {64: (66, 30, 17), 128: (303, 110, 36), 192: (300, 200, 110)}[budget][(2, 6, 15).index(index)]
            kept, merged, centres = official_layer(rows, raters, out[0, start:text_start], count_here)
            features = torch.cat([out[0, start:text_start][kept], merged])
            ids = [ids[i] for i in kept.tolist()] + [ids[i] for i in centres.tolist()]
            if placement == "centre":
                order = torch.tensor(ids).argsort()
                features, ids = features[order], [ids[i] for i in order.tolist()]
            kept_after.append(sorted(ids))
            hidden = torch.cat([out[:, :start], features[None], out[:, text_start:]], dim=1)
            visual = len(ids)
    return kept_after


@pytest.mark.parametrize("budget", [64, 128, 192])
def test_sparsevlm_all_layers(models, batch, budget):
    """All three pruning layers equal the official code, the merged tokens after the
    kept ones; with ``placement="centre"`` they equal it with each merged token at its
    centre's place."""
    model = models[0]
    stages = ["llm:3", "llm:7", "llm:16"]
    ours = kept_by_stage(model, batch, "sparsevlm", keep=budget)
    assert [ours[s] for s in stages] == official_sparsevlm(model, batch, budget)
    centre = kept_by_stage(model, batch, "sparsevlm", keep=budget, placement="centre")
    assert [centre[s] for s in stages] == official_sparsevlm(model, batch, budget, placement="centre")


def test_visionzip_kept_set(models, batch):
    """VisionZip: dominant tokens by the CLS row of vision layer -2 (heads summed),
    contextual targets strided over the rest."""
    model, eager = models
    with torch.no_grad():
        attentions = eager.model.vision_tower(batch["pixel_values"], output_attentions=True).attentions
    cls_attention = attentions[-2][0, :, 0, 1:].sum(0)  # (576,)
    for budget, (dominant, contextual) in ((64, (54, 10)), (128, (108, 20)), (192, (162, 30))):
        top = cls_attention.topk(dominant).indices
        rest = torch.ones(576, dtype=torch.bool)
        rest[top] = False
        remaining = torch.nonzero(rest).flatten()
        step = max(1, len(remaining) // contextual)
        targets = remaining[torch.arange(0, len(remaining), step)[:contextual]]
        ours = kept_by_stage(model, batch, "visionzip", keep=budget)["pre_llm"]
        assert set(ours) == set(top.tolist()) | set(targets.tolist())


def test_divprune(models, batch):
    """DivPrune: the projector's output features of the image (what the official code prunes)."""
    from methods.test_divprune import official_divprune

    model = models[0]
    with torch.no_grad():
        features = model.model.get_image_features(
            pixel_values=batch["pixel_values"], vision_feature_layer=model.config.vision_feature_layer,
            vision_feature_select_strategy="default", return_dict=True,
        ).pooler_output[0]
    for budget in (64, 128, 192):
        official = sorted(official_divprune(features.float(), budget))
        assert kept_by_stage(model, batch, "divprune", keep=budget)["pre_llm"] == official
