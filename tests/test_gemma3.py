"""Gemma 3 (SigLIP tower pooled to a fixed grid, image blocks with bidirectional
attention, sliding-window and global decoder layers): the prompt and its layout, the
masks rebuilt over the kept tokens against hand-built ones, keep-all, batches, the
cache, the vision signals against an eager recomputation, the processor's geometry,
MACs, the real-scale config and what is refused.

The tiny model's sliding window (8 tokens) is shorter than an image (16 tokens), so
every prompt here crosses it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import vtprune
from vtprune.models.gemma3.cost import gemma_3_12b, vision_macs
from vtprune.models.gemma3.tiny import BOI_ID, EOI_ID, IMAGE_ID, tiny_gemma3
from vtprune.pruning_methods.uniform import lattice_indices
from vtprune.runtime.forward_inputs import Forward
from vtprune.testing import IMAGE, make_batch

from helpers import full_embeddings, greedy, image_block_masks, kept_sequence_index, logits

PROMPTS = [[5, IMAGE, 7], [3, IMAGE, 2, IMAGE, 4], [6], [IMAGE, 9]]


@pytest.fixture(scope="module")
def model():
    return tiny_gemma3(layers=6)


@pytest.fixture(scope="module")
def model64():
    """float64: a hand-built reference then agrees to ~1e-12."""
    return tiny_gemma3(layers=6, dtype=torch.float64)


@pytest.fixture(autouse=True)
def _clean(model, model64):
    yield
    for m in (model, model64):
        if vtprune.active_handle(m) is not None:
            vtprune.active_handle(m).remove()


def _positions(batch) -> torch.Tensor:
    mask = batch["attention_mask"]
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)


def _reference(model, batch, sample, index, embeds, positions, masks=True) -> torch.Tensor:
    """The language model by hand on the positions ``index`` of prompt ``sample``: their
    embeddings, original positions and (``masks``) the hand-built image-block masks."""
    extra = {"attention_mask": image_block_masks(model, batch, sample, index)} if masks else {}
    with torch.no_grad():
        hidden = model.model.language_model(
            inputs_embeds=embeds[sample, index][None], position_ids=positions[sample : sample + 1, index], **extra
        ).last_hidden_state
    return model.lm_head(hidden)[0]


# the prompt and its layout ----------------------------------------------------------------------


def test_an_image_is_its_fixed_grid_between_markers_typed_one(model):
    batch = make_batch(model, [[2, IMAGE, 3]])
    ids, types = batch["input_ids"][0].tolist(), batch["token_type_ids"][0].tolist()
    start = ids.index(BOI_ID)
    assert ids[start : start + 18] == [BOI_ID] + [IMAGE_ID] * 16 + [EOI_ID]
    assert types == [int(i == IMAGE_ID) for i in ids]
    adapter = vtprune.models.adapter_for(model)
    layout = adapter.layout(Forward(core_inputs=dict(make_batch(model, PROMPTS))))
    assert layout.grids == ((4, 4),) * 4 and layout.counts == (16,) * 4
    assert adapter.image_tokens == 16 and adapter.kernel == 2


# the masks ------------------------------------------------------------------------------------------


def test_hand_built_masks_reproduce_the_unpatched_model_and_the_blocks_matter(model64):
    """The reference's masks are right: on every token of a prompt they give the model's
    own logits; without the image blocks (plain causal masks) the logits differ."""
    model = model64
    batch = make_batch(model, [[3, IMAGE, 2, IMAGE, 4]])
    embeds, positions = full_embeddings(model, batch), _positions(batch)
    index = torch.arange(batch["input_ids"].shape[1])
    expected = logits(model, batch)[0]
    torch.testing.assert_close(_reference(model, batch, 0, index, embeds, positions), expected, atol=1e-10, rtol=1e-10)
    plain = _reference(model, batch, 0, index, embeds, positions, masks=False)
    assert (plain - expected).abs().max() > 1e-3


@pytest.mark.parametrize("method", ["uniform", "random", "divprune"])
def test_pruned_prefill_equals_reference_with_the_kept_image_blocks(model64, method):
    """The pruned prefill equals the language model run by hand on the kept tokens at
    their original positions, each image's kept tokens attending to each other both
    ways, the window counting kept tokens; the markers are text and all kept."""
    model = model64
    batch = make_batch(model, PROMPTS)
    embeds, positions = full_embeddings(model, batch), _positions(batch)
    handle = vtprune.prune(model, method, keep=0.3)
    pruned = logits(model, {**batch, "position_ids": positions})
    ids = batch["input_ids"]
    for sample, prompt in enumerate(PROMPTS):
        index = kept_sequence_index(model, batch, handle.last_keep, sample)
        markers = torch.nonzero((ids[sample] == BOI_ID) | (ids[sample] == EOI_ID)).flatten()
        assert torch.isin(markers, index).all()
        images = sum(part is IMAGE for part in prompt)
        assert int((ids[sample, index] == IMAGE_ID).sum()) == images * vtprune.resolve_budget(0.3, 16)
        expected = _reference(model, batch, sample, index, embeds, positions)
        torch.testing.assert_close(pruned[sample, -len(index):], expected, atol=1e-10, rtol=1e-10)


def test_the_window_counts_kept_tokens(model64):
    """After pruning, the sliding layers' window spans kept tokens, as for a language
    model given only them: the pruned prefill equals that reference, and the window
    matters (the same weights with a window wider than the prompt give other logits)."""
    model = model64
    batch = make_batch(model, [[2, IMAGE, 12]])
    embeds, positions = full_embeddings(model, batch), _positions(batch)
    handle = vtprune.prune(model, "uniform", keep=4)
    pruned = logits(model, {**batch, "position_ids": positions})[0]
    index = kept_sequence_index(model, batch, handle.last_keep, 0)
    expected = _reference(model, batch, 0, index, embeds, positions)
    torch.testing.assert_close(pruned[-len(index):], expected, atol=1e-10, rtol=1e-10)
    # A window over the unpruned distances (kept tokens 12 apart would fall out of an
    # 8-token window) is a different model: the test above can tell them apart.
    wide = tiny_gemma3(layers=6, dtype=torch.float64, sliding_window=64)
    assert (_reference(wide, batch, 0, index, full_embeddings(wide, batch), positions) - expected).abs().max() > 1e-3


# keep-all, budgets, batches, the cache, remove() -------------------------------------------------------


@pytest.mark.parametrize("method", ["uniform", "visionzip"])
def test_keep_all_equals_unpatched(model, method):
    batch = make_batch(model, PROMPTS)
    reference, tokens = logits(model, batch), greedy(model, batch, tokens=6)
    vtprune.prune(model, method, keep=1.0)
    torch.testing.assert_close(logits(model, batch), reference, atol=1e-5, rtol=0)
    assert torch.equal(greedy(model, batch, tokens=6), tokens)


@pytest.mark.parametrize("keep", [0.3, 5])
def test_kept_count_is_the_budget_and_uniform_keeps_the_lattice(model, keep):
    batch = make_batch(model, PROMPTS)
    handle = vtprune.prune(model, "uniform", keep=keep)
    logits(model, batch)
    budget = vtprune.resolve_budget(keep, 16)
    for sample, prompt in enumerate(PROMPTS):
        images = sum(part is IMAGE for part in prompt)
        assert [k.tolist() for k in handle.last_keep[sample]] == [list(lattice_indices(4, 4, budget))] * images
        assert handle.stats.llm_input[sample] == images * budget


@pytest.mark.parametrize("method", ["uniform", "visionzip", "divprune", "cdpruner"])
def test_a_batch_equals_its_prompts_one_by_one(model, method):
    vtprune.prune(model, method, keep=0.3)
    batch = make_batch(model, PROMPTS)
    batched_logits, batched = logits(model, batch)[:, -1], greedy(model, batch, tokens=5)
    for i, prompt in enumerate(PROMPTS):
        single = make_batch(model, [prompt], seeds=[i])
        torch.testing.assert_close(logits(model, single)[0, -1], batched_logits[i], atol=1e-4, rtol=1e-4)
        assert torch.equal(greedy(model, single, tokens=5)[0], batched[i])


@pytest.mark.parametrize("method", ["uniform", "divprune"])
def test_cached_equals_uncached_past_the_window(model, method):
    """Twelve generated tokens: the sliding layers' cache drops kept prompt tokens as
    the window moves on, and still equals recomputation from scratch."""
    batch = make_batch(model, PROMPTS)
    vtprune.prune(model, method, keep=0.3)
    assert torch.equal(greedy(model, batch, tokens=12), greedy(model, batch, tokens=12, use_cache=False))


def test_remove_restores_the_model(model):
    batch = make_batch(model, PROMPTS)
    reference, tokens = logits(model, batch), greedy(model, batch)
    handle = vtprune.prune(model, "visionzip", keep=0.25)
    assert not torch.allclose(logits(model, batch)[:, -1], reference[:, -1])
    handle.remove()
    assert torch.equal(logits(model, batch), reference)
    assert torch.equal(greedy(model, batch), tokens)
    assert not model.model.vision_tower._forward_pre_hooks and not model.model.language_model._forward_pre_hooks


def test_generate_with_encoded_images_keeps_what_the_forward_keeps(model):
    """generate() encodes the images before the prefill (mm_encoder_outputs): the
    layout counts them from the encoded features, and the selection is the forward's."""
    batch = make_batch(model, [[2, IMAGE, 3, IMAGE, 1]])
    handle = vtprune.prune(model, "visionzip", keep=0.4)
    logits(model, batch)
    forward_keep = [k.tolist() for k in handle.last_keep[0]]
    greedy(model, batch, tokens=2)
    assert [k.tolist() for k in handle.last_keep[0]] == forward_keep
    assert [len(k) for k in forward_keep] == [vtprune.resolve_budget(0.4, 16)] * 2


# the vision signals --------------------------------------------------------------------------------------


def _pooled(values: torch.Tensor) -> torch.Tensor:
    """(16, ...) mean of per-patch ``values`` (an 8 x 8 patch grid) over 2 x 2 blocks."""
    grid = values.view(8, 8, -1)
    return torch.stack([grid[2 * i : 2 * i + 2, 2 * j : 2 * j + 2].reshape(4, -1).mean(0) for i in range(4) for j in range(4)])


def test_vision_signals_equal_an_eager_recomputation():
    """Saliency: the mean attention each patch receives in the tower's last layer
    (eager attention probabilities, heads averaged), averaged over each token's 2 x 2
    patches as the projector pools them; keys: that layer's keys, heads averaged."""
    sdpa, eager = tiny_gemma3(layers=2), tiny_gemma3(layers=2, attn="eager")
    batch = make_batch(sdpa, [[3, IMAGE, 2], [IMAGE, 4, IMAGE]])
    handle = vtprune.prune(sdpa, "visionzip", keep=0.5)
    with torch.no_grad():
        sdpa(**batch)
    session = handle._session
    call = session._vision_calls[-1]
    got = {name: session.adapter.vision_signal(name, call) for name in ("vision_saliency", "vision_keys")}
    handle.remove()
    from vtprune.compat import vision_model

    layer = vision_model(eager.model.vision_tower).encoder.layers[-1]
    seen = []
    hook = layer.register_forward_pre_hook(lambda m, args: seen.append(args[0]) and None)
    with torch.no_grad():
        out = eager.model.vision_tower(batch["pixel_values"], output_attentions=True)
        keys = layer.self_attn.k_proj(layer.layer_norm1(seen[0]))
    hook.remove()
    heads = layer.self_attn.num_heads
    assert got["vision_saliency"].shape == (3, 16) and got["vision_keys"].shape == (3, 16, keys.shape[-1] // heads)
    for n in range(3):
        received = out.attentions[-1][n].mean(0).mean(0)  # (patches,): heads, then queries averaged
        torch.testing.assert_close(got["vision_saliency"][n], _pooled(received)[:, 0], atol=1e-6, rtol=0)
        per_head = keys[n].view(64, heads, -1).mean(1)
        torch.testing.assert_close(got["vision_keys"][n], _pooled(per_head), atol=1e-5, rtol=0)
    assert got["vision_saliency"][0].std() > 0


# what is refused -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["fastv", "pdrop", "sparsevlm", "coast"])
def test_in_llm_stages_are_refused_at_prune_with_the_reason(model, method):
    with pytest.raises(ValueError, match="sliding-window and global decoder layers use different RoPE tables") as info:
        vtprune.prune(model, method, keep=0.3)
    assert "\n" not in str(info.value)
    assert vtprune.active_handle(model) is None
    assert not any(layer._forward_pre_hooks or layer._forward_hooks for layer in model.model.language_model.layers)
    assert not model.model.language_model._forward_pre_hooks


def test_a_prepared_mask_dict_from_the_caller_is_refused(model):
    """A caller that builds the mask dict itself (a static cache) gives no 2-D mask to
    compact: one clear error, as for the other families."""
    batch = make_batch(model, [[2, IMAGE, 3]])
    vtprune.prune(model, "uniform", keep=0.3)
    masks = {"full_attention": None, "sliding_attention": None}
    with pytest.raises(ValueError, match="2-D attention_mask"):
        with torch.no_grad():
            model(**{**batch, "attention_mask": masks})


# geometry --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(100, 50), (64, 64), (40, 130), (300, 170), (9, 9)])
def test_geometry_matches_the_processors_resize(size):
    """Each token's box holds exactly the pixels of its 16 x 16 cell of the processed
    64 x 64 image (a 16-token grid: 4 tokens per side)."""
    from transformers import Gemma3ImageProcessor

    from vtprune.viz import geometry_for

    from viz.coordinates import RAW, check_patch, coordinate_image

    image_processor = Gemma3ImageProcessor(size={"height": 64, "width": 64})
    processor = SimpleNamespace(image_processor=image_processor, image_seq_length=16)
    image = coordinate_image(*size)
    pixels = image_processor(image, **RAW)["pixel_values"][0]
    geometry = geometry_for(processor, image)
    assert pixels.shape[-2:] == (64, 64)
    assert geometry.kind == "gemma3" and geometry.num_tokens == 16
    for index in range(16):
        row, col = divmod(index, 4)
        check_patch(pixels[:, row * 16 : (row + 1) * 16, col * 16 : (col + 1) * 16], geometry.box(index), f"{size} token {index}")


def test_geometry_refuses_pan_and_scan_and_a_bare_image_processor():
    from transformers import Gemma3ImageProcessor

    from vtprune.viz import geometry_for

    bare = Gemma3ImageProcessor(size={"height": 64, "width": 64})
    with pytest.raises(ValueError, match="image_seq_length"):
        geometry_for(bare, (40, 40))
    panned = Gemma3ImageProcessor(size={"height": 64, "width": 64}, do_pan_and_scan=True)
    with pytest.raises(ValueError, match="do_pan_and_scan"):
        geometry_for(SimpleNamespace(image_processor=panned, image_seq_length=16), (40, 40))


# cost and the real-scale architecture ------------------------------------------------------------------------


def test_real_scale_config_and_vision_macs():
    config = gemma_3_12b()
    text, vision = config.text_config, config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (3840, 48, 16, 8)
    assert (text.head_dim, text.intermediate_size, text.vocab_size, text.sliding_window) == (256, 15360, 262208, 1024)
    assert text.layer_types.count("full_attention") == 8 and text.layer_types[5] == "full_attention"
    assert (vision.hidden_size, vision.num_hidden_layers, vision.patch_size, vision.image_size) == (1152, 27, 14, 896)
    assert (config.mm_tokens_per_image, config.image_token_id) == (256, 262144)
    assert gemma_3_12b(layers=3).text_config.num_hidden_layers == 3
    # 64 x 64 patches through 27 SigLIP layers (no CLS), then 256 tokens projected.
    n, d, m = 64 * 64, 1152, 4304
    layer = 2 * n * d * d + 2 * n * d * d + 2 * n * n * d + 2 * n * d * m
    assert vision_macs(config, [n]) == 27 * layer + 256 * d * 3840
    assert vision_macs(config, [n, 0, n]) == 2 * vision_macs(config, [n])


def test_bench_counts_each_images_patches(model):
    from vtprune.bench.flops import patches_per_image as bench_patches

    batch = make_batch(model, PROMPTS)
    assert bench_patches(model, batch) == [64] * 4
