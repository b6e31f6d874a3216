"""Video pruning on Qwen2-VL, Qwen2.5-VL, Qwen3-VL and LLaVA-OneVision: a video is one unit whose frames
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
from vtprune.models.llava_next.tiny import tiny_llava_onevision
from vtprune.models.qwen3_vl.tiny import tiny_qwen3_vl
from vtprune.testing import Image, Video, make_batch

import probes
from helpers import greedy, image_features, image_slots, logits, refused
from test_methods_on_models import expected_counts, sparsevlm_counts

BUILDERS = {
    "qwen2_vl": lambda **kw: tiny_qwen2_vl(version="2", **kw),
    "qwen2_5_vl": lambda **kw: tiny_qwen2_vl(version="2.5", **kw),
    "qwen3_vl": lambda **kw: tiny_qwen3_vl(deepstack=(0, 1), **kw),
    "llava_onevision": lambda **kw: tiny_llava_onevision(**kw),
}
# A video alone; an image before a video of another size (and time spacing); a video
# before an image, then text; text only. OneVision's frames are pooled to a fixed
# 3 x 3 grid, and the videos of a batch have as many frames.
QWEN_PROMPTS = [
    [4, Video(3, 2, 3), 5],
    [2, Image(2, 2), 3, Video(2, 4, 2, seconds=0.5), 4],
    [3, Video(4, 3, 2, seconds=2.0), 2, Image(3, 3), 3],
    [7],
]
ONEVISION_PROMPTS = [
    [4, Video(3, 3, 3), 5],
    [2, Image(size=(30, 60)), 3, Video(3, 3, 3), 4],
    [3, Video(3, 3, 3), 2, Image(size=(20, 20)), Image(size=(48, 48)), 3],
    [7],
]


@pytest.fixture(scope="module", params=list(BUILDERS))
def name(request):
    return request.param


@pytest.fixture(scope="module")
def model(name):
    return BUILDERS[name](layers=4, dtype=torch.float64)


@pytest.fixture(scope="module")
def prompts(name):
    return ONEVISION_PROMPTS if name == "llava_onevision" else QWEN_PROMPTS


@pytest.fixture(autouse=True)
def _clean(model):
    yield
    if vtprune.active_handle(model) is not None:
        vtprune.active_handle(model).remove()


@pytest.fixture(scope="module")
def reference(model, prompts):
    batch = make_batch(model, prompts)
    return batch, logits(model, batch), greedy(model, batch, tokens=4)


def mrope(model) -> bool:
    return "mm_token_type_ids" in make_batch(model, [[1]])


# hand-built references ---------------------------------------------------------------------


def units_of(model, batch, prompts, sample):
    """(kind, item in the batch's items of that kind, sequence positions of its prunable
    tokens) of every image and video of prompt ``sample``, in order of appearance: a
    OneVision image's without its newlines (the model's own features tell them), a
    OneVision video's without its closing newline."""
    ids, config = batch["input_ids"][sample], model.config
    videos = torch.nonzero(ids == config.video_token_id).flatten()
    if mrope(model):  # Qwen: each image's placeholders, in order
        where, counts = torch.nonzero(ids == config.image_token_id).flatten(), [p.rows * p.cols for p in prompts[sample] if isinstance(p, Image)]
        images = iter(where.split(counts)) if counts else iter(())
    else:
        images = iter(image_slots(model, batch, sample)) if "pixel_values" in batch else iter(())
    before = {
        kind: sum(1 for p in prompts[:sample] for part in p if isinstance(part, Video if kind == "video" else Image))
        for kind in ("image", "video")
    }
    units, taken = [], 0
    for part in prompts[sample]:
        if isinstance(part, Image):
            units.append(("image", before["image"], next(images)))
            before["image"] += 1
        elif isinstance(part, Video):
            n = part.frames * part.rows * part.cols
            units.append(("video", before["video"], videos[taken : taken + n]))
            taken += n + (not mrope(model))  # OneVision: the video's newline
            before["video"] += 1
    return units


def part_tokens(model, batch, prompts, sample) -> list[int]:
    """Prunable tokens of each image and video of prompt ``sample``, in order."""
    return [len(slots) for _, _, slots in units_of(model, batch, prompts, sample)]


def encoded(model, batch):
    """The model's own features (and DeepStack features) of each image and video."""
    core, out = model.model, {}
    with torch.no_grad():
        if "pixel_values" in batch:
            features = image_features(model, batch)
            out["image"] = core.get_image_features(batch["pixel_values"], batch["image_grid_thw"], return_dict=True) if mrope(model) else features
        if "pixel_values_videos" in batch:
            if mrope(model):
                out["video"] = core.get_video_features(batch["pixel_values_videos"], batch["video_grid_thw"], return_dict=True)
            else:
                config = model.config
                out["video"] = list(core.get_video_features(
                    batch["pixel_values_videos"], vision_feature_layer=config.vision_feature_layer,
                    vision_feature_select_strategy=config.vision_feature_select_strategy, return_dict=True,
                ).pooler_output)
    return out


def _features(found):
    return list(found.pooler_output) if hasattr(found, "pooler_output") else found


def full_embeddings(model, batch):
    embeds = model.model.get_input_embeddings()(batch["input_ids"]).clone()
    config, feats = model.config, encoded(model, batch)
    for kind, token in (("image", config.image_token_id), ("video", config.video_token_id)):
        if kind in feats:
            embeds[batch["input_ids"] == token] = torch.cat(_features(feats[kind])).to(embeds.dtype)
    return embeds


def full_positions(model, batch):
    """The model's own ids of the unpruned prompts: M-RoPE with the videos' temporal ids
    (Qwen), or 1-D ids over the real tokens (OneVision)."""
    mask = batch["attention_mask"]
    if not mrope(model):
        return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    extra = {"second_per_grid_ts": batch["second_per_grid_ts"]} if "second_per_grid_ts" in batch else {}
    positions, _ = model.model.get_rope_index(
        batch["input_ids"], mm_token_type_ids=batch["mm_token_type_ids"], image_grid_thw=batch.get("image_grid_thw"),
        video_grid_thw=batch.get("video_grid_thw"), attention_mask=mask, **extra,
    )
    return positions


def kept_index(model, batch, prompts, last_keep, sample):
    """Sequence positions of prompt ``sample`` that survive: its real text tokens (and
    newlines) and the kept tokens of each image and video."""
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
    if refused(model, method, keep=1.0):
        return
    handle = vtprune.prune(model, method, keep=1.0)
    torch.testing.assert_close(logits(model, batch), reference_logits, atol=1e-10, rtol=0)
    assert torch.equal(greedy(model, batch, tokens=4), reference_tokens)
    assert handle.stats.llm_input == handle.stats.before
    handle.remove()


@pytest.mark.parametrize("method", ["uniform", "divprune", "random"])
def test_pruned_prefill_equals_language_model_on_kept_tokens(model, prompts, method):
    """Kept embeddings at their original ids ((t, h, w) M-RoPE on Qwen, with the kept
    tokens' DeepStack rows on Qwen3-VL): the same logits as the pruned forward."""
    batch = make_batch(model, prompts)
    embeds, positions = full_embeddings(model, batch), full_positions(model, batch)
    handle = vtprune.prune(model, method, keep=0.4)
    pruned = logits(model, {**batch, "position_ids": positions})
    assert 0 < handle.stats.total_llm_input < handle.stats.total_before
    lm = model.model.language_model
    for sample in range(len(prompts)):
        index = kept_index(model, batch, prompts, handle.last_keep, sample)
        extra = deepstack_inputs(model, batch, prompts, sample, index)
        with torch.no_grad():
            hidden = lm(
                inputs_embeds=embeds[sample, index][None], position_ids=positions[..., sample : sample + 1, index], **extra
            ).last_hidden_state
        torch.testing.assert_close(pruned[sample, -len(index) :], model.lm_head(hidden)[0], atol=1e-10, rtol=1e-10)
    if mrope(model):  # a video's temporal ids: one per frame, increasing (the model's own)
        ((_, _, slots),) = units_of(model, batch, prompts, 0)
        frames = positions[0, 0, slots].view(3, 6)
        assert torch.equal(frames, frames[:, :1].expand(3, 6)) and bool((frames[1:, 0] > frames[:-1, 0]).all())


def test_batch_equals_singles_cached_equals_uncached_and_remove_restores(model, prompts, reference):
    batch, reference_logits, reference_tokens = reference
    handle = vtprune.prune(model, "uniform", keep=0.3)
    tokens = greedy(model, batch, tokens=4)
    # Position ids as generate gives them (OneVision's own forward counts padding too).
    pruned = logits(model, {**batch, "position_ids": full_positions(model, batch)})
    assert torch.equal(greedy(model, batch, tokens=4, use_cache=False), tokens)
    for i, prompt in enumerate(prompts):
        single = make_batch(model, [prompt], seeds=[i])
        last = logits(model, {**single, "position_ids": full_positions(model, single)})[0, -1]
        torch.testing.assert_close(last, pruned[i, -1], atol=1e-10, rtol=0)
        assert torch.equal(greedy(model, single, tokens=4)[0], tokens[i])
    handle.remove()
    assert torch.equal(logits(model, batch), reference_logits)
    assert torch.equal(greedy(model, batch, tokens=4), reference_tokens)


def test_pre_llm_stages_select_in_each_frame_with_its_own_signals(model, prompts, monkeypatch):
    """Before the LLM a stage sees one frame (temporal patch) per row: its grid, its
    tokens' indices in the frame, the vision tower's signals of that frame (Qwen: the
    attention within its own segment, so each frame's per-token saliency sums to 1 / 4,
    the mean over its 2x2 merged patches of a distribution over the frame), and as its
    instruction the text after the whole video."""
    import vtprune.runtime.stage_runner as runner

    seen = []
    original = runner.select_sorted

    def recording(stage, signals, budget, config, num_images, num_tokens):
        seen.append((signals.grid, signals.token_index, signals["vision_saliency"], signals["text_mask"]))
        return original(stage, signals, budget, config, num_images, num_tokens)

    monkeypatch.setattr(runner, "select_sorted", recording)
    batch = make_batch(model, prompts[:1])  # 4 text, a video of 3 frames, 5 text
    vtprune.prune(model, "sppruner", keep=6)  # 2 tokens in each frame: one group of frames
    logits(model, batch)
    ((grid, token_index, saliency, text_mask),) = seen
    video = prompts[0][1]
    assert grid == (video.rows, video.cols)
    assert torch.equal(token_index, torch.arange(video.rows * video.cols).expand(3, -1))
    assert saliency.shape == token_index.shape and bool((saliency[1:] != saliency[:1]).any())
    if mrope(model):
        torch.testing.assert_close(saliency.sum(1), torch.full((3,), 0.25, dtype=saliency.dtype), atol=1e-6, rtol=0)
    # The 5 text tokens after the video (and Qwen's vision end marker), for every frame.
    assert text_mask.sum(1).tolist() == [5 + mrope(model)] * 3


def test_generate_reads_each_kind_from_its_own_vision_call(model, name, monkeypatch):
    """``generate`` encodes images, then videos, before the prefill and drops their
    grids: an image and a one-frame video of equal token counts are still told apart,
    the image's vision signals being those the image has on its own."""
    if not mrope(model):
        pytest.skip("OneVision's frames are pooled: no image has a video frame's count")
    import vtprune.runtime.stage_runner as runner

    seen = []
    original = runner.select_sorted

    def recording(stage, signals, budget, config, num_images, num_tokens):
        seen.append(signals["vision_saliency"])
        return original(stage, signals, budget, config, num_images, num_tokens)

    monkeypatch.setattr(runner, "select_sorted", recording)
    vtprune.prune(model, "visionzip", keep=3)
    greedy(model, make_batch(model, [[2, Image(2, 3), 3]]), tokens=1)  # the same image alone (same seed)
    greedy(model, make_batch(model, [[2, Image(2, 3), 3, Video(1, 2, 3), 2]]), tokens=1)
    alone, both = seen
    assert both.shape == (2, 6)  # the image and the video, one group (same grid and budget)
    torch.testing.assert_close(both[0], alone[0], atol=1e-12, rtol=0)
    assert (both[1] - both[0]).abs().max() > 1e-6


# budgets -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [5, 0.25])
def test_kept_counts_are_the_per_video_and_per_image_budgets(model, prompts, keep):
    """``keep`` applies per image and per video; a video's frames share its budget in
    proportion to their tokens (equal frames: equal shares, the remainder first)."""
    batch = make_batch(model, prompts)
    handle = vtprune.prune(model, "uniform", keep=keep)
    logits(model, batch)
    config = handle.config
    for sample, prompt in enumerate(prompts):
        parts = [p for p in prompt if not isinstance(p, int)]
        counts = part_tokens(model, batch, prompts, sample)
        kept = handle.last_keep[sample]
        assert [len(k) for k in kept] == [config.budget(n) for n in counts]
        assert handle.stats.llm_input[sample] == sum(config.budget(n) for n in counts)
        for part, n, k in zip(parts, counts, kept):
            if isinstance(part, Video):
                per_frame = torch.bincount(k // (part.rows * part.cols), minlength=part.frames).tolist()
                budget = config.budget(n)
                assert per_frame == [budget // part.frames + (f < budget % part.frames) for f in range(part.frames)]


def test_videos_keep_leaves_videos_whole(model, prompts):
    batch = make_batch(model, prompts)
    handle = vtprune.prune(model, "uniform", keep=0.25, videos="keep")
    logits(model, batch)
    images = [
        [n for part, n in zip([p for p in prompt if not isinstance(p, int)], part_tokens(model, batch, prompts, i)) if isinstance(part, Image)]
        for i, prompt in enumerate(prompts)
    ]
    assert [[len(k) for k in kept] for kept in handle.last_keep] == [[handle.config.budget(n) for n in ns] for ns in images]
    # The videos reach the language model whole: each prompt loses only image tokens.
    seen = []
    hook = model.model.language_model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["attention_mask"]), with_kwargs=True)
    logits(model, batch)
    hook.remove()
    removed = [sum(n - handle.config.budget(n) for n in ns) for ns in images]
    assert (batch["attention_mask"].sum(1) - seen[0].sum(1)).tolist() == removed
    assert handle.stats.total_before == sum(sum(ns) for ns in images)


def test_in_llm_stages_see_the_whole_video(model, prompts):
    """An in-LLM stage selects over all of a video's tokens at once (one grid)."""
    if refused(model, "probe"):
        config = probes.ProbeConfig(keep=0.3, layers=(model.config.text_config.num_hidden_layers - 1,))
    else:
        config = probes.ProbeConfig(keep=0.3)
    batch = make_batch(model, prompts[:1])
    (n,) = part_tokens(model, batch, prompts, 0)
    probes.SEEN.clear()
    handle = vtprune.prune(model, config)
    logits(model, batch)
    (seen,) = probes.SEEN
    assert seen["token_index"].shape == (1, n)
    assert [len(k) for k in handle.last_keep[0]] == [config.budget(n)]


def test_novelty_allocation_end_to_end(model, prompts):
    """A video whose second frame repeats the first gets nothing there: the budget goes
    to the first frame, then to the changed third one."""
    video = prompts[0][1]
    per_frame = video.rows * video.cols
    batch = make_batch(model, prompts[:1])
    pixels = batch["pixel_values_videos"]
    frames = pixels.view(3, -1, pixels.shape[-1]) if mrope(model) else pixels[0]
    frames[1] = frames[0]
    budget = per_frame + per_frame // 2
    handle = vtprune.prune(model, "uniform", keep=budget, frame_budget="novelty")
    logits(model, batch)
    (kept,) = handle.last_keep[0]
    assert torch.bincount(kept // per_frame, minlength=3).tolist() == [per_frame, 0, per_frame // 2]
    handle.remove()
    handle = vtprune.prune(model, "uniform", keep=budget)  # by tokens
    logits(model, batch)
    assert torch.bincount(handle.last_keep[0][0] // per_frame, minlength=3).tolist() == [
        budget // 3 + (f < budget % 3) for f in range(3)
    ]


# every method -----------------------------------------------------------------------------------------

METHODS = [m["name"] for m in vtprune.methods() if m["name"] != "probe"]


@pytest.fixture(scope="module")
def model10(name):
    return BUILDERS[name](layers=10)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_on_images_and_videos(model10, prompts, method):
    model = model10
    prompts = prompts[:3]
    batch = make_batch(model, prompts)
    if refused(model, method, keep=0.3):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        handle = vtprune.prune(model, method, keep=0.3)
    try:
        tokens = greedy(model, batch, tokens=3)
        final = sparsevlm_counts(handle) if method == "sparsevlm" else None
        for sample in range(len(prompts)):
            counts = part_tokens(model, batch, prompts, sample)
            kept = handle.last_keep[sample]
            assert len(kept) == len(counts)
            for n, k in zip(counts, kept):
                assert k.tolist() == sorted(set(k.tolist())) and 0 <= int(k.min()) and int(k.max()) < n
                if final is not None:
                    assert len(k) == final.pop(0)
                elif method != "pdrop":
                    assert len(k) == expected_counts(handle, n)[1]
            if method != "pdrop":
                assert handle.stats.llm_input[sample] == sum(expected_counts(handle, n)[0] for n in counts)
        assert torch.equal(greedy(model, batch, tokens=3, use_cache=False), tokens)
    finally:
        handle.remove()


def test_bench_counts_each_frame_group_as_an_attention_block():
    """The vision tower attends within each temporal patch of a video, so the bench's
    MACs count a video as its frame groups, after the prompt's images."""
    from vtprune.bench.flops import patches_per_image, vision_macs

    model = tiny_qwen2_vl(layers=2)
    batch = make_batch(model, [[3, Image(2, 3), 2, Video(3, 2, 2), 1]])
    assert patches_per_image(model, batch) == [4 * 6, 4 * 4, 4 * 4, 4 * 4]
    only_video = make_batch(model, [[3, Video(2, 2, 3), 1]])
    assert patches_per_image(model, only_video) == [4 * 6, 4 * 6]
    assert vision_macs(model, patches_per_image(model, only_video)) == 2 * vision_macs(model, [4 * 6])
