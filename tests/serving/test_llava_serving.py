"""The bundled proving-ground LLaVA served by vLLM with vtprune: the same answers and
the same kept tokens as vtprune's Hugging Face path, for every servable method."""

from __future__ import annotations

import pytest
import torch

import vtprune.vllm
from vtprune import proving_ground as pg

from .engines import answers, close, engine, hf_answers, hf_kept, served_model

QUESTIONS = 60
KEEP = 64
EXAMPLES = pg.make_split("test", QUESTIONS)


def test_servable_methods_are_the_pre_llm_ones():
    assert set(vtprune.vllm.servable_methods()) >= {
        "uniform", "random", "divprune", "visionzip", "zspaprune", "cdpruner", "atp", "sppruner",
    }
    assert not {"fastv", "pdrop", "dart", "coast", "sts"} & set(vtprune.vllm.servable_methods())


def test_without_a_vtprune_config_the_model_is_served_as_stock():
    llm = engine()
    try:
        assert not llm.llm_engine.model_config.uses_mrope  # plain 1-D positions, K = 576
        served = answers(llm, EXAMPLES)
    finally:
        close(llm)
    assert served == hf_answers(EXAMPLES)


@pytest.mark.parametrize("method", vtprune.vllm.servable_methods())
def test_served_answers_and_kept_tokens_equal_the_hf_path(method):
    llm = engine(**vtprune.vllm.engine_kwargs(method, keep=KEEP))
    try:
        model = served_model(llm)
        kept = []
        # First, one request at a time on an empty encoder cache: the model's last
        # selection is then that image's.
        for example in EXAMPLES[:3]:
            answers(llm, [example], max_tokens=1)
            kept.append(model.vtprune_last_keep[0].cpu())
        served = answers(llm, EXAMPLES)
    finally:
        close(llm)
    reference = hf_answers(EXAMPLES, method, keep=KEEP)
    assert served == reference
    for example, tokens in zip(EXAMPLES[:3], kept):
        assert tokens.shape == (KEEP,)
        torch.testing.assert_close(tokens, hf_kept(example, method, keep=KEEP).cpu(), rtol=0, atol=0)
    accuracy = sum(a == e.answer.lower() for a, e in zip(served, EXAMPLES)) / QUESTIONS
    assert accuracy > 0.4  # pruned to 64 of 576 tokens, still far above the answer prior


def test_compact_positions_equal_the_hf_path():
    examples = EXAMPLES[:20]
    llm = engine(**vtprune.vllm.engine_kwargs("divprune", keep=KEEP, positions="compact"))
    try:
        served = answers(llm, examples)
    finally:
        close(llm)
    assert served == hf_answers(examples, "divprune", keep=KEEP, positions="compact")


def test_one_image_with_two_instructions_is_selected_for_each():
    """The prompt-aware selection of an image is never reused for another prompt: the
    image's cache identity covers its instruction."""
    image = EXAMPLES[0]
    other = pg.make_split("test", 2)[1]
    twin = type(image)(**{**image.__dict__, "question": other.question, "answer": other.answer})
    pair = [image, twin, image]
    llm = engine(**vtprune.vllm.engine_kwargs("zspaprune", keep=KEEP))
    try:
        model = served_model(llm)
        kept = []
        for example in pair:  # the third is the first again: served from the encoder cache
            model.vtprune_last_keep = []
            answers(llm, [example], max_tokens=1)
            kept.append([k.cpu() for k in model.vtprune_last_keep])
        served = answers(llm, pair)
    finally:
        close(llm)
    assert served == hf_answers(pair, "zspaprune", keep=KEEP)
    assert len(kept[0]) == len(kept[1]) == 1 and kept[2] == []  # the twin was encoded again, the repeat was not
    torch.testing.assert_close(kept[0][0], hf_kept(image, "zspaprune", keep=KEEP).cpu(), rtol=0, atol=0)
    torch.testing.assert_close(kept[1][0], hf_kept(twin, "zspaprune", keep=KEEP).cpu(), rtol=0, atol=0)
    assert not torch.equal(kept[0][0], kept[1][0])
