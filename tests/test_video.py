"""Video pruning on Qwen2-VL, Qwen2.5-VL and Qwen3-VL: a video is one unit whose frames
(temporal patches) are pruned one by one before the LLM, sharing the video's budget.

Keep-all equals the unpatched model, a pruned prefill equals the language model run by
hand on the kept embeddings at their original M-RoPE ids (and, on Qwen3-VL, the kept
tokens' DeepStack rows), a batch equals its prompts one by one, cached decoding equals
uncached, ``remove()`` restores, the kept counts are the per-video budgets, every
method runs on a video prompt, images and videos mix, and the novelty allocation gives
what hand-built frames say it must."""

from __future__ import annotations

import warnings

import pytest
import torch

import vtprune
from vtprune.models.qwen2_vl.tiny import tiny_qwen2_vl
from vtprune.models.qwen3_vl.tiny import tiny_qwen3_vl
from vtprune.testing import Image, Video, make_batch

import probes
from helpers import greedy, logits, refused_before_deepstack
from test_methods_on_models import expected_counts, sparsevlm_counts

BUILDERS = {
    "qwen2_vl": lambda **kw: tiny_qwen2_vl(version="2", **kw),
    "qwen2_5_vl": lambda **kw: tiny_qwen2_vl(version="2.5", **kw),
    "qwen3_vl": lambda **kw: tiny_qwen3_vl(deepstack=(0, 1), **kw),
}
# A video alone; an image before a video of another size (and time spacing); a video
# before an image, then text; text only.
PROMPTS = [
    [4, Video(3, 2, 3), 5],
    [2, Image(2, 2), 3, Video(2, 4, 2, seconds=0.5), 4],
    [3, Video(4, 3, 2, seconds=2.0), 2, Image(3, 3), 3],
    [7],
]


@pytest.fixture(scope="module", params=list(BUILDERS))
def name(request):
    return request.param


@pytest.fixture(scope="module")
def model(name):
    return BUILDERS[name](layers=4, dtype=torch.float64)


@pytest.fixture(autouse=True)
def _clean(model):
    yield
    if vtprune.active_handle(model) is not None:
        vtprune.active_handle(model).remove()


@pytest.fixture(scope="module")
def reference(model):
    batch = make_batch(model, PROMPTS)
    return batch, logits(model, batch), greedy(model, batch, tokens=4)


# hand-built references ---------------------------------------------------------------------


def _tokens(part) -> int:
    return part.frames * part.rows * part.cols if isinstance(part, Video) else part.rows * part.cols


def units_of(model, batch, prompts, sample):
    """(kind, item in the batch's items of that kind, sequence positions of its tokens) of
    every image and video of prompt ``sample``, in order of appearance."""
    ids, config = batch["input_ids"][sample], model.config
    where = {
        "image": torch.nonzero(ids == config.image_token_id).flatten(),
        "video": torch.nonzero(ids == config.video_token_id).flatten(),
    }
    before = {
        kind: sum(1 for p in prompts[:sample] for part in p if not isinstance(part, int) and (isinstance(part, Video) == (kind == "video")))
        for kind in where
    }
    taken, units = {"image": 0, "video": 0}, []
    for part in prompts[sample]:
        if isinstance(part, int):
            continue
        kind = "video" if isinstance(part, Video) else "image"
        n = _tokens(part)
        units.append((kind, before[kind], where[kind][taken[kind] : taken[kind] + n]))
        taken[kind] += n
        before[kind] += 1
    return units


def encoded(model, batch):
    """The model's own features (and DeepStack features) of each image and video."""
    core, out = model.model, {}
    with torch.no_grad():
        if "pixel_values" in batch:
            out["image"] = core.get_image_features(batch["pixel_values"], batch["image_grid_thw"], return_dict=True)
        if "pixel_values_videos" in batch:
            out["video"] = core.get_video_features(batch["pixel_values_videos"], batch["video_grid_thw"], return_dict=True)
    return out


def full_embeddings(model, batch):
    embeds = model.model.get_input_embeddings()(batch["input_ids"]).clone()
    config = model.config
    for kind, token in (("image", config.image_token_id), ("video", config.video_token_id)):
        if kind in (feats := encoded(model, batch)):
            embeds[batch["input_ids"] == token] = torch.cat(feats[kind].pooler_output).to(embeds.dtype)
    return embeds


def full_positions(model, batch):
    """The model's own M-RoPE ids of the unpruned prompts (videos' temporal ids included)."""
    extra = {"second_per_grid_ts": batch["second_per_grid_ts"]} if "second_per_grid_ts" in batch else {}
    positions, _ = model.model.get_rope_index(
        batch["input_ids"], mm_token_type_ids=batch["mm_token_type_ids"], image_grid_thw=batch.get("image_grid_thw"),
        video_grid_thw=batch.get("video_grid_thw"), attention_mask=batch["attention_mask"], **extra,
    )
    return positions


def kept_index(model, batch, prompts, last_keep, sample):
    """Sequence positions of prompt ``sample`` that survive: its real text tokens and the
    kept tokens of each image and video."""
    keep = batch["attention_mask"][sample].bool().clone()
    for (_, _, slots), kept in zip(units_of(model, batch, prompts, sample), last_keep[sample]):
        dropped = torch.ones(len(slots), dtype=torch.bool)
        dropped[kept] = False
        keep[slots[dropped]] = False
    return torch.nonzero(keep).flatten()


def deepstack_inputs(model, batch, prompts, sample, index):
    """Qwen3-VL's DeepStack rows of the kept visual tokens, in sequence order, and their mask."""
    if not getattr(model.config.vision_config, "deepstack_visual_indexes", None):
        return {}
    feats = encoded(model, batch)
    rows = {}  # sequence position -> one row per DeepStack layer
    for kind, item, slots in units_of(model, batch, prompts, sample):
        per_layer = [layer[item] for layer in feats[kind].deepstack_features]
        for j, position in enumerate(slots.tolist()):
            rows[position] = [layer[j] for layer in per_layer]
    kept = [p for p in index.tolist() if p in rows]
    if not kept:
        return {}
    layers = len(next(iter(rows.values())))
    return {
        "visual_pos_masks": torch.isin(index, torch.tensor(kept))[None],
        "deepstack_visual_embeds": [torch.stack([rows[p][i] for p in kept]) for i in range(layers)],
    }


# keep-all, references, batches, caches ----------------------------------------------------------


@pytest.mark.parametrize("method", ["uniform", "visionzip", "fastv"])
def test_keep_all_is_the_unpatched_model(model, reference, method):
    batch, reference_logits, reference_tokens = reference
    if refused_before_deepstack(model, method, keep=1.0):
        return
    handle = vtprune.prune(model, method, keep=1.0)
    torch.testing.assert_close(logits(model, batch), reference_logits, atol=1e-10, rtol=0)
    assert torch.equal(greedy(model, batch, tokens=4), reference_tokens)
    assert handle.stats.llm_input == handle.stats.before
    handle.remove()


@pytest.mark.parametrize("method", ["uniform", "divprune", "random"])
def test_pruned_prefill_equals_language_model_on_kept_tokens(model, method):
    """Kept embeddings at their original (t, h, w) ids (and DeepStack rows): the same
    logits as the pruned forward; the videos' ids are the model's own."""
    batch = make_batch(model, PROMPTS)
    embeds, positions = full_embeddings(model, batch), full_positions(model, batch)
    handle = vtprune.prune(model, method, keep=0.4)
    pruned = logits(model, batch)
    assert 0 < handle.stats.total_llm_input < handle.stats.total_before
    lm = model.model.language_model
    for sample in range(len(PROMPTS)):
        index = kept_index(model, batch, PROMPTS, handle.last_keep, sample)
        extra = deepstack_inputs(model, batch, PROMPTS, sample, index)
        with torch.no_grad():
            hidden = lm(
                inputs_embeds=embeds[sample, index][None], position_ids=positions[:, sample : sample + 1, index], **extra
            ).last_hidden_state
        torch.testing.assert_close(pruned[sample, -len(index) :], model.lm_head(hidden)[0], atol=1e-10, rtol=1e-10)
    # A video's temporal ids: one per frame, increasing (the model's own, kept as they are).
    (_, _, slots), = units_of(model, batch, PROMPTS, 0)
    frames = positions[0, 0, slots].view(3, 6)
    assert torch.equal(frames, frames[:, :1].expand(3, 6)) and bool((frames[1:, 0] > frames[:-1, 0]).all())


def test_batch_equals_singles_cached_equals_uncached_and_remove_restores(model, reference):
    batch, reference_logits, reference_tokens = reference
    handle = vtprune.prune(model, "uniform", keep=0.3)
    tokens = greedy(model, batch, tokens=4)
    pruned = logits(model, batch)
    assert torch.equal(greedy(model, batch, tokens=4, use_cache=False), tokens)
    for i, prompt in enumerate(PROMPTS):
        single = make_batch(model, [prompt], seeds=[i])
        torch.testing.assert_close(logits(model, single)[0, -1], pruned[i, -1], atol=1e-10, rtol=0)
        assert torch.equal(greedy(model, single, tokens=4)[0], tokens[i])
    handle.remove()
    assert torch.equal(logits(model, batch), reference_logits)
    assert torch.equal(greedy(model, batch, tokens=4), reference_tokens)


def test_pre_llm_stages_select_in_each_frame_with_its_own_signals(model, monkeypatch):
    """Before the LLM a stage sees one frame (temporal patch) per row: its grid, its
    tokens' indices in the frame, the vision tower's attention within that frame (one
    attention segment per frame: each frame's per-token saliency sums to 1 / 4, the
    mean over its 2x2 merged patches of a distribution over the frame), and as its
    instruction the text after the whole video."""
    import vtprune.runtime.stage_runner as runner

    seen = []
    original = runner.select_sorted

    def recording(stage, signals, budget, config, num_images, num_tokens):
        seen.append((signals.grid, signals.token_index, signals["vision_saliency"], signals["text_mask"]))
        return original(stage, signals, budget, config, num_images, num_tokens)

    monkeypatch.setattr(runner, "select_sorted", recording)
    batch = make_batch(model, PROMPTS[:1])  # 4 text, a video of 3 frames of 2 x 3, 5 text
    vtprune.prune(model, "sppruner", keep=0.5)
    logits(model, batch)
    ((grid, token_index, saliency, text_mask),) = seen
    assert grid == (2, 3)
    assert torch.equal(token_index, torch.arange(6).expand(3, 6))
    torch.testing.assert_close(saliency.sum(1), torch.full((3,), 0.25, dtype=saliency.dtype), atol=1e-6, rtol=0)
    assert text_mask.sum(1).tolist() == [6, 6, 6]  # the vision end marker and 5 text tokens


# budgets -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [5, 0.25])
def test_kept_counts_are_the_per_video_and_per_image_budgets(model, keep):
    """``keep`` applies per image and per video; a video's frames share its budget in
    proportion to their tokens (equal frames: equal shares, the remainder first)."""
    batch = make_batch(model, PROMPTS)
    handle = vtprune.prune(model, "uniform", keep=keep)
    logits(model, batch)
    config = handle.config
    for sample, prompt in enumerate(PROMPTS):
        parts = [p for p in prompt if not isinstance(p, int)]
        kept = handle.last_keep[sample]
        assert [len(k) for k in kept] == [config.budget(_tokens(p)) for p in parts]
        assert handle.stats.llm_input[sample] == sum(config.budget(_tokens(p)) for p in parts)
        for part, k in zip(parts, kept):
            if isinstance(part, Video):
                frame = part.rows * part.cols
                per_frame = torch.bincount(k // frame, minlength=part.frames).tolist()
                budget = config.budget(_tokens(part))
                assert per_frame == [budget // part.frames + (f < budget % part.frames) for f in range(part.frames)]


def test_videos_keep_leaves_videos_whole(model):
    batch = make_batch(model, PROMPTS)
    handle = vtprune.prune(model, "uniform", keep=0.25, videos="keep")
    logits(model, batch)
    images = [[p for p in prompt if isinstance(p, Image)] for prompt in PROMPTS]
    assert [[len(k) for k in kept] for kept in handle.last_keep] == [[handle.config.budget(_tokens(p)) for p in ps] for ps in images]
    # The videos reach the language model whole: each prompt loses only image tokens.
    seen = []
    hook = model.model.language_model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["attention_mask"]), with_kwargs=True)
    logits(model, batch)
    hook.remove()
    removed = [sum(_tokens(p) - handle.config.budget(_tokens(p)) for p in ps) for ps in images]
    assert (batch["attention_mask"].sum(1) - seen[0].sum(1)).tolist() == removed
    assert handle.stats.total_before == sum(_tokens(p) for ps in images for p in ps)


def test_in_llm_stages_see_the_whole_video(model):
    """An in-LLM stage selects over all of a video's tokens at once (one grid)."""
    if refused_before_deepstack(model, "probe"):
        model_layers = model.config.text_config.num_hidden_layers
        config = probes.ProbeConfig(keep=0.3, layers=(model_layers - 1,))
    else:
        config = probes.ProbeConfig(keep=0.3)
    batch = make_batch(model, PROMPTS[:1])
    probes.SEEN.clear()
    handle = vtprune.prune(model, config)
    logits(model, batch)
    (seen,) = probes.SEEN
    assert seen["token_index"].shape == (1, 18)  # 3 frames of 2 x 3
    assert [len(k) for k in handle.last_keep[0]] == [config.budget(18)]


# the novelty allocation ---------------------------------------------------------------------------


def test_novelty_allocation_end_to_end(model):
    """A video whose second temporal patch repeats the first gets nothing there: the
    budget goes to the first patch, then to the changed third one."""
    batch = make_batch(model, [[3, Video(3, 2, 3), 2]])
    patches = batch["pixel_values_videos"].view(3, -1, batch["pixel_values_videos"].shape[-1])
    patches[1] = patches[0]
    batch["pixel_values_videos"] = patches.reshape(-1, patches.shape[-1])
    handle = vtprune.prune(model, "uniform", keep=9, frame_budget="novelty")
    logits(model, batch)
    (kept,) = handle.last_keep[0]
    assert torch.bincount(kept // 6, minlength=3).tolist() == [6, 0, 3]
    handle.remove()
    handle = vtprune.prune(model, "uniform", keep=9)  # by tokens: 3 each
    logits(model, batch)
    assert torch.bincount(handle.last_keep[0][0] // 6, minlength=3).tolist() == [3, 3, 3]


# every method -----------------------------------------------------------------------------------------

METHODS = [m["name"] for m in vtprune.methods() if m["name"] != "probe"]


@pytest.fixture(scope="module")
def model10(name):
    return BUILDERS[name](layers=10)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_on_images_and_videos(model10, method):
    model = model10
    prompts = PROMPTS[:3]
    batch = make_batch(model, prompts)
    if refused_before_deepstack(model, method, keep=0.3):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        handle = vtprune.prune(model, method, keep=0.3)
    try:
        tokens = greedy(model, batch, tokens=3)
        final = sparsevlm_counts(handle) if method == "sparsevlm" else None
        for sample, prompt in enumerate(prompts):
            parts = [p for p in prompt if not isinstance(p, int)]
            kept = handle.last_keep[sample]
            assert len(kept) == len(parts)
            for part, k in zip(parts, kept):
                n = _tokens(part)
                assert k.tolist() == sorted(set(k.tolist())) and 0 <= int(k.min()) and int(k.max()) < n
                if final is not None:
                    assert len(k) == final.pop(0)
                elif method != "pdrop":
                    assert len(k) == expected_counts(handle, n)[1]
            if method != "pdrop":
                assert handle.stats.llm_input[sample] == sum(expected_counts(handle, _tokens(p))[0] for p in parts)
        assert torch.equal(greedy(model, batch, tokens=3, use_cache=False), tokens)
    finally:
        handle.remove()
