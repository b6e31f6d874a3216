"""InternVL: tiles and thumbnail as units sharing an image's budget, the pixel shuffle's
token grid, vision signals against a dense reference, a hand-built pruned prefill,
batches of images with different tile counts, the tiling geometry, MACs and the
real-scale config."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import vtprune
from vtprune.config import split_budget
from vtprune.models.internvl.cost import internvl3_8b, vision_macs
from vtprune.models.internvl.tiny import IMAGE_TOKEN_ID, tiles_of, tiny_internvl
from vtprune.pruning_methods.uniform import lattice_indices
from vtprune.testing import Image, make_batch

import probes
from helpers import full_positions, kept_sequence_index, logits

WIDE, SMALL, TALL = Image(size=(48, 96)), Image(size=(36, 36)), Image(size=(135, 45))  # 3, 1 and 4 tiles


@pytest.fixture(scope="module")
def model():
    return tiny_internvl(layers=4)


@pytest.fixture(autouse=True)
def _clean(model):
    probes.SEEN.clear()
    yield
    if vtprune.active_handle(model) is not None:
        vtprune.active_handle(model).remove()


def test_tile_counts_follow_the_processors_rule():
    assert [tiles_of(i.size) for i in (WIDE, SMALL, TALL)] == [3, 1, 4]
    assert tiles_of((480, 640), 448) == 13 and tiles_of((448, 448), 448) == 1  # 4 x 3 + thumbnail


# budget ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0.25, 10])
def test_tiles_and_thumbnail_share_the_budget_and_uniform_keeps_each_lattice(model, keep):
    batch = make_batch(model, [[2, TALL, 3, SMALL, 1], [4, WIDE, 2]])
    handle = vtprune.prune(model, "uniform", keep=keep)
    logits(model, batch)
    for sample, images in enumerate([[TALL, SMALL], [WIDE]]):
        expected_total = 0
        for kept, image in zip(handle.last_keep[sample], images):
            tiles = tiles_of(image.size)
            budget = vtprune.resolve_budget(keep, 36 * tiles)
            shares = split_budget(budget, [36] * tiles)
            expected = [36 * t + i for t, share in enumerate(shares) for i in lattice_indices(6, 6, share)]
            assert kept.tolist() == expected and len(expected) == budget
            expected_total += budget
        assert handle.stats.llm_input[sample] == expected_total  # kept count at the LLM input == budget
    assert handle.stats.before == (180, 108)


def test_layout_units_are_the_tiles_in_order(model):
    adapter = vtprune.models.adapter_for(model)
    batch = make_batch(model, [[2, WIDE, 3, SMALL], [TALL, 1]])
    from vtprune.runtime.forward_inputs import Forward

    layout = adapter.layout(Forward(core_inputs=dict(batch)))
    assert layout.counts == (36,) * 8 and layout.grids == ((6, 6),) * 8
    assert layout.parents == (0, 0, 0, 1, 2, 2, 2, 2)
    assert layout.offsets == (0, 36, 72, 0, 0, 36, 72, 108)


# the pixel shuffle's token grid and the vision signals -----------------------------------------


def test_pixel_shuffle_token_covers_its_2x2_patches(model):
    """Token (i, j) of a tile is made of patches (2i..2i+1, 2j..2j+1), in that order."""
    index = torch.arange(144, dtype=torch.float64).view(1, 12, 12, 1)
    shuffled = model.model.pixel_shuffle(index, scale_factor=0.5).view(36, 4)
    for i in range(6):
        for j in range(6):
            patches = [(2 * i + a) * 12 + 2 * j + b for a in range(2) for b in range(2)]
            assert shuffled[i * 6 + j].tolist() == patches


@pytest.mark.parametrize("feature_layer", [-1, -2])
def test_vision_signals_equal_a_dense_eager_reference(feature_layer):
    sdpa = tiny_internvl(layers=2, feature_layer=feature_layer)
    eager = tiny_internvl(layers=2, feature_layer=feature_layer, attn="eager")
    batch = make_batch(sdpa, [[3, WIDE, 2], [SMALL, 4, TALL]])
    handle = vtprune.prune(sdpa, "visionzip", keep=0.5)
    with torch.no_grad():
        sdpa(**batch)
    session = handle._session
    call = session._vision_calls[-1]
    got = {name: session.adapter.vision_signal(name, call) for name in ("vision_saliency", "vision_keys")}
    handle.remove()
    tower = eager.model.vision_tower
    layer_index = 1 if feature_layer == -1 else 0
    with torch.no_grad():
        out = tower(batch["pixel_values"], output_attentions=True, output_hidden_states=True)
        cls_row = out.attentions[layer_index].mean(1)[:, 0, 1:]  # (tiles, 144), heads averaged
        layer = tower.encoder.layer[layer_index]
        attn = layer.attention
        keys = attn.k_norm(attn.k_proj(layer.layernorm_before(out.hidden_states[layer_index])))[:, 1:]
        keys = keys.view(*keys.shape[:2], attn.num_heads, -1).mean(2)  # (tiles, 144, head_dim)
    tiles = batch["pixel_values"].shape[0]
    assert got["vision_saliency"].shape == (tiles, 36) and got["vision_keys"].shape == (tiles, 36, keys.shape[-1])
    for t in range(tiles):
        for i in range(6):
            for j in range(6):
                patches = [(2 * i + a) * 12 + 2 * j + b for a in range(2) for b in range(2)]
                torch.testing.assert_close(got["vision_saliency"][t, 6 * i + j], cls_row[t, patches].mean(), atol=1e-6, rtol=0)
                torch.testing.assert_close(got["vision_keys"][t, 6 * i + j], keys[t, patches].mean(0), atol=1e-5, rtol=0)
    assert cls_row.std() > 0


# a hand-built reference, and batches of different tile counts -------------------------------------


@pytest.mark.parametrize("method", ["uniform", "random"])
def test_pruned_prefill_equals_reference_from_each_image_alone(method):
    """The language model on the kept embeddings (each image's features computed from its
    own tiles alone) at their original positions gives the pruned prefill's logits."""
    model = tiny_internvl(layers=4, dtype=torch.float64)
    prompts = [[5, TALL, 7], [3, SMALL, 2, WIDE, 4]]
    batch = make_batch(model, prompts)
    positions = full_positions(model, batch)
    pixels = batch["pixel_values"].split([tiles_of(i.size) for i in (TALL, SMALL, WIDE)])
    with torch.no_grad():
        features = [model.model.get_image_features(pixel_values=p, return_dict=True).pooler_output.flatten(0, 1) for p in pixels]
    embeds = model.model.get_input_embeddings()(batch["input_ids"]).clone()
    embeds[batch["input_ids"] == IMAGE_TOKEN_ID] = torch.cat(features)
    handle = vtprune.prune(model, method, keep=0.3)
    pruned = logits(model, {**batch, "position_ids": positions})
    assert [len(k) for k in handle.last_keep[1]] == [vtprune.resolve_budget(0.3, 36), vtprune.resolve_budget(0.3, 108)]
    for sample in range(len(prompts)):
        index = kept_sequence_index(model, batch, handle.last_keep, sample)
        with torch.no_grad():
            hidden = model.model.language_model(
                inputs_embeds=embeds[sample, index][None], position_ids=positions[sample : sample + 1, index]
            ).last_hidden_state
        torch.testing.assert_close(pruned[sample, -len(index):], model.lm_head(hidden)[0], atol=1e-10, rtol=1e-10)
    handle.remove()


@pytest.mark.parametrize("method", ["visionzip", "divprune", "fastv"])
def test_images_with_different_tile_counts_in_one_batch_equal_singles(model, method):
    prompts = [[2, TALL, 3], [SMALL, 4, WIDE, 2], [5, WIDE, 1, TALL, 2]]
    vtprune.prune(model, method, keep=0.3)
    batched = logits(model, make_batch(model, prompts))[:, -1]
    for i, prompt in enumerate(prompts):
        single = logits(model, make_batch(model, [prompt], seeds=[i]))[0, -1]
        torch.testing.assert_close(single, batched[i], atol=1e-4, rtol=1e-4)


# what is refused ---------------------------------------------------------------------------------


def test_full_feature_strategy_is_refused_at_prune():
    model = tiny_internvl(layers=2)
    model.config.vision_feature_select_strategy = "full"
    with pytest.raises(ValueError, match="CLS token"):
        vtprune.prune(model, "uniform", keep=0.5)
    assert vtprune.active_handle(model) is None


def test_placeholders_that_are_not_whole_tiles_are_refused(model):
    batch = make_batch(model, [[2, SMALL, 3]])
    ids = batch["input_ids"].clone()
    first = int((ids[0] == IMAGE_TOKEN_ID).nonzero()[0])
    ids[0, first + 18] = 7  # a text token inside the tile: two runs of 18, 36 placeholders in all
    ids[0, first + 36] = IMAGE_TOKEN_ID  # (where </img> was)
    vtprune.prune(model, "uniform", keep=0.5)
    with pytest.raises(ValueError, match="whole tiles"):
        logits(model, {**batch, "input_ids": ids})


# a Qwen3 decoder (InternVL3.5) ------------------------------------------------------------------------


def test_qwen3_decoder_attention_rows_equal_eager():
    sdpa = tiny_internvl(layers=4, text="qwen3")
    eager = tiny_internvl(layers=4, text="qwen3", attn="eager")
    batch = make_batch(sdpa, [[5, WIDE, 7]])
    vtprune.prune(sdpa, probes.ProbeConfig(keep=1.0, layers=(2,)))
    logits(sdpa, batch)
    with torch.no_grad():
        attention = eager(**batch, output_attentions=True).attentions[1].mean(1)[0, -1]
    columns = (batch["input_ids"][0] == IMAGE_TOKEN_ID).nonzero().flatten()
    got = torch.cat([row for seen in probes.SEEN for row in seen["attn_last@llm:2"]])
    assert got.numel() == columns.numel()  # three tiles of one shape: one group, in order
    torch.testing.assert_close(got, attention[columns], atol=1e-5, rtol=0)
    vtprune.active_handle(sdpa).remove()


# geometry ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(100, 50), (56, 56), (40, 130), (200, 150)])
def test_geometry_matches_the_processors_tiles(size):
    from transformers import GotOcr2ImageProcessor
    from transformers.models.internvl.processing_internvl import InternVLProcessorKwargs

    from vtprune.viz import geometry_for

    from viz.coordinates import RAW, check_patch, coordinate_image

    image_processor = GotOcr2ImageProcessor(size={"height": 56, "width": 56}, max_patches=6, crop_to_patches=False)
    processor = SimpleNamespace(image_processor=image_processor, valid_processor_kwargs=InternVLProcessorKwargs, image_seq_length=49)
    image = coordinate_image(*size)
    pixels = image_processor(image, crop_to_patches=True, **RAW)["pixel_values"]  # what InternVLProcessor asks for
    geometry = geometry_for(processor, image)
    assert geometry.kind == "internvl" and geometry.num_tokens == pixels.shape[0] * 49
    assert [s.name for s in geometry.sections][-1] == ("thumbnail" if pixels.shape[0] > 1 else "image")
    for index in range(geometry.num_tokens):
        tile, cell = divmod(index, 49)
        row, col = divmod(cell, 7)
        block = pixels[tile][:, row * 8 : (row + 1) * 8, col * 8 : (col + 1) * 8]
        check_patch(block, geometry.box(index), f"{size} token {index} (tile {tile})")


# cost and the real-scale architecture ------------------------------------------------------------------


def test_real_scale_config_and_vision_macs():
    config = internvl3_8b()
    text, vision = config.text_config, config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_key_value_heads, text.vocab_size) == (3584, 28, 4, 151674)
    assert (vision.hidden_size, vision.num_hidden_layers, tuple(vision.image_size), tuple(vision.patch_size)) == (
        1024, 24, (448, 448), (14, 14)
    )
    assert (config.image_token_id, config.downsample_ratio, config.vision_feature_layer) == (151667, 0.5, -1)
    assert internvl3_8b(layers=3).text_config.num_hidden_layers == 3
    # One 448 px tile: 1024 patches + CLS through 24 layers, then 256 tokens of 4 x 1024
    # features through the projector's two matrices.
    n, d, m = 1025, 1024, 4096
    layer = 2 * n * d * d + 2 * n * d * d + 2 * n * n * d + 2 * n * d * m
    projector = 256 * (4096 * 3584 + 3584 * 3584)
    assert vision_macs(config, [1024]) == 24 * layer + projector
    assert vision_macs(config, [1024, 0, 1024]) == 2 * vision_macs(config, [1024])
