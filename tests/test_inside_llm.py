"""In-LLM stages with SDPA kept on: attention rows, pruned prefill, decoding, batching."""

from __future__ import annotations

import pytest
import torch

import vtprune
from vtprune.testing import make_batch

import probes
from helpers import (
    FAMILIES,
    full_embeddings,
    full_positions,
    greedy,
    image_slots,
    image_token_counts,
    kept_sequence_index,
    language_model,
    logits,
    side_inputs,
    suppress,
    unit_slots,
    refused,
)


def _refuses_inside(family) -> bool:
    """Families whose adapter refuses every in-LLM stage (Gemma 3): their refusal is
    tested below, the rest of this file is about the families that run them."""
    from vtprune.models import family_of

    model = family.build(layers=2)
    return family_of(model).adapter.inside_llm_refusal(model.config) is not None


REFUSING = [f for f in FAMILIES if _refuses_inside(f)]
RUNNING = [f for f in FAMILIES if f not in REFUSING]


@pytest.fixture(scope="module", params=RUNNING, ids=[f.name for f in RUNNING])
def family(request):
    return request.param


@pytest.mark.parametrize("refusing", REFUSING, ids=[f.name for f in REFUSING])
def test_families_without_in_llm_stages_refuse_them_at_prune(refusing):
    """Every in-LLM stage is refused before anything is patched, with the family's
    reason in one line, and pruning before the LLM still runs."""
    model = refusing.build(layers=4)
    for config in (probes.ProbeConfig(keep=0.3, layers=(1,)), probes.ProbeConfig(keep=0.3, layers=(2,), before=True)):
        assert refused(model, config)
    with pytest.raises(ValueError) as info:
        vtprune.prune(model, "fastv", keep=0.3)
    assert "\n" not in str(info.value) and "llm:" in str(info.value)
    assert not language_model(model)._forward_pre_hooks
    assert not any(layer._forward_pre_hooks or layer._forward_hooks for layer in language_model(model).layers)
    vtprune.prune(model, "uniform", keep=0.3).remove()


@pytest.fixture(scope="module")
def model(family):
    return family.build(layers=4)


@pytest.fixture(autouse=True)
def _clean(model):
    probes.SEEN.clear()
    yield
    if vtprune.active_handle(model) is not None:
        vtprune.active_handle(model).remove()


def prompts_of(family):
    return [[5, family.image(0), 7], [3, family.image(1), 2, family.image(2), 4], [9]]


# 1. recomputed attention rows equal eager attention --------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3])
def test_attention_rows_match_eager(family, model, k):
    eager = family.build(layers=4, attn="eager")
    batch = make_batch(model, prompts_of(family))
    if refused(model, probes.ProbeConfig(keep=1.0, layers=(k,))):
        return
    vtprune.prune(model, probes.ProbeConfig(keep=1.0, layers=(k,)))
    logits(model, batch)
    assert model.config._attn_implementation == "sdpa"
    seen = probes.SEEN[0]  # one group per image shape; check all of them
    with torch.no_grad():
        attentions = eager(**batch, output_attentions=True).attentions[k - 1].mean(1)  # (B, L, L)
    length = batch["input_ids"].shape[1]
    mask = batch["attention_mask"]
    checked = 0
    for seen in probes.SEEN:
        rows, last, text_mask = seen[f"attn_rows@llm:{k}"], seen[f"attn_last@llm:{k}"], None
        for i in range(rows.shape[0]):
            # Locate image i of this group: its tokens are the columns of its rows.
            checked += 1
        assert rows.shape[0] == last.shape[0]
    # Compare image by image through the batch: the groups cover every image once.
    images = []  # (sample, columns, instruction rows) per pruning unit
    for sample in range(len(prompts_of(family))):
        ids = batch["input_ids"][sample]
        placeholder = ids == model.config.image_token_id
        for cols in image_slots(model, batch, sample):
            # Images of several grids (LLaVA-NeXT / OneVision, InternVL, Idefics3) are pruned grid by
            # grid; a grid's instruction is the real text after its placeholders (Idefics3's
            # markers of the sub-images after it included: they are text; Mistral 3's row-break
            # tokens between its placeholders are text too, before the image's last placeholder).
            for unit in unit_slots(model, cols):
                end = int(unit.max()) + 1
                text = torch.nonzero(mask[sample].bool() & ~placeholder & (torch.arange(length) >= end)).flatten()
                images.append((sample, unit, text))
    expected_last = [attentions[s, length - 1, cols] for s, cols, _ in images]
    expected_rows = [attentions[s][q][:, cols] for s, cols, q in images]
    got_last = [row for seen in probes.SEEN for row in seen[f"attn_last@llm:{k}"]]
    got_rows = [row for seen in probes.SEEN for row in seen[f"attn_rows@llm:{k}"]]
    # Groups are ordered by image shape, so match each expected image to its group row.
    for exp_last, exp_rows in zip(expected_last, expected_rows):
        match = [j for j, g in enumerate(got_last) if g.shape == exp_last.shape and torch.allclose(g, exp_last, atol=1e-5)]
        assert match, "no recomputed row matches eager attention"
        j = match[0]
        torch.testing.assert_close(got_rows[j][: len(exp_rows)], exp_rows, atol=1e-5, rtol=0)
        assert torch.all(got_rows[j][len(exp_rows):] == 0)
        got_last.pop(j)
        got_rows.pop(j)
    assert not got_last and checked == len(images)


# 2. in-LLM pruned prefill equals the hand-built reference --------------------------------------


def _layer_pass(model, layers, hidden, positions, extra=None):
    """``layers`` on ``hidden``; ``extra``: the language model's DeepStack inputs
    (Qwen3-VL), added to the visual tokens after the first layers as its loop does."""
    lm = language_model(model)
    position_embeddings = lm.rotary_emb(hidden, positions)
    deepstack = (extra or {}).get("deepstack_visual_embeds", ())
    for i, layer in enumerate(layers):
        hidden = layer(hidden, attention_mask=None, position_embeddings=position_embeddings, position_ids=None)
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        if i < len(deepstack):
            hidden = hidden.clone()
            hidden[extra["visual_pos_masks"]] += deepstack[i]
    return hidden


@pytest.mark.parametrize("before", [False, True])
def test_inside_prefill_equals_reference(family, before):
    model = family.build(layers=4, dtype=torch.float64)
    batch = make_batch(model, [[4, family.image(0), 3, family.image(1), 6]])
    embeds, positions = full_embeddings(model, batch), full_positions(model, batch)
    handle = vtprune.prune(model, probes.ProbeConfig(keep=0.3, layers=(2,), before=before))
    pruned = logits(model, {**batch, "position_ids": positions})
    first, last = handle.keep_by_stage["pre_llm"][0], handle.last_keep[0]
    entry = kept_sequence_index(model, batch, {0: first}, 0)  # what enters the LLM
    inside = kept_sequence_index(model, batch, {0: last}, 0)  # what layers 3 and 4 see
    layers = language_model(model).layers
    with torch.no_grad():
        hidden = _layer_pass(model, layers[:2], embeds[:, entry], positions[..., entry], side_inputs(model, batch, 0, entry))
        where = torch.searchsorted(entry, inside)  # the survivors among the entered tokens
        hidden = _layer_pass(model, layers[2:], hidden[:, where], positions[..., inside])
        expected = model.lm_head(language_model(model).norm(hidden))
    torch.testing.assert_close(pruned, expected, atol=1e-10, rtol=1e-10)
    budget = [vtprune.resolve_budget(0.3, n) for n in image_token_counts(model, batch, 0)]
    assert [len(k) for k in last] == budget
    stats = handle.stats
    n_entry = sum(len(k) for k in first)
    assert stats.llm_input == (n_entry,) and stats.layer_avg == ((2 * n_entry + 2 * sum(budget)) / 4,)


def test_inside_tokens_in_a_stage_s_order_equal_reference(family):
    """A stage giving its kept tokens in reverse order: the later layers see the
    survivors of each image (of each grid of a LLaVA-NeXT image) in their places
    reversed, the places keeping their positions."""
    model = family.build(layers=4, dtype=torch.float64)
    batch = make_batch(model, [[4, family.image(0), 3, family.image(1), 6]])
    config = probes.ProbeConfig(keep=0.3, layers=(2,), reverse="inside")
    if refused(model, config):
        return
    embeds, positions = full_embeddings(model, batch), full_positions(model, batch)
    handle = vtprune.prune(model, config)
    pruned = logits(model, {**batch, "position_ids": positions})
    last = handle.last_keep
    inside = kept_sequence_index(model, batch, {0: last[0]}, 0)
    content = inside.clone()
    layout = handle._session.last.layout
    for parent, (slot, kept) in enumerate(zip(image_slots(model, batch, 0), last[0])):
        for unit in [u for u, p in enumerate(layout.parents) if p == parent]:
            start, (rows, cols) = layout.offsets[unit], layout.grids[unit]
            mine = slot[kept[(kept >= start) & (kept < start + rows * cols)]]
            content[torch.searchsorted(inside, mine)] = mine.flip(0)
    layers = language_model(model).layers
    everything = torch.arange(embeds.shape[1])
    with torch.no_grad():
        hidden = _layer_pass(model, layers[:2], embeds, positions, side_inputs(model, batch, 0, everything))
        hidden = _layer_pass(model, layers[2:], hidden[:, content], positions[..., inside])
        expected = model.lm_head(language_model(model).norm(hidden))
    torch.testing.assert_close(pruned, expected, atol=1e-10, rtol=1e-10)
    assert all(k.tolist() == sorted(k.tolist()) for k in last[0])


def test_inside_a_later_stage_sees_the_earlier_order(family, model):
    """Each grid's tokens reach the next stage in the order the first gave them."""
    config = probes.ProbeConfig(keep=0.4, layers=(1, 3), reverse="inside")
    if refused(model, config):
        return
    handle = vtprune.prune(model, config)
    logits(model, make_batch(model, [[5, family.image(0), 7]]))
    groups = len(probes.SEEN) // 2  # one selection per grid group and stage
    seen = [entry["token_index"] for entry in probes.SEEN[groups:]]
    assert sum(index.numel() for index in seen) == sum(len(k) for k in handle.keep_by_stage["llm:1"][0])
    assert all(index.shape[1] > 1 and bool((index[:, 1:] < index[:, :-1]).all()) for index in seen)


def test_a_stage_order_before_the_llm_is_refused(model, family):
    vtprune.prune(model, probes.ProbeConfig(keep=0.3, layers=(2,), before=True, reverse="all"))
    with pytest.raises(ValueError, match="only inside the language model"):
        logits(model, make_batch(model, [[5, family.image(0), 7]]))


# 3. decoding, batching, keep-all -------------------------------------------------------------------


@pytest.mark.parametrize("reverse", ["none", "inside"])
@pytest.mark.parametrize("layers", [(2,), (1, 3)])
def test_inside_cached_equals_uncached_and_batch_equals_singles(family, model, layers, reverse):
    prompts = prompts_of(family)
    config = probes.ProbeConfig(keep=0.4, layers=layers, share=0.8, reverse=reverse)
    if refused(model, config):
        return
    vtprune.prune(model, config)
    batch = make_batch(model, prompts)
    cached = greedy(model, batch, tokens=6)
    assert torch.equal(greedy(model, batch, tokens=6, use_cache=False), cached)
    for i, prompt in enumerate(prompts):
        assert torch.equal(greedy(model, make_batch(model, [prompt], seeds=[i]), tokens=6)[0], cached[i])


def test_inside_manual_decoding(family, model):
    batch = make_batch(model, [[4, family.image(0), 6]])
    vtprune.prune(model, probes.ProbeConfig(keep=0.3, layers=(2,), before=True))
    expected = greedy(model, batch, tokens=4)[0].tolist()
    with torch.no_grad():
        out = model(**batch, use_cache=True)
        tokens = []
        for _ in range(4):
            scores = out.logits[0, -1]
            scores[suppress(model)] = float("-inf")  # as greedy does
            token = scores.argmax().view(1, 1)
            tokens.append(int(token))
            out = model(input_ids=token, past_key_values=out.past_key_values, use_cache=True)
    assert tokens == expected
    cache = out.past_key_values
    lengths = [cache.layers[i].keys.shape[-2] for i in range(4)]
    assert lengths[0] == lengths[1] > lengths[2] == lengths[3]  # full before K, pruned after


def test_inside_keep_all_equals_unpatched(family, model):
    batch = make_batch(model, prompts_of(family))
    reference, tokens = logits(model, batch), greedy(model, batch, tokens=6)
    if refused(model, probes.ProbeConfig(keep=1.0, layers=(1, 3))):
        return
    vtprune.prune(model, probes.ProbeConfig(keep=1.0, layers=(1, 3)))
    torch.testing.assert_close(logits(model, batch), reference, atol=1e-5, rtol=0)
    assert torch.equal(greedy(model, batch, tokens=6), tokens)


# 4. bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layers,words",
    [((0,), ["K must be in [1, 3]"]), ((4,), ["K must be in [1, 3]"]), ((3, 2), ["in order"]), ((2, 2), ["in order"])],
)
def test_bad_stage_layers(model, layers, words):
    with pytest.raises(ValueError) as info:
        vtprune.prune(model, probes.ProbeConfig(layers=layers))
    for word in words:
        assert word in str(info.value)
    assert not language_model(model)._forward_pre_hooks
    assert not any(layer._forward_pre_hooks or layer._forward_hooks for layer in language_model(model).layers)


def test_an_extended_prompt_replays_and_a_new_prompt_selects(family, model):
    vtprune.prune(model, probes.ProbeConfig(keep=0.3, layers=(2,)))
    handle = vtprune.active_handle(model)
    batch = make_batch(model, [[4, family.image(0), 6]])
    logits(model, batch)
    first, selections = handle._session.last, len(probes.SEEN)
    longer = {k: v for k, v in batch.items()}
    extra = torch.tensor([[17, 18]])
    longer["input_ids"] = torch.cat((batch["input_ids"], extra), 1)
    longer["attention_mask"] = torch.cat((batch["attention_mask"], torch.ones_like(extra)), 1)
    if "mm_token_type_ids" in batch:
        longer["mm_token_type_ids"] = torch.cat((batch["mm_token_type_ids"], torch.zeros_like(extra)), 1)
    logits(model, longer)
    assert handle._session.last is first and len(probes.SEEN) == selections  # replayed, not selected
    other = make_batch(model, [[4, family.image(0), 6]], seeds=[5])  # other tokens and pixels
    logits(model, other)
    assert handle._session.last is not first and len(probes.SEEN) > selections
