"""Bad input gets a clear error naming the parameter and the accepted values, raised
before the model is touched: no hooks left, outputs unchanged, an active method kept."""

from __future__ import annotations

import math

import pytest
import torch

import vtprune
from vtprune.testing import IMAGE, make_batch, tiny_llava

from helpers import logits


@pytest.fixture(scope="module")
def model():
    return tiny_llava()


@pytest.fixture(scope="module")
def batch(model):
    return make_batch(model, [[4, IMAGE, 6]])


def hook_counts(model) -> list[int]:
    core = model.model
    return [len(core._forward_pre_hooks), len(core.language_model._forward_pre_hooks), len(core.vision_tower._forward_pre_hooks)]


BAD = [
    # (options, exception, words the message must contain)
    (dict(keep=0), ValueError, ["keep", "int >= 1", "(0, 1]"]),
    (dict(keep=-3), ValueError, ["keep", "got -3"]),
    (dict(keep=-0.5), ValueError, ["keep", "(0, 1]"]),
    (dict(keep=0.0), ValueError, ["keep"]),
    (dict(keep=1.5), ValueError, ["keep", "(0, 1]", "1.5"]),
    (dict(keep=math.nan), ValueError, ["keep", "nan"]),
    (dict(keep=math.inf), ValueError, ["keep", "inf"]),
    (dict(keep=True), TypeError, ["keep", "bool"]),
    (dict(keep="0.5"), TypeError, ["keep", "str"]),
    (dict(keep=None), TypeError, ["keep"]),
    (dict(positions="sorted"), ValueError, ["positions", "original", "compact"]),
    (dict(newlines="drop"), ValueError, ["newlines", "keep", "with_row"]),
    (dict(videos="skip"), ValueError, ["videos", "prune", "keep"]),
    (dict(frame_budget="even"), ValueError, ["frame_budget", "tokens", "novelty"]),
    (dict(speed=3), TypeError, ["speed", "accepted", "keep"]),
]


@pytest.mark.parametrize("options,error,words", BAD, ids=[str(b[0]) for b in BAD])
def test_bad_options(model, batch, options, error, words):
    before = logits(model, batch)
    with pytest.raises(error) as info:
        vtprune.prune(model, "uniform", **options)
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)
    assert hook_counts(model) == [0, 0, 0]
    assert vtprune.active_handle(model) is None
    assert torch.equal(logits(model, batch), before)


def test_unknown_method_lists_the_names(model):
    with pytest.raises(ValueError) as info:
        vtprune.prune(model, "fastest", keep=0.5)
    assert "method" in str(info.value) and "'uniform'" in str(info.value) and "'random'" in str(info.value)
    assert hook_counts(model) == [0, 0, 0]


def test_wrong_method_type(model):
    with pytest.raises(TypeError, match="method must be a method name"):
        vtprune.prune(model, 42)
    with pytest.raises(TypeError, match="method must be a method name"):
        vtprune.prune(model, {"method": "uniform"})
    assert hook_counts(model) == [0, 0, 0]


def test_unsupported_model_lists_the_families():
    lm = torch.nn.Linear(4, 4)
    with pytest.raises(TypeError) as info:
        vtprune.prune(lm, "uniform", keep=0.5)
    message = str(info.value)
    assert "Linear" in message
    for name in ("LlavaForConditionalGeneration", "Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration"):
        assert name in message
    assert not lm._forward_pre_hooks


def test_unsupported_llava_strategy_is_refused_before_patching():
    model = tiny_llava()
    model.config.vision_feature_select_strategy = "full"
    with pytest.raises(ValueError, match="vision_feature_select_strategy"):
        vtprune.prune(model, "uniform", keep=0.5)
    assert hook_counts(model) == [0, 0, 0]


def test_failed_reprune_keeps_the_active_method(model, batch):
    handle = vtprune.prune(model, "uniform", keep=0.25)
    pruned = logits(model, batch)
    with pytest.raises(ValueError):
        vtprune.prune(model, "random", keep=0)
    assert handle.active and vtprune.active_handle(model) is handle
    assert torch.equal(logits(model, batch), pruned)
    handle.remove()


def test_image_features_without_image_tokens(model, batch):
    """pixel_values with a prompt that has no image placeholder: an error, and the
    model still works afterwards."""
    handle = vtprune.prune(model, "uniform", keep=0.25)
    text_only = make_batch(model, [[10]])
    with pytest.raises(ValueError, match="[Ii]mage"):
        with torch.no_grad():
            model(**text_only, pixel_values=batch["pixel_values"])
    assert logits(model, batch).shape[1] < batch["input_ids"].shape[1]  # still pruning
    handle.remove()


def test_int_budget_above_the_token_count_keeps_everything(model, batch):
    reference = logits(model, batch)
    handle = vtprune.prune(model, "uniform", keep=10_000)
    assert torch.equal(logits(model, batch), reference)
    assert handle.stats.total_llm_input == handle.stats.total_before == 64
    handle.remove()


@pytest.mark.parametrize("builder", ["tiny_llava", "tiny_qwen2_vl", "tiny_llava_next", "tiny_llava_onevision"])
def test_every_methods_defaults_fit_the_tiny_models_default_depth(builder):
    import vtprune.testing

    model = getattr(vtprune.testing, builder)()
    for row in vtprune.methods():
        vtprune.validate(model, row["name"])  # raises if the defaults do not fit
