"""Pre-LLM pruning on real model classes (tiny random weights), checked against references.

For every family: keep-all is the unpatched model; a pruned prefill equals the
language model fed the kept embeddings with their original positions by hand; pruned
greedy decoding equals a hand-written decoding loop on those; a batch equals its
prompts one by one; cached decoding equals uncached recomputation.
"""

from __future__ import annotations

import pytest
import torch

import vtprune
from vtprune.pruning_methods.uniform import lattice_indices
from vtprune.testing import make_batch

from helpers import (
    FAMILIES,
    FAMILY_IDS,
    full_embeddings,
    full_positions,
    greedy,
    image_token_counts,
    kept_sequence_index,
    language_model,
    logits,
    side_inputs,
    suppress,
)


@pytest.fixture(scope="module", params=FAMILIES, ids=FAMILY_IDS)
def family(request):
    return request.param


@pytest.fixture(scope="module")
def model(family):
    return family.build()


def prompts_of(family):
    """Three different prompts: one image, two images (of different shapes for Qwen),
    and text only; different lengths, so the batch is left-padded."""
    return [
        [5, family.image(0), 7],
        [3, family.image(1), 2, family.image(2), 4],
        [9],
    ]


@pytest.fixture(scope="module")
def model64(family):
    """float64: references built by hand then agree to ~1e-12, so any misplaced token
    or position (differences of order 1) stands out."""
    return family.build(dtype=torch.float64)


@pytest.fixture(autouse=True)
def _clean(model, model64):
    yield
    for m in (model, model64):
        handle = vtprune.active_handle(m)
        if handle is not None:
            handle.remove()


# 1. keep-all through the pruning path is the unpatched model ------------------------------


@pytest.mark.parametrize("keep", [1.0, 10_000])
def test_keep_all_equals_unpatched(family, model, keep):
    batch = make_batch(model, prompts_of(family))
    reference_logits = logits(model, batch)
    reference_tokens = greedy(model, batch, tokens=8)

    handle = vtprune.prune(model, "uniform", keep=keep)
    pruned_logits = logits(model, batch)
    assert handle.stats.total_llm_input == handle.stats.total_before > 0  # the path ran
    torch.testing.assert_close(pruned_logits, reference_logits, atol=1e-5, rtol=0)
    assert torch.equal(greedy(model, batch, tokens=8), reference_tokens)


# 2. pruned prefill equals the hand-built reference ------------------------------------------


@pytest.mark.parametrize("method", ["uniform", "random"])
def test_pruned_prefill_equals_reference(family, model64, method):
    model = model64
    batch = make_batch(model, prompts_of(family))
    embeds = full_embeddings(model, batch)
    positions = full_positions(model, batch)

    handle = vtprune.prune(model, method, keep=0.3)
    # Explicit positions, as generate passes them (a plain forward of a left-padded
    # LLaVA batch would count the padding).
    pruned = logits(model, {**batch, "position_ids": positions})
    kept_total = handle.stats.total_llm_input
    assert 0 < kept_total < handle.stats.total_before

    for sample in range(len(batch["input_ids"])):
        index = kept_sequence_index(model, batch, handle.last_keep, sample)
        kept_embeds = embeds[sample, index][None]
        kept_positions = positions[..., sample : sample + 1, index]
        with torch.no_grad():
            hidden = language_model(model)(
                inputs_embeds=kept_embeds, position_ids=kept_positions, **side_inputs(model, batch, sample, index)
            ).last_hidden_state
            expected = model.lm_head(hidden)[0]
        # The compacted batch is right-aligned: this sample's tokens are its last ones.
        got = pruned[sample, -len(index):]
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)


def test_uniform_keeps_the_lattice(family, model):
    if family.anyres or family.tiles:
        pytest.skip("images of several grids: see test_anyres.py and test_internvl.py")
    batch = make_batch(model, prompts_of(family))
    vtprune.prune(model, "uniform", keep=0.25)
    handle = vtprune.active_handle(model)
    logits(model, batch)
    grids = []
    if "image_grid_thw" in batch:
        grids = [(h // 2, w // 2) for _, h, w in batch["image_grid_thw"].tolist()]
    elif "image_sizes" in batch:  # Mistral 3: grids of the images' pixel sizes
        cell = model.config.vision_config.patch_size * model.config.spatial_merge_size
        grids = [(h // cell, w // cell) for h, w in batch["image_sizes"].tolist()]
    else:
        side = model.config.vision_config.image_size // model.config.vision_config.patch_size
        pooled = getattr(model.config, "mm_tokens_per_image", None)  # Gemma 3 pools its patches
        side = round(pooled**0.5) if pooled else side
        grids = [(side, side)] * 3
    kept = [k for sample in handle.last_keep for k in sample]
    assert len(kept) == len(grids) == 3
    for got, (rows, cols) in zip(kept, grids):
        budget = vtprune.resolve_budget(0.25, rows * cols)
        assert got.tolist() == list(lattice_indices(rows, cols, budget))


# decoding continues at the unpruned positions -------------------------------------------------


def test_pruned_generation_equals_reference_decoding(family, model64):
    """Greedy tokens of the pruned model equal a decoding loop written by hand on the
    language model: kept embeddings at their original positions, then each new token
    at the position the unpruned sequence would give it."""
    model = model64
    prompt = [5, family.image(0), 2, family.image(1), 7]
    batch = make_batch(model, [prompt])
    embeds = full_embeddings(model, batch)
    positions = full_positions(model, batch)

    handle = vtprune.prune(model, "uniform", keep=0.3)
    tokens = greedy(model, batch, tokens=6)[0]

    index = kept_sequence_index(model, batch, handle.last_keep, 0)
    lm = language_model(model)
    banned = torch.tensor(suppress(model))
    hidden_in, pos = embeds[0, index][None], positions[..., :1, index]
    next_position = int(positions.max()) + 1  # same id in every M-RoPE row after the prompt
    cache, expected = None, []
    extra = side_inputs(model, batch, 0, index)
    with torch.no_grad():
        for step in range(6):
            out = lm(inputs_embeds=hidden_in, position_ids=pos, past_key_values=cache, use_cache=True, **extra)
            extra = {}  # the prompt's only: decoding steps bring no images
            cache = out.past_key_values
            scores = model.lm_head(out.last_hidden_state[:, -1])[0]
            scores[banned] = float("-inf")
            token = int(scores.argmax())
            expected.append(token)
            hidden_in = model.get_input_embeddings()(torch.tensor([[token]]))
            pos = torch.full(positions[..., :1, :1].shape, next_position + step)
    assert tokens.tolist() == expected


# 3. a batch equals its prompts one by one -------------------------------------------------------


@pytest.mark.parametrize("method", ["uniform", "random"])
def test_batch_equals_singles(family, model, method):
    prompts = prompts_of(family)
    vtprune.prune(model, method, keep=0.3)
    batch = make_batch(model, prompts)
    batched = greedy(model, batch, tokens=8)
    batched_logits = logits(model, batch)[:, -1]
    for i, prompt in enumerate(prompts):
        single = make_batch(model, [prompt], seeds=[i])
        assert torch.equal(greedy(model, single, tokens=8)[0], batched[i])
        torch.testing.assert_close(logits(model, single)[0, -1], batched_logits[i], atol=1e-4, rtol=1e-4)


# 4. cached decoding equals uncached recomputation -----------------------------------------------


def test_cached_equals_uncached(family, model):
    batch = make_batch(model, prompts_of(family))
    vtprune.prune(model, "uniform", keep=0.3)
    cached = greedy(model, batch, tokens=8)
    uncached = greedy(model, batch, tokens=8, use_cache=False)
    assert torch.equal(cached, uncached)


def test_cached_equals_manual_recomputation(family, model):
    """Step by step without a cache: each step a full pruned forward of the prompt plus
    the tokens so far; the argmax must follow generate's cached tokens."""
    batch = make_batch(model, [[4, family.image(0), 6]])
    vtprune.prune(model, "random", keep=0.3, seed=3)
    cached = greedy(model, batch, tokens=5)[0]
    banned = suppress(model)
    current = dict(batch)
    with torch.no_grad():
        for step in range(5):
            scores = model(**current, use_cache=False).logits[0, -1]
            scores[banned] = float("-inf")
            token = scores.argmax().view(1, 1)
            assert int(token) == int(cached[step])
            current["input_ids"] = torch.cat((current["input_ids"], token), dim=1)
            current["attention_mask"] = torch.cat((current["attention_mask"], torch.ones_like(token)), dim=1)
            for types in ("mm_token_type_ids", "token_type_ids"):  # Qwen3-VL's, Gemma 3's
                if types in current:
                    current[types] = torch.cat((current[types], torch.zeros_like(token)), dim=1)


def test_manual_cached_decoding_without_position_ids(family, model):
    """A user loop passing only the new token and the cache (no mask, no positions)
    must continue at the unpruned positions, like generate."""
    batch = make_batch(model, [[4, family.image(0), 6]])
    vtprune.prune(model, "uniform", keep=0.3)
    expected = greedy(model, batch, tokens=4)[0]
    banned = suppress(model)
    with torch.no_grad():
        out = model(**batch, use_cache=True)
        tokens = []
        for _ in range(4):
            scores = out.logits[0, -1]
            scores[banned] = float("-inf")
            token = scores.argmax().view(1, 1)
            tokens.append(int(token))
            out = model(input_ids=token, past_key_values=out.past_key_values, use_cache=True)
    assert tokens == expected.tolist()


# text-only prompts pass untouched -------------------------------------------------------------


def test_text_only_batch_is_untouched(family, model):
    batch = make_batch(model, [[7], [12]])
    reference = logits(model, batch)
    handle = vtprune.prune(model, "uniform", keep=0.1)
    assert torch.equal(logits(model, batch), reference)
    assert handle.stats is None  # no forward with images yet


# 5. remove() and disabled() restore bit-identical outputs -----------------------------------


def test_remove_and_disabled_restore_exactly(family, model):
    batch = make_batch(model, prompts_of(family))
    reference_logits = logits(model, batch)
    reference_tokens = greedy(model, batch)

    handle = vtprune.prune(model, "uniform", keep=0.25)
    pruned_tokens = greedy(model, batch)
    with vtprune.disabled(model):
        assert torch.equal(logits(model, batch), reference_logits)
        assert torch.equal(greedy(model, batch), reference_tokens)
    assert torch.equal(greedy(model, batch), pruned_tokens)  # back on after the block

    handle.remove()
    assert torch.equal(logits(model, batch), reference_logits)
    assert torch.equal(greedy(model, batch), reference_tokens)
    handle.remove()  # idempotent


def test_pruning_twice_leaves_one_method(family, model):
    first = vtprune.prune(model, "random", keep=0.5)
    second = vtprune.prune(model, "uniform", keep=0.25)
    assert not first.active and second.active
    assert vtprune.active_handle(model) is second
    hooks = [model.model._forward_pre_hooks, language_model(model)._forward_pre_hooks]
    assert [len(h) for h in hooks] == [1, 1]
    batch = make_batch(model, prompts_of(family))
    logits(model, batch)
    for sample, kept in enumerate(second.last_keep):  # uniform's budgets, not random's
        counts = image_token_counts(model, batch, sample)
        assert [len(k) for k in kept] == [vtprune.resolve_budget(0.25, n) for n in counts]
    assert first.stats is None
    second.remove()
    assert [len(h) for h in hooks] == [0, 0]


def test_attention_implementation_stays(family, model):
    vtprune.prune(model, "uniform", keep=0.25)
    logits(model, make_batch(model, prompts_of(family)))
    assert model.config._attn_implementation == "sdpa"
    assert language_model(model).config._attn_implementation == "sdpa"
