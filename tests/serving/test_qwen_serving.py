"""Tiny random-weight Qwen2-VL and Qwen2.5-VL served by vLLM with vtprune: the same
generated tokens and the same kept tokens as vtprune's Hugging Face path, on images of
different sizes (so different budgets), one or two images per prompt."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import vtprune
import vtprune.vllm

from . import qwen_checkpoint
from .engines import close, engine, served_model

KEEP = 0.25
SIZES = [(48, 64), (64, 64), (32, 48), (64, 32), (48, 48), (32, 64)]  # 48, 64, 24, 32, 36, 32 tokens
QUESTIONS = ["what is this?", "count the dots", "where is the cat?", "which colour?"]
ALL_25 = vtprune.vllm.servable_methods()
CASES = [("2.5", None)] + [("2.5", m) for m in ALL_25] + [("2", None), ("2", "visionzip"), ("2", "zspaprune")]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen")
    return {v: str(qwen_checkpoint.save(root / v.replace(".", "_"), version=v)) for v in ("2", "2.5")}


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8")) for h, w in SIZES]


def _requests() -> list[tuple[str, list[Image.Image]]]:
    images = _images()
    single = [(qwen_checkpoint.prompt(q), [i]) for q, i in zip(QUESTIONS, images)]
    return single + [(qwen_checkpoint.prompt(QUESTIONS[0], images=2), images[4:6])]


def _served(llm, requests, max_tokens=6):
    from vllm import SamplingParams

    prompts = [{"prompt": p, "multi_modal_data": {"image": i if len(i) > 1 else i[0]}} for p, i in requests]
    outputs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=max_tokens), use_tqdm=False)
    return [tuple(o.outputs[0].token_ids) for o in outputs], [len(o.prompt_token_ids) for o in outputs]


def _hf(path, requests, method, max_tokens=6):
    import transformers as tf

    model = tf.AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
    processor = tf.AutoProcessor.from_pretrained(path)
    handle = vtprune.prune(model, method, keep=KEEP) if method else None
    tokens, kept = [], []
    try:
        for prompt, images in requests:
            inputs = processor(text=[prompt], images=images, return_tensors="pt")
            out = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False)
            tokens.append(tuple(out[0, inputs["input_ids"].shape[1] :].tolist()))
            if handle is not None:
                kept.append([k.cpu() for k in handle.last_keep[0]])
    finally:
        if handle is not None:
            handle.remove()
    return tokens, kept


@pytest.mark.parametrize(("version", "method"), CASES, ids=[f"qwen{v}-{m or 'stock'}" for v, m in CASES])
def test_served_tokens_and_kept_tokens_equal_the_hf_path(checkpoints, version, method):
    requests = _requests()
    kwargs = vtprune.vllm.engine_kwargs(method, keep=KEEP) if method else {}
    llm = engine(checkpoints[version], limit_mm_per_prompt={"image": 2, "video": 0}, **kwargs)
    try:
        model = served_model(llm)
        kept = []
        if method:  # one request at a time on an empty encoder cache: the last selection is its own
            for request in requests:
                model.vtprune_last_keep = []
                _served(llm, [request], max_tokens=1)
                kept.append([k.cpu() for k in model.vtprune_last_keep])
        served, prompt_lengths = _served(llm, requests)
    finally:
        close(llm)
    reference, reference_kept = _hf(checkpoints[version], requests, method)
    assert served == reference
    if method:
        assert [len(k) for k in kept] == [1, 1, 1, 1, 2]
        for ours, theirs in zip(kept, reference_kept):
            for a, b in zip(ours, theirs):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
        tokens = [h * w // 64 for h, w in SIZES]  # 4x4 pixels per patch, 2x2 patches per token
        budgets = [vtprune.config.resolve_budget(KEEP, n) for n in tokens]
        assert [len(k) for ks in kept for k in ks] == budgets
        saved = [n - b for n, b in zip(tokens, budgets)]
        stock = _requests_lengths(requests)
        assert [s - p for s, p in zip(stock, prompt_lengths)] == saved[:4] + [saved[4] + saved[5]]


def _requests_lengths(requests) -> list[int]:
    """Prompt lengths with every image unpruned."""
    tokens = [h * w // 64 for h, w in SIZES]
    text = [len(qwen_checkpoint._tokenizer()(p)["input_ids"]) for p, _ in requests]
    return [t - 1 + n for t, n in zip(text[:4], tokens)] + [text[4] - 2 + tokens[4] + tokens[5]]


def test_compact_positions_are_refused_on_m_rope_models(checkpoints):
    with pytest.raises(ValueError, match="positions=.compact. cannot be served"):
        engine(checkpoints["2.5"], **vtprune.vllm.engine_kwargs("divprune", keep=KEEP, positions="compact"))
