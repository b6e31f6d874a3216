"""A tiny random-weight Qwen3-VL (16-pixel patches, interleaved M-RoPE, two DeepStack
levels) served by vLLM with vtprune: the same generated tokens and kept tokens as
vtprune's Hugging Face path, and every kept row carrying its own token's DeepStack
features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import vtprune
import vtprune.vllm
from vtprune.vllm.positions import CHANNELS, decode

from . import qwen_checkpoint
from .engines import close, engine, served_model
from .test_qwen_serving import KEEP, QUESTIONS, SIZES, _hf, _served

SIZES_3 = [(4 * h, 4 * w) for h, w in SIZES]  # 32x32 pixels per token: 48, 64, 24, 32, 36, 32 tokens
METHODS = vtprune.vllm.servable_methods()
LEVELS = len(qwen_checkpoint.DEEPSTACK)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return str(qwen_checkpoint.save(tmp_path_factory.mktemp("qwen3") / "qwen3", version="3"))


def _requests() -> list[tuple[str, list[Image.Image]]]:
    rng = np.random.default_rng(0)
    images = [Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8")) for h, w in SIZES_3]
    single = [(qwen_checkpoint.prompt(q), [i]) for q, i in zip(QUESTIONS, images)]
    return single + [(qwen_checkpoint.prompt(QUESTIONS[0], images=2), images[4:6])]


@pytest.mark.parametrize("method", [None] + METHODS, ids=lambda m: f"qwen3-{m or 'stock'}")
def test_served_tokens_and_kept_tokens_equal_the_hf_path(checkpoint, method):
    requests = _requests()
    kwargs = vtprune.vllm.engine_kwargs(method, keep=KEEP) if method else {}
    llm = engine(checkpoint, limit_mm_per_prompt={"image": 2, "video": 0}, **kwargs)
    try:
        model = served_model(llm)
        assert type(model).__name__ == "VtpruneQwen3VLForConditionalGeneration"
        kept = []
        if method:  # one request at a time on an empty encoder cache: the last selection is its own
            for request in requests:
                model.vtprune_last_keep = []
                _served(llm, [request], max_tokens=1)
                kept.append([k.cpu() for k in model.vtprune_last_keep])
        served, prompt_lengths = _served(llm, requests)
    finally:
        close(llm)
    reference, reference_kept = _hf(checkpoint, requests, method)
    assert served == reference
    tokens = [h * w // 1024 for h, w in SIZES_3]
    stock = _stock_lengths(requests, tokens)
    if not method:
        assert prompt_lengths == stock
        return
    assert [len(k) for k in kept] == [1, 1, 1, 1, 2]
    for ours, theirs in zip(kept, reference_kept):
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    budgets = [vtprune.config.resolve_budget(KEEP, n) for n in tokens]
    assert [len(k) for ks in kept for k in ks] == budgets
    saved = [n - b for n, b in zip(tokens, budgets)]
    assert [s - p for s, p in zip(stock, prompt_lengths)] == saved[:4] + [saved[4] + saved[5]]


def _stock_lengths(requests, tokens: list[int]) -> list[int]:
    text = [len(qwen_checkpoint._tokenizer()(p)["input_ids"]) for p, _ in requests]
    return [t - 1 + n for t, n in zip(text[:4], tokens)] + [text[4] - 2 + tokens[4] + tokens[5]]


@pytest.mark.parametrize("method", ["divprune", "visionzip"])
def test_kept_rows_carry_their_own_deepstack_features(checkpoint, method):
    """The served encoder output of a pruned image, against the stock vision tower's
    output for the same pixels: per kept row, the DeepStack features of its token at
    every level, then its (0, row, col) offsets (visionzip merges into the first D
    channels; the DeepStack ones stay the token's own)."""
    import transformers as tf

    processor = tf.AutoProcessor.from_pretrained(checkpoint)
    prompt, images = _requests()[0]
    inputs = processor(text=[prompt], images=images, return_tensors="pt")
    llm = engine(checkpoint, limit_mm_per_prompt={"image": 1, "video": 0}, **vtprune.vllm.engine_kwargs(method, keep=KEEP))
    try:
        model = served_model(llm)
        pixels, grid = inputs["pixel_values"].float(), inputs["image_grid_thw"]
        with torch.no_grad():
            full = model.visual(pixels, grid_thw=grid)
            (rows,) = model.embed_multimodal(pixel_values=pixels, image_grid_thw=grid, vtprune_ordinal=torch.zeros(1),
                                             vtprune_text=[torch.zeros(0, dtype=torch.long)])
        kept = model.vtprune_last_keep[0]
    finally:
        close(llm)
    width = model.visual_dim
    assert full.shape[1] == width * (1 + LEVELS)
    assert rows.shape == (len(kept), width * (1 + LEVELS) + CHANNELS)
    assert not torch.equal(full[kept, width:], full[kept.roll(1), width:])  # another row would not pass
    torch.testing.assert_close(rows[:, width:-CHANNELS], full[kept, width:], rtol=0, atol=0)
    columns = int(grid[0, 2]) // 2
    expected = torch.stack((torch.zeros_like(kept), kept // columns, kept % columns), 1)
    torch.testing.assert_close(decode(rows[:, -CHANNELS:]), expected, rtol=0, atol=0)
    if method == "divprune":  # a selection keeps each token's own features
        torch.testing.assert_close(rows[:, :width], full[kept, :width], rtol=0, atol=0)


def test_bad_options_fail_at_engine_start(checkpoint):
    with pytest.raises(ValueError, match="positions=.compact. cannot be served"):
        engine(checkpoint, **vtprune.vllm.engine_kwargs("divprune", keep=KEEP, positions="compact"))
    with pytest.raises(ValueError, match="prunes inside the language model"):
        engine(checkpoint, hf_overrides={"vtprune": {"method": "fastv", "keep": 8}})


def test_a_video_is_served_unpruned_with_its_stock_ids(checkpoint):
    """A video's frames each follow their timestamp text between their own markers; with
    a plan they keep every token and the ids stock vLLM gives them, so the answer is
    stock's (the ids come from the plan's own numbering, which would differ if a frame
    were numbered as one image)."""
    frames = (np.random.default_rng(1).random((4, 128, 96, 3)) * 255).astype("uint8")
    metadata = {"fps": 2.0, "duration": 2.0, "total_num_frames": 4, "frames_indices": [0, 1, 2, 3],
                "video_backend": "opencv", "do_sample_frames": False}
    prompt = "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>what is this?<|im_end|>\n<|im_start|>assistant\n"
    request = {"prompt": prompt, "multi_modal_data": {"video": (frames, metadata)}}
    stock = _served_video(checkpoint, request, {})
    assert stock == _served_video(checkpoint, request, vtprune.vllm.engine_kwargs("divprune", keep=KEEP))


def _served_video(checkpoint, request, kwargs) -> tuple[tuple[int, ...], int]:
    """Generated tokens and prompt length of one engine. The engine lives in this frame
    only: an engine still referenced when the next one starts would, when collected,
    tear down the parallel groups that the next one runs in."""
    from vllm import SamplingParams

    llm = engine(checkpoint, limit_mm_per_prompt={"image": 1, "video": 1}, **kwargs)
    try:
        assert (served_model(llm).vtprune is None) == (not kwargs)
        (output,) = llm.generate([request], SamplingParams(temperature=0, max_tokens=8), use_tqdm=False)
        return tuple(output.outputs[0].token_ids), len(output.prompt_token_ids)
    finally:
        close(llm)
