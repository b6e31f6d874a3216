"""LLaVA-NeXT and LLaVA-OneVision specifics: base and high-resolution grids pruned as
units sharing the image's budget, newline tokens, and vision signals packed like the
model packs its tiles."""

from __future__ import annotations

import pytest
import torch

import vtprune
from vtprune.config import split_budget
from vtprune.pruning_methods.sts import STSConfig, pool_size
from vtprune.pruning_methods.uniform import lattice_indices
from vtprune.testing import Image, make_batch, tiny_llava_next, tiny_llava_onevision

from helpers import full_embeddings, full_positions, greedy, image_features, image_slots, kept_sequence_index, logits

BUILDERS = {"llava_next": tiny_llava_next, "llava_onevision": tiny_llava_onevision}


@pytest.fixture(scope="module", params=list(BUILDERS))
def model(request):
    return BUILDERS[request.param](layers=4)


@pytest.fixture(autouse=True)
def _clean(model):
    yield
    if vtprune.active_handle(model) is not None:
        vtprune.active_handle(model).remove()


def test_grids_follow_the_models_own_packing(model):
    adapter = vtprune.models.adapter_for(model)
    for size in [(30, 60), (48, 48), (20, 20), (70, 20)]:
        batch = make_batch(model, [[2, Image(size=size), 3]])
        (features,) = image_features(model, batch)
        tiles, rows, cols = adapter.image_grids(size, True)
        assert features.shape[0] == 36 + rows * (cols + 1) == adapter.token_count(size)
        newline = model.model.image_newline
        is_newline = (features == newline.to(features.dtype)).all(-1)
        assert torch.nonzero(is_newline).flatten().tolist() == [36 + r * (cols + 1) + cols for r in range(rows)]


def test_units_share_the_image_budget_and_uniform_keeps_each_lattice(model):
    adapter = vtprune.models.adapter_for(model)
    batch = make_batch(model, [[2, Image(size=(30, 60)), 3]])
    handle = vtprune.prune(model, "uniform", keep=20)
    logits(model, batch)
    _, rows, cols = adapter.image_grids((30, 60), True)
    base_share, high_share = split_budget(20, [36, rows * cols])
    kept = handle.last_keep[0][0].tolist()
    expected = list(lattice_indices(6, 6, base_share)) + [36 + i for i in lattice_indices(rows, cols, high_share)]
    assert kept == expected and len(kept) == 20
    assert handle.stats.llm_input == (20,) and handle.stats.before == (36 + rows * cols,)


@pytest.mark.parametrize("mode", ["keep", "with_row"])
def test_newlines_are_kept_or_pruned_with_their_row(model, mode):
    model64 = type(model)._from_config(model.config, attn_implementation="sdpa").to(torch.float64).eval()
    model64.load_state_dict(model.state_dict())
    batch = make_batch(model64, [[2, Image(size=(30, 60)), 3]])
    embeds, positions = full_embeddings(model64, batch), full_positions(model64, batch)
    handle = vtprune.prune(model64, "uniform", keep=8, newlines=mode)
    pruned = logits(model64, {**batch, "position_ids": positions})
    index = kept_sequence_index(model64, batch, handle.last_keep, 0)
    adapter = vtprune.models.adapter_for(model64)
    _, rows, cols = adapter.image_grids((30, 60), True)
    slots = image_slots(model64, batch, 0)[0]
    newlines = [int(slots[36 + r * cols + cols - 1]) + 1 for r in range(rows)]  # after each row's last token
    high = [k - 36 for k in handle.last_keep[0][0].tolist() if k >= 36]
    empty_rows = [r for r in range(rows) if not any(k // cols == r for k in high)]
    assert empty_rows, "the budget leaves some rows empty"
    if mode == "with_row":
        index = torch.tensor([i for i in index.tolist() if i not in {newlines[r] for r in empty_rows}])
    assert pruned.shape[1] == len(index)
    with torch.no_grad():
        hidden = model64.model.language_model(inputs_embeds=embeds[:, index], position_ids=positions[:, index]).last_hidden_state
        expected = model64.lm_head(hidden)
    torch.testing.assert_close(pruned, expected, atol=1e-10, rtol=1e-10)
    assert torch.equal(greedy(model64, batch, tokens=3, use_cache=False), greedy(model64, batch, tokens=3))


def test_saliency_is_the_tiles_cls_attention_packed(model):
    """Vision saliency per grid equals the eager tower's attention of each tile, packed
    by the model's own pack_image_features (unpadding, OneVision's shrinking)."""
    eager = type(model)._from_config(model.config, attn_implementation="eager").eval()
    eager.load_state_dict(model.state_dict())
    size = (30, 60)
    batch = make_batch(model, [[2, Image(size=size), 3]])
    handle = vtprune.prune(model, "visionzip", keep=0.5)
    logits(model, batch)
    session = handle._session
    signal = session.adapter.vision_signal("vision_saliency", session._vision_calls[-1])
    adapter = vtprune.models.adapter_for(model)
    tiles, rows, cols = adapter.image_grids(size, True)
    with torch.no_grad():
        pixels = batch["pixel_values"][0, :tiles]
        layer = model.config.vision_feature_layer
        attention = eager.model.vision_tower(pixels, output_attentions=True).attentions[layer if layer < 0 else layer - 1]
        if model.config.vision_feature_select_strategy == "default":  # CLIP: the CLS row
            per_tile = attention.mean(1)[:, 0, 1:]
        else:  # SigLIP: attention received
            per_tile = attention.mean(1).mean(1)
        packed = adapter._pack([per_tile[..., None]], [size], None)[0][:, 0]
    torch.testing.assert_close(signal[0, :36], packed[:36], atol=1e-6, rtol=0)
    torch.testing.assert_close(signal[1, : rows * cols], packed[36:], atol=1e-6, rtol=0)


def test_generate_path_records_image_sizes_and_remove_restores(model):
    batch = make_batch(model, [[2, Image(size=(48, 48)), 3], [4, Image(size=(20, 20)), 1]])
    reference = greedy(model, batch)
    handle = vtprune.prune(model, "random", keep=0.3)
    assert "get_image_features" in model.model.__dict__  # instance-scoped recorder
    pruned = greedy(model, batch)  # generate encodes the images before the prefill
    assert handle.stats.total_llm_input < handle.stats.total_before
    handle.remove()
    assert "get_image_features" not in model.model.__dict__
    assert torch.equal(greedy(model, batch), reference)
    assert pruned.shape == reference.shape


@pytest.mark.parametrize("method, options", [("sts", {}), ("pdrop", {"ratio": 0.01})])
def test_a_one_token_budget_leaves_one_grid_empty_and_generation_goes_on(model, method, options):
    # One token per image: the base grid or the high-resolution grid gets it, the other
    # none, and the stage inside the language model works on what is left.
    prompts = [[3, Image(size=(50, 50)), 4], [2, Image(size=(30, 60)), 5, Image(size=(20, 20)), 2]]
    batch = make_batch(model, prompts)
    handle = vtprune.prune(model, method, keep=1, **options)
    together = greedy(model, batch, tokens=3)
    assert [[len(kept) for kept in sample] for sample in handle.last_keep] == [[1], [1, 1]]
    for i, prompt in enumerate(prompts):
        alone = greedy(model, make_batch(model, [prompt], seeds=[i]), tokens=3)
        assert torch.equal(together[i, -3:], alone[0, -3:])


@pytest.mark.parametrize("size", [(50, 50), (30, 60), (70, 20)])
def test_sts_pool_is_rounded_per_image_as_its_help_says(model, size):
    # M1 = min(N, round(pool_factor * B)) of the whole image, then shared by its grids.
    config = STSConfig(keep=15, pool_factor=2.57)
    handle = vtprune.prune(model, config)
    logits(model, make_batch(model, [[2, Image(size=size), 3]]))
    n = handle.stats.before[0]
    assert handle.stats.llm_input[0] == pool_size(config.budget(n), n, config)
    assert len(handle.last_keep[0][0]) == config.budget(n)
