"""The public surface: ways to call prune, the handle, disabled(), methods()."""

from __future__ import annotations

import pytest
import torch

import vtprune
from vtprune import RandomConfig, UniformConfig
from vtprune.testing import IMAGE, make_batch, tiny_llava

from helpers import logits


@pytest.fixture(scope="module")
def model():
    return tiny_llava(layers=2)


@pytest.fixture(scope="module")
def batch(model):
    return make_batch(model, [[3, IMAGE, 5], [2, IMAGE, 1, IMAGE, 2]])


@pytest.fixture(autouse=True)
def _clean(model):
    yield
    if vtprune.active_handle(model) is not None:
        vtprune.active_handle(model).remove()


def test_name_config_object_and_config_class_are_equivalent(model, batch):
    by_name = vtprune.prune(model, "random", keep=20, seed=4)
    expected = logits(model, batch)
    by_object = vtprune.prune(model, RandomConfig(keep=20, seed=4))
    assert torch.equal(logits(model, batch), expected)
    by_class = vtprune.prune(model, RandomConfig, keep=20, seed=4)
    assert torch.equal(logits(model, batch), expected)
    overridden = vtprune.prune(model, RandomConfig(keep=20, seed=9), seed=4)
    assert torch.equal(logits(model, batch), expected)
    assert by_name.config == by_object.config == by_class.config == overridden.config
    assert by_name.method == "random"


def test_last_keep_and_stats_describe_the_last_forward(model, batch):
    handle = vtprune.prune(model, "uniform", keep=0.25)
    assert handle.last_keep is None and handle.stats is None
    logits(model, batch)
    keep = handle.last_keep
    assert [len(sample) for sample in keep] == [1, 2]  # per sample, per image
    for sample in keep:
        for kept in sample:
            assert kept.tolist() == sorted(set(kept.tolist())) and len(kept) == 16
    stats = handle.stats
    assert stats.before == (64, 128) and stats.llm_input == (16, 32) and stats.layer_avg == (16.0, 32.0)
    assert stats.kept_ratio == 0.25 and stats.num_layers == 2
    assert "192 before; 48 at the LLM input (25.0% kept); 48.0 averaged over 2 layers (25.0% kept)" in str(stats)


def test_stats_label_the_input_share_and_the_layer_averaged_share():
    # An in-LLM method at keep 0.222: every token reaches the LLM input, 128 on average.
    stats = vtprune.PruneStats(before=(576,), llm_input=(576,), layer_avg=(128.0,), num_layers=32)
    assert stats.layer_avg_ratio == 128 / 576
    assert str(stats) == ("visual tokens: 576 before; 576 at the LLM input (100.0% kept); "
                          "128.0 averaged over 32 layers (22.2% kept)")


def test_handle_as_context_manager(model, batch):
    reference = logits(model, batch)
    with vtprune.prune(model, "uniform", keep=0.25) as handle:
        assert handle.active and "active" in repr(handle)
        assert logits(model, batch).shape[1] < reference.shape[1]
    assert not handle.active and "removed" in repr(handle)
    assert torch.equal(logits(model, batch), reference)


def test_disabled_without_pruning_is_a_no_op(model, batch):
    reference = logits(model, batch)
    with vtprune.disabled(model):
        assert torch.equal(logits(model, batch), reference)


def test_pruning_the_core_model_shares_the_state(model, batch):
    """Pruning the ``LlavaModel`` core and then the whole model is still one method."""
    first = vtprune.prune(model.model, "uniform", keep=0.5)
    second = vtprune.prune(model, "uniform", keep=0.25)
    assert not first.active and vtprune.active_handle(model) is second
    assert len(model.model.language_model._forward_pre_hooks) == 1


def test_methods_listing_and_cli(capsys):
    from vtprune.cli import main

    names = [m["name"] for m in vtprune.methods()]
    assert names == sorted(names) and {"random", "uniform"} <= set(names)
    assert main(["methods", "-v"]) == 0
    out = capsys.readouterr().out
    assert "uniform" in out and "llava" in out
    # Each option with its default and help; the options every method shares, once.
    assert "  layer = 2\n" in out and "K: prune after the first K decoder layers" in out
    for name, text in vtprune.PruneConfig.field_help().items():
        assert out.count(f"\n  {name} = ") == 1 and out.count(" ".join(text.split()[:4])) == 1
    assert main(["methods", "--json"]) == 0
    import json

    assert [m["name"] for m in json.loads(capsys.readouterr().out)] == names


def test_uniform_config_dispatch(model, batch):
    handle = vtprune.prune(model, UniformConfig(keep=8))
    logits(model, batch)
    assert handle.stats.llm_input == (8, 16)


def test_merges_and_stages_are_reported(model, batch):
    handle = vtprune.prune(model, "visionzip", keep=16)
    logits(model, batch)
    merge, kept = handle.last_merge[1][0], handle.last_keep[1][0]
    assert merge.shape == (64,)
    assert set(merge.tolist()) <= set(kept.tolist())  # every token went into a kept one
    assert all(int(merge[k]) == int(k) for k in kept)  # kept tokens keep their own features
    assert list(handle.keep_by_stage) == ["pre_llm"]
    vtprune.prune(model, "uniform", keep=16)
    handle = vtprune.active_handle(model)
    logits(model, batch)
    assert handle.last_merge == [[None], [None, None]]


def test_validate_checks_without_touching(model):
    from vtprune import PruneConfig

    config = vtprune.validate(model, "uniform", keep=0.5)
    assert isinstance(config, PruneConfig) and config.keep == 0.5
    with pytest.raises(ValueError, match=r"layer must be in \[1, 1\] .*got 5"):
        vtprune.validate(model, "fastv", keep=0.5, layer=5)  # the model has 2 layers
    assert vtprune.active_handle(model) is None
    assert not model.model.language_model._forward_pre_hooks
