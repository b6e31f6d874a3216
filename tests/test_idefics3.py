"""Idefics3 and SmolVLM: an image is its sub-images and its global image, each a unit of
its own square grid sharing the image's budget; the text markers around them are never
pruned; vision signals follow the pixel shuffle; geometry, MACs and the real-scale config."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import vtprune
from vtprune.config import split_budget
from vtprune.models.idefics3 import tiny
from vtprune.models.idefics3.cost import smolvlm_2b, vision_macs
from vtprune.runtime.forward_inputs import Forward
from vtprune.runtime.vision import VisionCall
from vtprune.testing import Image, make_batch
from vtprune.viz import geometry_for

from helpers import full_embeddings, full_positions, greedy, kept_sequence_index, language_model, logits

# Images of 1 x 2, 2 x 2 and 3 x 1 sub-images (3, 5 and 4 units) and one not split (1 unit).
PROMPTS = [[5, Image(1, 2), 7], [3, Image(2, 2), 2, Image(), 4], [2, Image(3, 1), 6], [9]]
UNITS = [[3], [5, 1], [4], []]  # units per image, per prompt
BUILDS = {"idefics3": tiny.tiny_idefics3, "smolvlm": tiny.tiny_smolvlm}


@pytest.fixture(scope="module", params=sorted(BUILDS))
def model64(request):
    """Float64: hand-built references agree to ~1e-12."""
    return BUILDS[request.param](layers=4, dtype=torch.float64)


@pytest.fixture(autouse=True)
def _clean(model64):
    yield
    if vtprune.active_handle(model64) is not None:
        vtprune.active_handle(model64).remove()


def per_unit(model) -> int:
    vision = model.config.vision_config
    return (vision.image_size // vision.patch_size // model.config.scale_factor) ** 2


def markers(batch) -> torch.Tensor:
    """(B, L) True at the processor's text markers around the sub-images."""
    ids = batch["input_ids"]
    marker_ids = [tiny.FAKE_AROUND, tiny.GLOBAL_IMG, tiny.NEWLINE, *range(tiny.ROW_COL, tiny.NEWLINE)]
    return torch.isin(ids, torch.tensor(marker_ids)) & batch["attention_mask"].bool()


def lm_inputs(model):
    seen = []
    handle = language_model(model).register_forward_pre_hook(lambda m, a, kw: seen.append(dict(kw)), with_kwargs=True)
    return seen, handle


# the units of an image ---------------------------------------------------------------------------


def test_layout_units_images_and_offsets(model64):
    """Each sub-image and global image is a unit with its square grid; units are
    grouped into the prompt's images, with their offsets in the image's indices."""
    model = model64
    batch = make_batch(model, PROMPTS)
    adapter = vtprune.models.adapter_for(model)
    layout = adapter.layout(Forward(core_inputs=dict(batch)))
    n, side = per_unit(model), adapter.side
    units = [u for prompt in UNITS for u in prompt]
    assert layout.num_units == sum(units) and layout.counts == (n,) * sum(units)
    assert layout.grids == ((side, side),) * sum(units)
    assert layout.parents == tuple(i for i, u in enumerate(units) for _ in range(u))
    assert layout.offsets == tuple(k * n for u in units for k in range(u))
    assert torch.equal(layout.token_mask, batch["input_ids"] == model.config.image_token_id)
    # The same from the embeddings alone (no input_ids), as transformers finds images then.
    embeds = model.get_input_embeddings()(batch["input_ids"])
    alone = adapter.layout(Forward(core_inputs={"inputs_embeds": embeds, "pixel_values": batch["pixel_values"]}))
    assert (alone.parents, alone.offsets, alone.counts) == (layout.parents, layout.offsets, layout.counts)


def test_prompts_whose_images_cannot_be_told_apart_are_refused(model64):
    model = model64
    batch = make_batch(model, PROMPTS[:2])
    ids = batch["input_ids"].clone()
    last_global = torch.nonzero(ids[1] == tiny.GLOBAL_IMG).flatten()[-1]
    ids[1, last_global] = tiny.ROW_COL  # prompt 1's last unit no longer follows <global-img>
    vtprune.prune(model, "uniform", keep=0.5)
    with pytest.raises(ValueError, match="cannot tell this prompt's images apart"):
        logits(model, {**batch, "input_ids": ids})


@pytest.mark.parametrize("keep", [0.3, 7])
def test_units_share_their_images_budget_and_kept_count_is_the_budget(model64, keep):
    """Each image's budget (of all its tokens) is split among its units in proportion
    to their tokens (all equal) by largest remainder; the LLM input holds exactly the
    images' budgets plus every text token and marker."""
    model = model64
    batch = make_batch(model, PROMPTS)
    handle = vtprune.prune(model, "visionzip", keep=keep)
    seen, hook = lm_inputs(model)
    logits(model, {**batch, "position_ids": full_positions(model, batch)})
    hook.remove()
    n = per_unit(model)
    for sample, (kept, units) in enumerate(zip(handle.last_keep, UNITS)):
        assert len(kept) == len(units)
        budgets = []
        for indices, count in zip(kept, units):
            budget = vtprune.resolve_budget(keep, count * n)
            budgets.append(budget)
            shares = [int(((indices >= u * n) & (indices < (u + 1) * n)).sum()) for u in range(count)]
            assert shares == split_budget(budget, [n] * count)
        text = int((batch["attention_mask"][sample].bool() & (batch["input_ids"][sample] != model.config.image_token_id)).sum())
        assert handle.stats.llm_input[sample] == sum(budgets)
        assert int(seen[0]["attention_mask"][sample].sum()) == text + sum(budgets)


def test_markers_are_never_pruned_and_the_prefill_equals_a_hand_built_reference(model64):
    """With a small budget, every marker reaches the language model, and the pruned
    prefill's logits equal the language model run by hand on the kept embeddings
    (text, markers, kept image tokens) at their original positions."""
    model = model64
    batch = make_batch(model, PROMPTS)
    embeds, positions = full_embeddings(model, batch), full_positions(model, batch)
    handle = vtprune.prune(model, "random", keep=0.1)
    seen, hook = lm_inputs(model)
    pruned = logits(model, {**batch, "position_ids": positions})
    hook.remove()
    marker = markers(batch)
    assert marker.sum() > 0
    for sample in range(len(PROMPTS)):
        index = kept_sequence_index(model, batch, handle.last_keep, sample)
        assert torch.isin(torch.nonzero(marker[sample]).flatten(), index).all()
        kept = seen[0]["inputs_embeds"][sample, -len(index):]
        torch.testing.assert_close(kept, embeds[sample, index], atol=0, rtol=0)
        torch.testing.assert_close(seen[0]["position_ids"][sample, -len(index):], positions[sample, index])
        with torch.no_grad():
            hidden = language_model(model)(inputs_embeds=embeds[sample, index][None], position_ids=positions[sample, index][None])
            expected = model.lm_head(hidden.last_hidden_state)[0]
        torch.testing.assert_close(pruned[sample, -len(index):], expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("method", ["visionzip", "fastv"])
def test_images_of_different_sub_image_counts_in_one_batch_equal_singles(model64, method):
    model = model64
    batch = make_batch(model, PROMPTS)
    vtprune.prune(model, method, keep=0.3)
    together = logits(model, {**batch, "position_ids": full_positions(model, batch)})
    tokens = greedy(model, batch, tokens=3)
    for sample, prompt in enumerate(PROMPTS):
        single = make_batch(model, [prompt], seeds=[sample])
        length = single["input_ids"].shape[1]
        alone = logits(model, {**single, "position_ids": full_positions(model, single)})
        torch.testing.assert_close(alone[0, -1], together[sample, -1], atol=1e-9, rtol=1e-9)
        assert torch.equal(greedy(model, single, tokens=3)[0], tokens[sample]), f"prompt {sample} ({length} tokens)"


# vision signals through the pixel shuffle -----------------------------------------------------------


def test_vision_signals_equal_a_dense_reference_through_the_pixel_shuffle(model64):
    """Per sub-image, from an eager tower's attention and hidden states: the attention
    each patch receives (heads and real query patches averaged), and the last layer's
    keys (heads averaged), pooled over each token's s x s patches (avg_pool2d on the
    patch grid; keys over real patches only); one sub-image is partly padding."""
    model = model64
    eager = type(model)._from_config(model.config, attn_implementation="eager").to(torch.float64).eval()
    eager.load_state_dict(model.state_dict())
    adapter = vtprune.models.adapter_for(model)
    size, patch, scale = model.config.vision_config.image_size, adapter.patch_size, adapter.scale
    pixels = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    patch_mask = torch.ones(3, size // patch, size // patch, dtype=torch.bool)
    patch_mask[1, -3:, :] = False  # sub-image 1: its last three patch rows and two columns are padding
    patch_mask[1, :, -2:] = False

    captures = {}
    hooks = adapter.install_vision_capture(lambda name, value: captures.__setitem__(name, value))
    with torch.no_grad():
        model.model.vision_model(pixel_values=pixels, patch_attention_mask=patch_mask)
    for hook in hooks:
        hook.remove()
    call = VisionCall(3, captures)
    saliency, keys = adapter.vision_signal("vision_saliency", call), adapter.vision_signal("vision_keys", call)

    grid = size // patch
    layer = eager.model.vision_model.encoder.layers[-1]
    with torch.no_grad():
        out = eager.model.vision_model(pixel_values=pixels, patch_attention_mask=patch_mask, output_attentions=True,
                                       output_hidden_states=True)
        attention = out.attentions[-1].mean(1)  # (3, Q, K)
        dense_keys = layer.self_attn.k_proj(layer.layer_norm1(out.hidden_states[-2]))
    real = patch_mask.reshape(3, -1).double()
    received = (attention * real[:, :, None]).sum(1) / real.sum(1, keepdim=True)
    pool = lambda x: torch.nn.functional.avg_pool2d(x.reshape(3, -1, grid, grid), scale).flatten(2)  # noqa: E731
    torch.testing.assert_close(saliency.double(), pool(received[:, None])[:, 0], atol=1e-6, rtol=1e-6)
    heads = layer.self_attn.num_heads
    per_patch = dense_keys.unflatten(-1, (heads, -1)).mean(-2)  # (3, patches, d)
    weight = pool(real[:, None])[:, 0]  # share of real patches per token
    summed = pool((per_patch * real[..., None]).transpose(1, 2))  # (3, d, tokens)
    expected_keys = (summed / weight.clamp(min=1e-12)[:, None]).transpose(1, 2)
    # A token over padding only: the mean of all its patches' keys.
    everything = pool(per_patch.transpose(1, 2)).transpose(1, 2)
    expected_keys = torch.where((weight == 0)[..., None], everything, expected_keys)
    torch.testing.assert_close(keys.double(), expected_keys, atol=1e-6, rtol=1e-6)
    assert saliency.shape == (3, adapter.side**2)
    # Tokens over padding only (sub-image 1's last rows and columns) receive no attention,
    # every token with a real patch some.
    assert torch.equal(saliency[1] == 0, weight[1] == 0) and bool((weight[1] == 0).any())


# costs and the real-scale architecture -------------------------------------------------------------


def test_vision_macs_by_hand():
    """The tiny Idefics3: d = 32, MLP 64, 2 layers, 8 x 8 = 64 patches per sub-image,
    s = 2 (16 tokens of 4 x 32 = 128 features), text width 64."""
    config = tiny.tiny_idefics3(layers=1).config
    layer = 4 * 64 * 32 * 32 + 2 * 64 * 64 * 32 + 2 * 64 * 32 * 64  # q, k, v, o; attention; MLP
    projection = 16 * 128 * 64
    assert vision_macs(config, [64, 64, 0]) == 2 * (2 * layer + projection) == 3407872
    # The bench counts the real sub-images of a batch (padding images are dropped).
    from vtprune.bench.flops import patches_per_image as _patches_per_image

    model = tiny.tiny_idefics3(layers=1)
    batch = make_batch(model, [[2, Image(1, 2), 3], [4]])
    assert _patches_per_image(model, batch) == [64, 64, 64]


def test_smolvlm_2b_config():
    config = smolvlm_2b()
    assert config.model_type == "idefics3" and config.scale_factor == 3
    assert (config.vision_config.image_size, config.vision_config.patch_size) == (384, 14)
    assert (config.text_config.hidden_size, config.text_config.num_hidden_layers) == (2048, 24)
    assert smolvlm_2b(layers=2).text_config.num_hidden_layers == 2
    adapter = vtprune.models.adapter_class_for_config(config)
    assert adapter.family == "idefics3"
    with torch.device("meta"):
        import transformers

        model = transformers.Idefics3ForConditionalGeneration._from_config(smolvlm_2b(layers=1))
    assert vtprune.models.adapter_for(model).side == 9  # 81 tokens per 384 px sub-image
    vtprune.validate(config, "fastv", keep=0.25)
    with pytest.raises(ValueError, match="layer must be in"):
        vtprune.validate(config, "fastv", keep=0.25, layer=30)


def test_a_shuffle_that_does_not_fold_the_patch_grid_is_refused():
    model = tiny.tiny_smolvlm(layers=2, scale=3)
    model.config.scale_factor = 4  # 9 x 9 patches cannot fold by 4
    with pytest.raises(ValueError, match="scale_factor=4"):
        vtprune.prune(model, "uniform", keep=0.5)
    assert vtprune.active_handle(model) is None


# geometry against the real image processors ------------------------------------------------------------


@pytest.mark.parametrize("size", [(192, 128), (128, 192), (64, 64), (300, 200)])
@pytest.mark.parametrize("kind", ["idefics3", "smolvlm"])
def test_geometry_matches_the_image_processor(kind, size):
    """Sections are the processor's sub-images (rows x cols) then its global image; for
    images the processor resizes once per sub-image (by nearest neighbour, raw pixels),
    every token's block holds the pixels of its box."""
    import transformers

    from viz.coordinates import RAW, check_patch, coordinate_image

    classes = {"idefics3": transformers.Idefics3ImageProcessor, "smolvlm": transformers.SmolVLMImageProcessor}
    settings = dict(size={"longest_edge": 192}, max_image_size={"longest_edge": 64})
    if size == (64, 64):
        settings["do_resize"] = False
    image_processor = classes[kind](**settings)
    processor = SimpleNamespace(image_processor=image_processor, image_seq_len=16)  # 4 x 4 tokens of 16 px
    image = coordinate_image(*size)
    out = image_processor(image, return_row_col_info=True, **RAW)
    pixels = np.asarray(out["pixel_values"][0])
    rows, cols = out["rows"][0][0], out["cols"][0][0]
    geometry = geometry_for(processor, image)
    assert len(geometry.sections) == rows * cols + 1 == len(pixels)
    assert geometry.sections[-1].name == "global" and all(s.size == 16 for s in geometry.sections)
    if size == (300, 200):
        return  # resized twice before the split: nearest neighbour may shift a pixel
    for section, sub_image in zip(geometry.sections, pixels):
        for index in range(section.size):
            r, c = divmod(index, 4)
            block = sub_image[:, r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16]
            check_patch(block, geometry.box(section.start + index), f"{size} {section.name} token {index}")
    with pytest.raises(ValueError, match="image_seq_len"):
        geometry_for(image_processor, image)
