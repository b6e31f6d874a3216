"""Qwen3-VL: DeepStack inputs travel with the kept tokens, in-LLM stages before DeepStack
ends are refused, the vision signals, compact positions and the real-scale config."""

from __future__ import annotations

import pytest
import torch

import vtprune
from vtprune.models.qwen3_vl.cost import qwen3_vl_8b, vision_macs
from vtprune.models.qwen3_vl.tiny import tiny_qwen3_vl
from vtprune.runtime.compaction import plan_compaction
from vtprune.testing import Image, make_batch

import probes
from helpers import full_embeddings, full_positions, kept_sequence_index, logits, side_inputs

PROMPTS = [[5, Image(4, 6), 7], [3, Image(6, 4), 2, Image(5, 5), 4], [9]]


@pytest.fixture(scope="module")
def model64():
    """Two DeepStack layers, float64: hand-built references agree to ~1e-12."""
    return tiny_qwen3_vl(layers=4, dtype=torch.float64, deepstack=(0, 1))


@pytest.fixture(autouse=True)
def _clean(model64):
    yield
    if vtprune.active_handle(model64) is not None:
        vtprune.active_handle(model64).remove()


def _language_model_inputs(model):
    """Record the keyword arguments the language model receives (after vtprune's hook,
    which was registered first)."""
    seen = []
    handle = model.model.language_model.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(dict(kwargs)), with_kwargs=True
    )
    return seen, handle


# DeepStack inputs are compacted with the tokens -----------------------------------------------


def test_compact_side_inputs_keeps_each_kept_tokens_own_rows():
    model = tiny_qwen3_vl(layers=2)
    adapter = vtprune.models.adapter_for(model)
    visual = torch.tensor([[0, 1, 1, 1, 0, 1], [1, 1, 0, 0, 1, 0]], dtype=torch.bool)
    rows = torch.arange(int(visual.sum()), dtype=torch.float64)[:, None] * torch.tensor([1.0, -1.0])  # row r: (r, -r)
    keep = torch.tensor([[1, 0, 1, 1, 1, 0], [1, 0, 1, 1, 1, 1]], dtype=torch.bool)
    compaction = plan_compaction(keep)
    out = adapter.compact_side_inputs(
        {"visual_pos_masks": visual, "deepstack_visual_embeds": [rows, 2 * rows], "other": 1}, compaction
    )
    # Visual rows 0..3 are sample 0's (positions 1, 2, 3, 5), 4..6 sample 1's (0, 1, 4).
    # Kept: sample 0's positions 2 and 3 (rows 1, 2), sample 1's 0 and 4 (rows 4, 6).
    assert out["other"] == 1
    expected_mask = compaction.gather(visual, seq_dim=-1) & compaction.valid & compaction.gather(keep, seq_dim=-1)
    assert torch.equal(out["visual_pos_masks"], expected_mask)
    assert out["visual_pos_masks"].sum(1).tolist() == [2, 2]
    kept_rows = torch.tensor([1, 2, 4, 6])
    torch.testing.assert_close(out["deepstack_visual_embeds"][0], rows[kept_rows])
    torch.testing.assert_close(out["deepstack_visual_embeds"][1], 2 * rows[kept_rows])
    # Nothing removed: the inputs are passed on as they are.
    everything = plan_compaction(torch.ones_like(keep))
    same = {"visual_pos_masks": visual, "deepstack_visual_embeds": [rows]}
    assert adapter.compact_side_inputs(same, everything) is same


@pytest.mark.parametrize("method", ["uniform", "random"])
def test_pruned_prefill_equals_language_model_on_kept_tokens_and_deepstack(model64, method):
    """The pruned prefill's logits equal the language model run by hand on the kept
    embeddings, their original positions and the DeepStack rows of the kept tokens;
    leaving DeepStack out of the reference changes them (so it is exercised)."""
    model = model64
    batch = make_batch(model, PROMPTS)
    embeds, positions = full_embeddings(model, batch), full_positions(model, batch)
    handle = vtprune.prune(model, method, keep=0.3)
    seen, hook = _language_model_inputs(model)
    pruned = logits(model, {**batch, "position_ids": positions})
    hook.remove()
    assert 0 < handle.stats.total_llm_input < handle.stats.total_before
    given = seen[0]
    assert given["visual_pos_masks"].shape == given["inputs_embeds"].shape[:2]
    assert len(given["deepstack_visual_embeds"]) == 2
    for rows in given["deepstack_visual_embeds"]:
        assert rows.shape[0] == handle.stats.total_llm_input  # one row per kept visual token
    lm = model.model.language_model
    for sample in range(len(PROMPTS)):
        index = kept_sequence_index(model, batch, handle.last_keep, sample)
        extra = side_inputs(model, batch, sample, index)
        with torch.no_grad():
            args = dict(inputs_embeds=embeds[sample, index][None], position_ids=positions[..., sample : sample + 1, index])
            expected = model.lm_head(lm(**args, **extra).last_hidden_state)[0]
            without = model.lm_head(lm(**args).last_hidden_state)[0]
        got = pruned[sample, -len(index) :]
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)
        if extra:
            assert (got - without).abs().max() > 1e-3


def test_merged_tokens_keep_their_own_deepstack_rows(model64):
    """A merging method rewrites kept tokens' embeddings; their DeepStack rows stay the
    ones the vision tower gave those tokens."""
    model = model64
    batch = make_batch(model, PROMPTS[:2])
    handle = vtprune.prune(model, "visionzip", keep=0.3)
    seen, hook = _language_model_inputs(model)
    logits(model, batch)
    hook.remove()
    rows = []
    for sample in range(2):
        index = kept_sequence_index(model, batch, handle.last_keep, sample)
        rows.append(side_inputs(model, batch, sample, index)["deepstack_visual_embeds"])
    for layer, given in enumerate(seen[0]["deepstack_visual_embeds"]):
        torch.testing.assert_close(given, torch.cat([r[layer] for r in rows]), atol=0, rtol=0)


# in-LLM stages ----------------------------------------------------------------------------------


def test_in_llm_stages_before_deepstack_ends_are_refused(model64):
    model = model64  # DeepStack after decoder layers 1 and 2
    for layers in [(1,), (2,), (2, 3)]:
        with pytest.raises(ValueError, match=r"DeepStack .* first 2 decoder layers.*K > 2"):
            vtprune.prune(model, probes.ProbeConfig(keep=0.3, layers=layers))
        assert vtprune.active_handle(model) is None
        assert not any(layer._forward_hooks for layer in model.model.language_model.layers)
    vtprune.prune(model, probes.ProbeConfig(keep=0.3, layers=(3,)))  # after DeepStack: runs
    logits(model, make_batch(model, PROMPTS[:1]))


def test_real_scale_stages_are_checked_against_its_deepstack():
    from vtprune.models import adapter_class_for_config
    from vtprune.registry import Stage

    config = qwen3_vl_8b()
    adapter = adapter_class_for_config(config)
    with pytest.raises(ValueError, match="first 3 decoder layers"):
        adapter.check_config_stages(config, [Stage(where="llm:3", select=None, needs=frozenset())])
    adapter.check_config_stages(config, [Stage(where="llm:4", select=None, needs=frozenset())])


# the vision tower's signals -------------------------------------------------------------------------


def test_vision_signals_are_per_token_in_raster_order():
    """The ViT has no windows: the last block's output, merged, is the model's image
    features as it stands. Saliency is a dense softmax per image (mean over queries and
    heads) and keys the pre-RoPE keys averaged over heads, both per merged token."""
    model = tiny_qwen3_vl(layers=2)
    batch = make_batch(model, [[3, Image(8, 6), 4], [2, Image(4, 10), 1]])
    visual = model.model.visual
    seen = {}
    hooks = [
        visual.blocks[-1].attn.register_forward_pre_hook(
            lambda m, a, kw: seen.update(x=a[0], rope=kw["position_embeddings"], cu=kw["cu_seqlens"]), with_kwargs=True
        ),
        visual.blocks[-1].register_forward_hook(lambda m, a, out: seen.update(out=out)),
    ]
    handle = vtprune.prune(model, "visionzip", keep=0.5)
    with torch.no_grad():
        model(**batch)
    session = handle._session
    call = session._vision_calls[-1]
    got = {name: session.adapter.vision_signal(name, call) for name in ("vision_saliency", "vision_keys")}
    handle.remove()
    for hook in hooks:
        hook.remove()
    grid = batch["image_grid_thw"]
    assert not hasattr(visual, "fullatt_block_indexes")
    with torch.no_grad():
        expected_features = visual(batch["pixel_values"], grid_thw=grid).pooler_output
        torch.testing.assert_close(visual.merger(seen["out"]), expected_features, atol=1e-5, rtol=0)
        attn = visual.blocks[-1].attn
        q, k, _ = attn.qkv(seen["x"]).view(seen["x"].shape[0], 3, attn.num_heads, -1).unbind(1)
        cos, sin = (t[:, None, :] for t in seen["rope"])
        rot = lambda x: torch.cat((-x[..., x.shape[-1] // 2 :], x[..., : x.shape[-1] // 2]), -1)  # noqa: E731
        qr, kr = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        received = torch.cat([
            torch.softmax(torch.einsum("qhd,khd->hqk", qr[a:b], kr[a:b]) * attn.scaling, -1).mean((0, 1))
            for a, b in zip(seen["cu"][:-1].tolist(), seen["cu"][1:].tolist())
        ])
    assert seen["cu"].tolist() == [0, 192, 352]  # one full-attention segment per image
    per_token = received.view(-1, 4).mean(1)
    keys = k.mean(1).view(-1, 4, k.shape[-1]).mean(1)
    for image, (start, size) in enumerate([(0, 48), (48, 40)]):
        torch.testing.assert_close(got["vision_saliency"][image, :size], per_token[start : start + size], atol=1e-6, rtol=0)
        torch.testing.assert_close(got["vision_keys"][image, :size], keys[start : start + size], atol=1e-5, rtol=0)
    assert torch.all(got["vision_saliency"][1, 40:] == 0)
    assert per_token.std() > 0  # not uniform: the order is checked


# positions="compact" ----------------------------------------------------------------------------


def test_compact_positions_equal_those_of_the_kept_subgrid(model64):
    """Interleaved M-RoPE changes only which frequencies read which id row: an image
    whose kept tokens form a 2x3 sub-grid of its 4x6 grid gets the ids of a 2x3 image,
    and the text after it follows, as ``get_rope_index`` numbers such a prompt."""
    model = model64
    batch = make_batch(model, [[5, Image(4, 6), 7]])
    vtprune.prune(model, "uniform", keep=0.25, positions="compact")  # rows 1, 3 x cols 1, 3, 5
    seen, hook = _language_model_inputs(model)
    logits(model, batch)
    hook.remove()
    small = make_batch(model, [[5, Image(2, 3), 7]])
    expected = full_positions(model, small)
    got = seen[0]["position_ids"]
    torch.testing.assert_close(got[-3:], expected, atol=0, rtol=0)


# cost ---------------------------------------------------------------------------------------------


def test_real_scale_config_and_vision_macs():
    config = qwen3_vl_8b()
    text, vision = config.text_config, config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, vision.depth) == (4096, 36, 27)
    assert list(vision.deepstack_visual_indexes) == [8, 16, 24]
    assert qwen3_vl_8b(layers=4).text_config.num_hidden_layers == 4
    # One 32x32-patch image: 27 blocks, then 4 mergers (the output's and 3 DeepStack).
    n, d, m = 1024, 1152, 4304
    block = 2 * n * d * d + 2 * n * d * d + 2 * n * n * d + 2 * n * d * m
    merger = (n // 4) * (4 * d) * (4 * d) + (n // 4) * (4 * d) * 4096
    assert vision_macs(config, [n]) == 27 * block + 4 * merger
    assert vision_macs(config, [n, 0]) == vision_macs(config, [n])


# the mixture-of-experts variant (Qwen3-VL-30B-A3B's structure) -------------------------------------


@pytest.fixture(scope="module")
def moe64():
    return tiny_qwen3_vl(layers=4, dtype=torch.float64, deepstack=(0,), moe=True)


def test_moe_variant_keep_all_reference_cache_and_batches(moe64):
    """Qwen3VLMoeForConditionalGeneration goes the same path: keep-all is the unpatched
    model, the pruned prefill equals the language model on the kept tokens with their
    DeepStack rows, cached equals uncached and a batch equals its prompts, for a pre-LLM
    and an in-LLM method."""
    from helpers import greedy

    model = moe64
    assert type(model).__name__ == "Qwen3VLMoeForConditionalGeneration"
    batch = make_batch(model, PROMPTS)
    reference, tokens = logits(model, batch), greedy(model, batch, tokens=4)
    handle = vtprune.prune(model, "uniform", keep=1.0)
    torch.testing.assert_close(logits(model, batch), reference, atol=1e-10, rtol=0)
    assert torch.equal(greedy(model, batch, tokens=4), tokens)
    handle.remove()
    embeds, positions = full_embeddings(model, batch), full_positions(model, batch)
    handle = vtprune.prune(model, "divprune", keep=0.3)
    pruned = logits(model, {**batch, "position_ids": positions})
    lm = model.model.language_model
    for sample in range(len(PROMPTS)):
        index = kept_sequence_index(model, batch, handle.last_keep, sample)
        with torch.no_grad():
            hidden = lm(
                inputs_embeds=embeds[sample, index][None], position_ids=positions[..., sample : sample + 1, index],
                **side_inputs(model, batch, sample, index),
            ).last_hidden_state
        torch.testing.assert_close(pruned[sample, -len(index):], model.lm_head(hidden)[0], atol=1e-10, rtol=1e-10)
    handle.remove()
    for method in ("divprune", "fastv"):
        handle = vtprune.prune(model, method, keep=0.3)
        cached = greedy(model, batch, tokens=4)
        assert torch.equal(cached, greedy(model, batch, tokens=4, use_cache=False))
        for i, prompt in enumerate(PROMPTS):
            assert torch.equal(greedy(model, make_batch(model, [prompt], seeds=[i]), tokens=4)[0], cached[i])
        handle.remove()
    assert torch.equal(logits(model, batch), reference)
