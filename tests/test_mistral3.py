"""Mistral 3 (Pixtral tower): token grids of any size with a break token after each row,
keep-all and hand-built references with the break and end tokens kept at their
original 1-D positions, batches of images of different sizes, the vision signals
against an eager recomputation, the processor's geometry, MACs, the real-scale config
and what is refused."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import vtprune
from vtprune.models.mistral3.cost import mistral_small_3_1_24b, patches_per_image, vision_macs
from vtprune.models.mistral3.tiny import IMAGE_BREAK_ID, IMAGE_END_ID, IMAGE_ID, tiny_mistral3
from vtprune.pruning_methods.uniform import lattice_indices
from vtprune.runtime.forward_inputs import Forward
from vtprune.testing import Image, make_batch

from helpers import greedy, kept_sequence_index, logits

# A wide, a tall, a square and a one-row image, in LLM tokens (8 x 8 pixels each).
WIDE, TALL, SQUARE, STRIP = Image(3, 7), Image(6, 2), Image(4, 4), Image(1, 5)
PROMPTS = [[5, WIDE, 7], [3, TALL, 2, SQUARE, 4], [STRIP, 6], [9]]


@pytest.fixture(scope="module")
def model():
    return tiny_mistral3(layers=4)


@pytest.fixture(scope="module")
def model64():
    """float64: a hand-built reference then agrees to ~1e-12."""
    return tiny_mistral3(layers=4, dtype=torch.float64)


@pytest.fixture(autouse=True)
def _clean(model, model64):
    yield
    for m in (model, model64):
        if vtprune.active_handle(m) is not None:
            vtprune.active_handle(m).remove()


def _images(prompt) -> list[Image]:
    return [part for part in prompt if isinstance(part, Image)]


# the prompt and its layout ---------------------------------------------------------------------


def test_each_row_ends_in_a_break_and_the_image_in_an_end_token(model):
    batch = make_batch(model, [[2, WIDE, 3]])
    ids = batch["input_ids"][0].tolist()
    start = ids.index(IMAGE_ID)
    row = [IMAGE_ID] * 7
    assert ids[start : start + 24] == row + [IMAGE_BREAK_ID] + row + [IMAGE_BREAK_ID] + row + [IMAGE_END_ID]
    assert batch["image_sizes"].tolist() == [[24, 56]]
    adapter = vtprune.models.adapter_for(model)
    layout = adapter.layout(Forward(core_inputs=dict(make_batch(model, PROMPTS))))
    assert layout.grids == ((3, 7), (6, 2), (4, 4), (1, 5)) and layout.counts == (21, 12, 16, 5)


# keep-all, budgets, a hand-built reference ----------------------------------------------------------


@pytest.mark.parametrize("method", ["uniform", "fastv"])
def test_keep_all_equals_unpatched(model, method):
    batch = make_batch(model, PROMPTS)
    reference, tokens = logits(model, batch), greedy(model, batch, tokens=6)
    vtprune.prune(model, method, keep=1.0)
    torch.testing.assert_close(logits(model, batch), reference, atol=1e-5, rtol=0)
    assert torch.equal(greedy(model, batch, tokens=6), tokens)


@pytest.mark.parametrize("keep", [0.3, 7])
def test_kept_count_is_the_budget_and_uniform_keeps_each_grids_lattice(model, keep):
    batch = make_batch(model, PROMPTS)
    handle = vtprune.prune(model, "uniform", keep=keep)
    logits(model, batch)
    for sample, prompt in enumerate(PROMPTS):
        total = 0
        for kept, image in zip(handle.last_keep[sample], _images(prompt), strict=True):
            budget = vtprune.resolve_budget(keep, image.rows * image.cols)
            assert kept.tolist() == list(lattice_indices(image.rows, image.cols, budget))
            total += budget
        assert handle.stats.llm_input[sample] == total
    assert handle.stats.before == (21, 28, 5, 0)


@pytest.mark.parametrize("method", ["uniform", "random"])
def test_pruned_prefill_equals_reference_with_the_break_tokens_kept(model64, method):
    """The language model run by hand on the kept tokens (each image's features computed
    from that image alone, written at its [IMG] placeholders; every break and end token
    kept) at their original 1-D positions gives the pruned prefill's logits."""
    model = model64
    batch = make_batch(model, PROMPTS)
    mask = batch["attention_mask"]
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    sizes = batch["image_sizes"].tolist()
    with torch.no_grad():
        features = [
            model.model.get_image_features(
                pixel_values=pixels[None, :, :h, :w], image_sizes=torch.tensor([[h, w]]), vision_feature_layer=-1
            ).pooler_output[0]
            for pixels, (h, w) in zip(batch["pixel_values"], sizes)
        ]
    ids = batch["input_ids"]
    embeds = model.model.get_input_embeddings()(ids).clone()
    embeds[ids == IMAGE_ID] = torch.cat(features)
    handle = vtprune.prune(model, method, keep=0.3)
    # Explicit positions, as generate passes them (a plain forward of a left-padded batch
    # would count the padding).
    pruned = logits(model, {**batch, "position_ids": positions})
    for sample in range(len(PROMPTS)):
        index = kept_sequence_index(model, batch, handle.last_keep, sample)
        markers = torch.nonzero((ids[sample] == IMAGE_BREAK_ID) | (ids[sample] == IMAGE_END_ID)).flatten()
        assert torch.isin(markers, index).all()  # the row breaks and end tokens are text: all kept
        images = _images(PROMPTS[sample])
        assert int((ids[sample, index] == IMAGE_ID).sum()) == sum(
            vtprune.resolve_budget(0.3, i.rows * i.cols) for i in images
        )
        with torch.no_grad():
            hidden = model.model.language_model(
                inputs_embeds=embeds[sample, index][None], position_ids=positions[sample : sample + 1, index]
            ).last_hidden_state
        torch.testing.assert_close(pruned[sample, -len(index):], model.lm_head(hidden)[0], atol=1e-10, rtol=1e-10)


# batches, the cache, remove() ---------------------------------------------------------------------


@pytest.mark.parametrize("method", ["uniform", "visionzip", "divprune", "fastv"])
def test_images_of_different_sizes_in_one_batch_equal_singles(model, method):
    vtprune.prune(model, method, keep=0.3)
    batch = make_batch(model, PROMPTS)
    batched_logits, batched = logits(model, batch)[:, -1], greedy(model, batch, tokens=5)
    for i, prompt in enumerate(PROMPTS):
        single = make_batch(model, [prompt], seeds=[i])
        torch.testing.assert_close(logits(model, single)[0, -1], batched_logits[i], atol=1e-4, rtol=1e-4)
        assert torch.equal(greedy(model, single, tokens=5)[0], batched[i])


@pytest.mark.parametrize("method", ["uniform", "fastv"])
def test_cached_equals_uncached(model, method):
    batch = make_batch(model, PROMPTS)
    vtprune.prune(model, method, keep=0.3)
    assert torch.equal(greedy(model, batch, tokens=6), greedy(model, batch, tokens=6, use_cache=False))


def test_remove_restores_the_model(model):
    batch = make_batch(model, PROMPTS)
    reference, tokens = logits(model, batch), greedy(model, batch)
    handle = vtprune.prune(model, "visionzip", keep=0.25)
    assert not torch.equal(greedy(model, batch), tokens) or not torch.allclose(logits(model, batch)[:, -1], reference[:, -1])
    handle.remove()
    assert torch.equal(logits(model, batch), reference)
    assert torch.equal(greedy(model, batch), tokens)
    assert not model.model.vision_tower._forward_pre_hooks and not model.model.language_model._forward_pre_hooks


# the vision signals ---------------------------------------------------------------------------------


def _merged(values: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """(rows * cols, ...) mean of per-patch ``values`` (2 rows x 2 cols of patches per
    token, the image's patch grid 2 * rows x 2 * cols in raster order)."""
    grid = values.view(2 * rows, 2 * cols, -1)
    return torch.stack([grid[2 * i : 2 * i + 2, 2 * j : 2 * j + 2].reshape(4, -1).mean(0) for i in range(rows) for j in range(cols)])


@pytest.mark.parametrize("feature_layer", [-1, -2])
def test_vision_signals_equal_an_eager_recomputation(feature_layer):
    """Saliency: the mean attention each patch receives from the patches of its own image
    (eager attention probabilities of the feature layer, heads averaged), averaged over
    each token's 2x2 patches; keys: that layer's keys before RoPE, heads averaged."""
    sdpa = tiny_mistral3(layers=2, feature_layer=feature_layer)
    eager = tiny_mistral3(layers=2, feature_layer=feature_layer, attn="eager")
    images = [WIDE, TALL, STRIP]
    batch = make_batch(sdpa, [[3, WIDE, 2], [TALL, 4, STRIP]])
    handle = vtprune.prune(sdpa, "visionzip", keep=0.5)
    with torch.no_grad():
        sdpa(**batch)
    session = handle._session
    call = session._vision_calls[-1]
    got = {name: session.adapter.vision_signal(name, call) for name in ("vision_saliency", "vision_keys")}
    handle.remove()
    tower = eager.model.vision_tower
    index = 1 if feature_layer == -1 else 0
    layer = tower.transformer.layers[index]
    seen = []
    hook = layer.register_forward_pre_hook(lambda m, args: seen.append(args[0]) and None)
    with torch.no_grad():
        out = tower(batch["pixel_values"], image_sizes=batch["image_sizes"], output_attentions=True)
        keys = layer.attention.k_proj(layer.attention_norm(seen[0]))[0]
    hook.remove()
    attention = out.attentions[index][0].mean(0)  # (patches, patches), heads averaged
    keys = keys.view(keys.shape[0], layer.attention.num_heads, -1).mean(1)
    assert got["vision_saliency"].shape == (3, 21) and got["vision_keys"].shape == (3, 21, keys.shape[-1])
    start = 0
    for n, image in enumerate(images):
        patches = 4 * image.rows * image.cols
        block = attention[start : start + patches, start : start + patches]
        torch.testing.assert_close(block.sum(1), torch.ones(patches))  # no attention across images
        received = block.mean(0)
        tokens = image.rows * image.cols
        torch.testing.assert_close(got["vision_saliency"][n, :tokens], _merged(received, image.rows, image.cols)[:, 0], atol=1e-6, rtol=0)
        torch.testing.assert_close(got["vision_keys"][n, :tokens], _merged(keys[start : start + patches], image.rows, image.cols), atol=1e-5, rtol=0)
        start += patches
    assert got["vision_saliency"][0].std() > 0


def test_generate_reads_the_grids_of_the_encoded_images(model):
    """generate() encodes the images before the prefill; the layout then comes from the
    tower call's grids, and a pruned generation equals the plain forward's selection."""
    batch = make_batch(model, [[2, TALL, 3, WIDE, 1]])
    handle = vtprune.prune(model, "visionzip", keep=0.4)
    logits(model, batch)
    forward_keep = [k.tolist() for k in handle.last_keep[0]]
    greedy(model, batch, tokens=2)
    assert [k.tolist() for k in handle.last_keep[0]] == forward_keep
    assert [len(k) for k in forward_keep] == [vtprune.resolve_budget(0.4, 12), vtprune.resolve_budget(0.4, 21)]


# what is refused ------------------------------------------------------------------------------------


def test_in_llm_stages_on_a_sliding_window_decoder_are_refused_at_prune():
    model = tiny_mistral3(layers=4, sliding_window=16)
    with pytest.raises(ValueError, match="sliding window of 16 tokens") as info:
        vtprune.prune(model, "fastv", keep=0.3)
    assert "\n" not in str(info.value)
    assert vtprune.active_handle(model) is None
    assert not any(layer._forward_pre_hooks or layer._forward_hooks for layer in model.model.language_model.layers)


def test_pre_llm_pruning_on_a_sliding_window_decoder_equals_its_reference():
    """Before the LLM the window spans the kept tokens, as for the language model given
    them: the pruned prefill equals the language model on the kept embeddings."""
    model = tiny_mistral3(layers=3, dtype=torch.float64, sliding_window=6)
    batch = make_batch(model, [[5, WIDE, 7]])
    with torch.no_grad():
        embeds = model.model.get_input_embeddings()(batch["input_ids"]).clone()
        features = model.model.get_image_features(
            pixel_values=batch["pixel_values"], image_sizes=batch["image_sizes"], vision_feature_layer=-1
        ).pooler_output
        embeds[batch["input_ids"] == IMAGE_ID] = torch.cat(features)
    handle = vtprune.prune(model, "uniform", keep=0.3)
    pruned = logits(model, batch)
    index = kept_sequence_index(model, batch, handle.last_keep, 0)
    with torch.no_grad():
        hidden = model.model.language_model(inputs_embeds=embeds[0, index][None], position_ids=index[None]).last_hidden_state
    torch.testing.assert_close(pruned[0], model.lm_head(hidden)[0], atol=1e-10, rtol=1e-10)
    assert torch.equal(greedy(model, batch, tokens=8), greedy(model, batch, tokens=8, use_cache=False))
    handle.remove()


def test_vision_signals_of_several_feature_layers_are_refused_at_prune():
    model = tiny_mistral3(layers=2, feature_layer=[-1, -2])
    with pytest.raises(ValueError, match="concatenation of layers"):
        vtprune.prune(model, "visionzip", keep=0.3)
    assert vtprune.active_handle(model) is None
    vtprune.prune(model, "uniform", keep=0.3).remove()  # methods without vision signals run


# geometry ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(100, 50), (56, 56), (40, 130), (300, 170), (9, 9)])
def test_geometry_matches_the_processors_resize(size):
    """Each token's box holds exactly the pixels of its 8 x 8 cell of the processed
    image (patch 4, merge 2; longest edge 64, so larger images are scaled down)."""
    from transformers import PixtralImageProcessor

    from vtprune.viz import geometry_for

    from viz.coordinates import RAW, check_patch, coordinate_image

    image_processor = PixtralImageProcessor(size={"longest_edge": 64}, patch_size=8)
    processor = SimpleNamespace(image_processor=image_processor, patch_size=4, spatial_merge_size=2)
    image = coordinate_image(*size)
    pixels = image_processor(image, patch_size=8, **RAW)["pixel_values"][0]  # what PixtralProcessor asks for
    geometry = geometry_for(processor, image)
    rows, cols = pixels.shape[-2] // 8, pixels.shape[-1] // 8
    assert geometry.kind == "mistral3" and geometry.num_tokens == rows * cols
    for index in range(geometry.num_tokens):
        row, col = divmod(index, cols)
        check_patch(pixels[:, row * 8 : (row + 1) * 8, col * 8 : (col + 1) * 8], geometry.box(index), f"{size} token {index}")


def test_geometry_needs_the_processors_merge():
    from transformers import PixtralImageProcessor

    from vtprune.viz import geometry_for

    with pytest.raises(ValueError, match="spatial_merge_size"):
        geometry_for(PixtralImageProcessor(size={"longest_edge": 64}, patch_size=8), (40, 40), patch_size=4)


# cost and the real-scale architecture ----------------------------------------------------------------


def test_real_scale_config_and_vision_macs():
    config = mistral_small_3_1_24b()
    text, vision = config.text_config, config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (5120, 40, 32, 8)
    assert (text.head_dim, text.intermediate_size, text.vocab_size, text.sliding_window) == (128, 32768, 131072, None)
    assert (vision.hidden_size, vision.num_hidden_layers, vision.patch_size, vision.image_size) == (1024, 24, 14, 1540)
    assert (config.image_token_id, config.spatial_merge_size, config.vision_feature_layer) == (10, 2, -1)
    assert mistral_small_3_1_24b(layers=3).text_config.num_hidden_layers == 3
    # A 448 x 644 image: 32 x 46 patches through 24 Pixtral layers (four attention
    # matrices, gated MLP), then 16 x 23 tokens through the merger and two linear layers.
    n, d, m = 32 * 46, 1024, 4096
    layer = 2 * n * d * d + 2 * n * d * d + 2 * n * n * d + 3 * n * d * m
    tokens = 16 * 23
    projector = tokens * (4 * d * d + d * 5120 + 5120 * 5120)
    assert vision_macs(config, [n]) == 24 * layer + projector
    assert vision_macs(config, [n, 0, n]) == 2 * vision_macs(config, [n])
    model = SimpleNamespace(config=config)
    assert patches_per_image(model, {"image_sizes": torch.tensor([[448, 644], [28, 56]])}) == [n, 2 * 4]


def test_bench_counts_each_images_own_patches(model):
    from vtprune.bench.flops import patches_per_image as bench_patches

    batch = make_batch(model, PROMPTS)
    assert bench_patches(model, batch) == [4 * i.rows * i.cols for p in PROMPTS for i in _images(p)]


def test_the_real_scale_architecture_builds_for_bench():
    from vtprune.bench.architectures import build

    with torch.device("meta"):
        built = build("mistral-small-3.1-24b", layers=1, device="meta")
    assert type(built).__name__ == "Mistral3ForConditionalGeneration"
    assert built.config.text_config.num_hidden_layers == 1 and built.config.text_config.hidden_size == 5120
