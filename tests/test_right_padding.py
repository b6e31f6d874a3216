"""Right padding: every signal that means "the prompt's last token" or "the
instruction" is found per row from the attention mask, so a right-padded batch selects
what its left-padded twin and its prompts one by one select."""

from __future__ import annotations

import warnings

import pytest
import torch

import vtprune
from vtprune.testing import make_batch

from helpers import FAMILIES, refused

METHODS = ["fastv", "pdrop", "coast", "sts", "sparsevlm", "dart"]
PER_ROW = ("input_ids", "attention_mask", "mm_token_type_ids")


def right_padded(batch: dict) -> dict:
    """The same prompts with their padding moved to the right end of each row."""
    out = dict(batch)
    mask = batch["attention_mask"].bool()
    order = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)  # real tokens first, in order
    for name in PER_ROW:
        if name in batch:
            out[name] = batch[name].gather(1, order)
    return out


def with_positions(batch: dict) -> dict:
    """1-D RoPE ids counted over each row's real tokens (as generate gives them)."""
    if "mm_token_type_ids" in batch:
        return batch  # Qwen derives its M-RoPE ids from the mask itself
    mask = batch["attention_mask"]
    return {**batch, "position_ids": (mask.long().cumsum(-1) - 1).clamp(min=0)}


def selections(model, batch) -> list:
    with torch.no_grad():
        model(**with_positions(batch))
    handle = vtprune.active_handle(model)
    return [[k.tolist() for k in sample] for sample in handle.last_keep]


@pytest.fixture(scope="module", params=[f for f in FAMILIES if f.name in ("llava", "qwen2_vl", "qwen3_vl", "internvl", "mistral3")], ids=lambda f: f.name)
def setup(request):
    family = request.param
    model = family.build(layers=10)
    prompts = [[5, family.image(0), 7], [2, family.image(1), 3], [4, family.image(2), 12]]
    return family, model, prompts


@pytest.mark.parametrize("method", METHODS)
def test_right_padded_batch_selects_as_left_padded_and_singles(setup, method):
    family, model, prompts = setup
    left = make_batch(model, prompts)
    right = right_padded(left)
    assert not torch.equal(right["attention_mask"], left["attention_mask"])  # the padding did move
    if refused(model, method, keep=0.222):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        handle = vtprune.prune(model, method, keep=0.222)
    try:
        from_left = selections(model, left)
        from_right = selections(model, right)
        assert from_right == from_left
        for i, prompt in enumerate(prompts):
            assert selections(model, make_batch(model, [prompt], seeds=[i]))[0] == from_left[i]
    finally:
        handle.remove()
