import pytest
import torch

from vtprune.pruning_methods.pdrop import PDropConfig, layer_average, scaled_layers, solve_ratio, stage_count
from vtprune.registry import get_method

from .method_inputs import SignalBank, resolved, run_method


def test_stage_layers_scale_with_the_model_depth() -> None:
    assert scaled_layers((8, 16, 24), 32) == (8, 16, 24)
    assert scaled_layers((8, 16, 24), 28) == (7, 14, 21)
    assert scaled_layers((8, 16, 24), 40) == (10, 20, 30)
    assert scaled_layers((8, 16, 24), 4) == (1, 2, 3)
    assert scaled_layers((8, 16, 24), 2) == (1,)  # collapsed stages merge
    stages = get_method("pdrop").stages(PDropConfig(), 28)
    assert [s.where for s in stages] == ["llm:7", "llm:14", "llm:21"]
    assert stages[1].needs == {"attn_last_next@llm:14"}


def test_fixed_ratio_halves_the_tokens_at_each_stage() -> None:
    bank = SignalBank(images=1, grid=(24, 24), text_lengths=(4,))
    outcome = run_method(PDropConfig(keep=64, ratio=0.5), bank, num_layers=32)
    assert outcome.stage_sizes == [288, 144, 72]  # the paper's 50%, 25%, 12.5%


@pytest.mark.parametrize(
    "budget, layers, depth",
    [
        (192, (8, 16, 24), 32),
        (160, (8, 16, 24), 32),
        (150, (7, 14, 21), 28),
        (128, (2, 6, 12), 32),
        (64, (2, 6, 12), 32),
    ],
)
def test_solved_ratio_meets_the_average_budget(budget: int, layers: tuple, depth: int) -> None:
    tokens = 576
    ratio = solve_ratio(budget, tokens, layers, depth)
    assert 0 < ratio < 1
    assert layer_average(ratio, layers, depth, tokens) == pytest.approx(budget, abs=1e-6)
    # With whole tokens at each stage the layer average is within one token of the budget.
    counts = [tokens] + [stage_count(tokens, ratio, s + 1) for s in range(len(layers))]
    bounds = (0, *layers, depth)
    average = sum(c * (bounds[s + 1] - bounds[s]) for s, c in enumerate(counts)) / depth
    assert abs(average - budget) <= 1.0


def test_solved_schedule_runs_through_the_stages() -> None:
    bank = SignalBank(images=2, grid=(24, 24), text_lengths=(4, 2))
    config = PDropConfig(keep=192, layers=(8, 16, 24))
    outcome = run_method(config, bank, num_layers=32)
    ratio = solve_ratio(192, 576, (8, 16, 24), 32)
    assert outcome.stage_sizes == [stage_count(576, ratio, s) for s in (1, 2, 3)]
    average = (8 * 576 + 8 * sum(outcome.stage_sizes)) / 32
    assert abs(average - 192) <= 1.0


def test_explicit_layers_that_cannot_meet_the_budget_are_an_error() -> None:
    with pytest.raises(ValueError, match="keep=128"):
        solve_ratio(128, 576, (8, 16, 24), 32)  # 8 of 32 layers at 576 already average 144
    for keep in (128, 0.222):
        with pytest.raises(ValueError, match="cannot be met with layers=\\[8, 16, 24\\]"):
            resolved(PDropConfig(keep=keep, layers=(8, 16, 24)), 32, 576)
    # A fixed ratio ignores keep: nothing to meet.
    assert resolved(PDropConfig(keep=0.1, layers=(8, 16, 24), ratio=0.5), 32, 576).layers == (8, 16, 24)


@pytest.mark.parametrize(
    "keep, layers",
    [(0.5, (8, 16, 24)), (0.333, (5, 11, 16)), (0.222, (4, 7, 11)), (128, (4, 7, 11)), (0.111, (2, 4, 5))],
)
def test_unset_layers_move_earlier_when_the_first_segment_would_cost_over_half(keep, layers) -> None:
    config = resolved(PDropConfig(keep=keep), 32, 576)
    assert config.layers == layers
    bank = SignalBank(images=1, grid=(24, 24), text_lengths=(3,))
    sizes = run_method(PDropConfig(keep=keep), bank, num_layers=32).stage_sizes
    bounds = (0, *layers, 32)
    counts = [576, *sizes]
    average = sum(c * (bounds[s + 1] - bounds[s]) for s, c in enumerate(counts)) / 32
    assert abs(average - PDropConfig(keep=keep).budget(576)) <= 1.0


def test_keep_everything_solves_to_no_dropping() -> None:
    assert solve_ratio(576, 576, (8, 16, 24), 32) == 1.0


def test_each_stage_ranks_by_its_own_layer_attention() -> None:
    bank = SignalBank(images=2, grid=(4, 6), text_lengths=(3, 2), seed=11)
    config = PDropConfig(keep=12, ratio=0.5)
    outcome = run_method(config, bank, num_layers=32)
    for i in range(2):
        alive = torch.arange(24)
        for layer, count in zip((8, 16, 24), (12, 6, 3), strict=True):
            attention = bank[f"attn_last_next@llm:{layer}"][i, alive]
            alive = alive[attention.topk(count).indices].sort().values
        assert torch.equal(outcome.keep[i], alive)


def test_count_budget_on_a_fixed_grid_family_is_decided_at_prune() -> None:
    """LLaVA-1.5's image size is known from its config: an int keep chooses earlier layers
    (layers=None) or is refused at prune() (explicit layers), before the model is touched."""
    import vtprune
    from vtprune.testing import tiny_llava

    model = tiny_llava(layers=10)
    n = vtprune.api.adapter_for(model).image_tokens
    config = vtprune.validate(model, "pdrop", keep=n // 9)
    assert config.layers != (8, 16, 24)
    with pytest.raises(ValueError, match="cannot be met with layers"):
        vtprune.validate(model, "pdrop", keep=n // 9, layers=(8, 16, 24))
    assert vtprune.active_handle(model) is None


@pytest.mark.parametrize("family", ["qwen2_vl", "llava_next"])
def test_count_budget_on_a_dynamic_family_is_decided_per_image(family) -> None:
    """Image-dependent token counts: layers=None keeps the paper's layers with an int
    keep (the share is unknown at prune()), and an image whose budget they cannot meet
    is an error at its first forward naming keep and the smallest count that works;
    that count then runs."""
    import re

    import vtprune
    from helpers import FAMILIES, image_token_counts
    from vtprune.testing import make_batch

    spec = next(f for f in FAMILIES if f.name == family)
    model = spec.build(layers=10)
    batch = make_batch(model, [[3, spec.image(1), 4]])
    assert vtprune.validate(model, "pdrop", keep=2).layers == (8, 16, 24)
    handle = vtprune.prune(model, "pdrop", keep=2)
    with pytest.raises(ValueError, match=r"keep=2 \(tokens averaged over 10 layers\) cannot be met") as error:
        with torch.no_grad():
            model(**batch)
    message = str(error.value)
    if family == "qwen2_vl":  # one grid per image: the smallest count for the image
        smallest = int(re.search(r"smallest keep that works for this image is (\d+)", message).group(1))
    else:  # base grid and tiles share the image's budget
        found = re.search(r"share of at least (\d+).*about \d+ \* \(image tokens\) / (\d+)", message)
        total = sum(image_token_counts(model, batch, 0))
        smallest = -(-int(found.group(1)) * total // int(found.group(2))) + 1  # rounding of the split: one more
    handle.remove()
    handle = vtprune.prune(model, "pdrop", keep=smallest)
    with torch.no_grad():
        model(**batch)
    assert handle.stats is not None
    handle.remove()
