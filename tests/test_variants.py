"""Running a model under a pruning variant: the patch is off afterwards, however the
block ends, and variants the model cannot run are reported, not run."""

from __future__ import annotations

import pytest
import torch

import vtprune
from vtprune.testing import IMAGE, make_batch, tiny_llava
from vtprune.variants import Variant, pruned, runnable


@pytest.fixture(scope="module")
def model_and_batch():
    model = tiny_llava().eval()
    return model, make_batch(model, [[3, IMAGE, 4], [2, IMAGE, 5]])


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def test_the_patch_is_off_after_the_block(model_and_batch):
    model, batch = model_and_batch
    before = logits(model, batch)
    with pruned(model, Variant("uniform", 0.25)) as handle:
        assert vtprune.active_handle(model) is handle and handle.config.keep == 0.25
        inside = logits(model, batch)
        assert list(handle.stats.llm_input) == [16, 16]  # a quarter of the 8 x 8 grid
    assert not torch.equal(inside, before)
    assert vtprune.active_handle(model) is None
    assert torch.equal(logits(model, batch), before)


def test_the_patch_is_off_after_an_exception(model_and_batch):
    model, batch = model_and_batch
    before = logits(model, batch)
    with pytest.raises(RuntimeError, match="in the block"):
        with pruned(model, Variant("fastv", 0.25, {"layer": 1})):
            logits(model, batch)
            raise RuntimeError("in the block")
    assert vtprune.active_handle(model) is None
    assert torch.equal(logits(model, batch), before)


def test_the_unpruned_variant_leaves_the_model_alone(model_and_batch):
    model, batch = model_and_batch
    before = logits(model, batch)
    with pruned(model, Variant(None)) as handle:
        assert handle is None and vtprune.active_handle(model) is None
        assert torch.equal(logits(model, batch), before)


def test_a_bad_request_fails_before_the_model_is_touched(model_and_batch):
    model, batch = model_and_batch
    with pytest.raises(TypeError, match="no option"):
        with pruned(model, Variant("uniform", 0.25, {"nosuch": 1})):
            pytest.fail("the block ran")
    assert vtprune.active_handle(model) is None


def test_runnable_reports_what_the_model_cannot_run(model_and_batch):
    model, _ = model_and_batch
    variants = [Variant(None), Variant("uniform", 0.25), Variant("pdrop", 0.1), Variant("fastv", 0.25, {"layer": 99})]
    ok, skipped = runnable(model, variants)
    assert ok == variants[:2]
    assert set(skipped) == {"pdrop@0.1", "fastv@0.25"}
    assert "cannot be met" in skipped["pdrop@0.1"]


def test_labels_tell_a_token_count_from_a_share():
    assert Variant(None).label == "unpruned"
    assert Variant("uniform", 1).label == "uniform@1" and Variant("uniform", 1.0).label == "uniform@1.0"
    assert Variant("uniform", 0.25, {"seed": 1}) != Variant("uniform", 0.25)
    assert len({Variant("uniform", 0.25, {"seed": 1}), Variant("uniform", 0.25)}) == 2
