import math

import pytest
import torch

from vtprune.pruning_methods.sts import STSConfig, pool_size, repulsion, select_instruction, select_structure
from vtprune.registry import get_method
from vtprune.signals import Signals

from .method_inputs import SignalBank, run_method, signals_for


def blob_image(rows: int = 12, cols: int = 12, dim: int = 16):
    """Saliency concentrated in one corner blob, features varying smoothly over the grid."""
    gen = torch.Generator().manual_seed(0)
    n = rows * cols
    r, c = torch.arange(n) // cols, torch.arange(n) % cols
    saliency = torch.exp(-((r - 2.0) ** 2 + (c - 3.0) ** 2) / 8) + 0.01 * torch.rand(n, generator=gen)
    smooth = torch.stack([torch.sin(r / 3.0), torch.cos(c / 3.0), torch.sin((r + c) / 4.0), torch.ones(n)], -1)
    visual = smooth @ torch.randn(4, dim, generator=gen) + 0.3 * torch.randn(n, dim, generator=gen)
    coords = torch.stack([r, c], -1).float()
    return visual[None], saliency[None], coords


def mean_distance_to_nearest_kept(coords: torch.Tensor, keep: torch.Tensor) -> float:
    return torch.cdist(coords, coords[keep]).amin(dim=-1).mean().item()


def test_stage_one_covers_the_grid_better_than_saliency_top_k() -> None:
    visual, saliency, coords = blob_image()
    signals = Signals.from_tensors((12, 12), visual=visual, vision_saliency=saliency)
    keep = select_structure(signals, 24, STSConfig(keep=12))
    assert keep.shape == (1, 24)  # M1 = 2B
    top_k = saliency[0].topk(24).indices
    sts = mean_distance_to_nearest_kept(coords, keep[0])
    attention_top_k = mean_distance_to_nearest_kept(coords, top_k)
    assert sts < 1.3 and attention_top_k > 3.5  # measured 1.19 vs 3.62 cells
    assert keep[0, 0] == saliency[0].argmax()  # the first token is the most salient


def energy_reference(visual, saliency, coords, size, config, sigma_p) -> list[int]:
    """One image: recompute U(i) from scratch over the kept set at every step."""
    unit = torch.nn.functional.normalize(visual.double(), dim=-1)
    kept = [int(saliency.argmax())]
    while len(kept) < size:
        best, best_energy = None, math.inf
        for i in range(visual.shape[0]):
            if i in kept:
                continue
            energy = 0.0
            for s in kept:
                d2 = float(((coords[i] - coords[s]) ** 2).sum())
                cos = float(unit[i] @ unit[s])
                energy += config.w_p * math.exp(-d2 / sigma_p**2) + config.w_f * math.exp(-(1 - cos) / config.sigma_f)
            if energy < best_energy:
                best, best_energy = i, energy
        kept.append(best)
    return kept


def test_stage_one_is_the_greedy_energy_minimiser() -> None:
    bank = SignalBank(images=2, grid=(5, 5), text_lengths=(2, 2), seed=3)
    config = STSConfig(keep=5, w_p=0.7, w_f=1.3, sigma_f=0.4)
    signals = signals_for(bank, "visual", "vision_saliency")
    keep = select_structure(signals, 10, config)
    for i in range(2):
        expected = energy_reference(
            bank["visual"][i], bank["vision_saliency"][i], signals.coords[i], 10, config, sigma_p=5 / 4
        )
        assert keep[i].tolist() == expected


def test_default_spatial_range_is_a_quarter_of_the_grid_side() -> None:
    bank = SignalBank(images=1, grid=(6, 8), text_lengths=(2,), seed=2)
    signals = signals_for(bank, "visual", "vision_saliency")
    default = select_structure(signals, 12, STSConfig(keep=6))
    explicit = select_structure(signals, 12, STSConfig(keep=6, sigma_p=2.0))  # max(6, 8) / 4
    other = select_structure(signals, 12, STSConfig(keep=6, sigma_p=0.5))
    assert torch.equal(default, explicit) and not torch.equal(default, other)


def test_feature_norm_saliency_needs_only_the_features() -> None:
    (first, _) = get_method("sts").stages(STSConfig(saliency="norm"), 32)
    assert first.needs == {"visual"}
    bank = SignalBank(images=2, seed=4)
    keep = select_structure(signals_for(bank, "visual"), 12, STSConfig(keep=6, saliency="norm"))
    assert torch.equal(keep[:, 0], bank["visual"].norm(dim=-1).argmax(dim=1))


def test_pool_size_is_twice_the_budget_capped_by_the_tokens() -> None:
    config = STSConfig()
    assert pool_size(128, 576, config) == 256
    assert pool_size(400, 576, config) == 576
    assert pool_size(10, 576, STSConfig(pool_factor=1.5)) == 15


def test_stage_two_keeps_what_the_instruction_attends_to_most() -> None:
    rows = torch.tensor(
        [
            [[0.1, 0.5, 0.2, 0.2, 0.0], [0.3, 0.1, 0.1, 0.5, 0.0], [9.0, 0.0, 0.0, 0.0, 9.0]],  # last row is padding
            [[0.0, 0.0, 0.1, 0.2, 0.7], [0.6, 0.0, 0.1, 0.2, 0.1], [0.0, 0.0, 0.0, 0.0, 0.0]],
        ]
    )
    mask = torch.tensor([[True, True, False], [True, True, False]])
    signals = Signals.from_tensors((1, 5), **{"attn_rows@llm:2": rows, "text_mask": mask})
    keep = select_instruction(signals, 2, STSConfig(keep=2))
    # means over real rows: [0.2, 0.3, 0.15, 0.35, 0.0] and [0.3, 0.0, 0.1, 0.2, 0.4]
    assert [set(row.tolist()) for row in keep] == [{1, 3}, {0, 4}]


def test_two_stages_end_to_end() -> None:
    bank = SignalBank(images=2, grid=(8, 8), text_lengths=(4, 2), seed=5)
    outcome = run_method(STSConfig(keep=10), bank)
    assert outcome.stage_sizes == [20, 10]
    pool = select_structure(signals_for(bank, "visual", "vision_saliency"), 20, STSConfig(keep=10))
    mask = bank.text_mask().float()
    rows = bank["attn_rows@llm:2"]
    score = (rows * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    for i in range(2):
        candidates = pool[i]
        expected = candidates[score[i, candidates].topk(10).indices].sort().values
        assert torch.equal(outcome.keep[i], expected)


def stepwise_structure(signals: Signals, pool: int, config: STSConfig) -> torch.Tensor:
    """Stage 1 as first written: each step computes the picked tokens' spatial and
    feature terms afresh and masks the picked tokens before the argmin (float32)."""
    n = signals.num_tokens
    similarity = torch.nn.functional.normalize(signals.visual.float(), dim=-1, eps=1e-12)
    similarity = similarity @ similarity.transpose(1, 2)
    saliency = signals["vision_saliency"].float() if config.saliency == "vision" else signals.visual.float().norm(dim=-1)
    coords = signals.coords
    sigma_p = config.sigma_p if config.sigma_p is not None else max(signals.grid) / 4.0
    image = torch.arange(signals.num_images)
    chosen = torch.zeros(signals.num_images, n, dtype=torch.bool)
    energy = torch.zeros(signals.num_images, n)
    token, picks = saliency.argmax(dim=1), []
    for step in range(pool):
        picks.append(token)
        chosen[image, token] = True
        if step == pool - 1:
            break
        distance2 = ((coords - coords[image, token][:, None]) ** 2).sum(dim=-1)
        spatial = torch.exp(-distance2 / sigma_p**2)
        semantic = torch.exp(-(1.0 - similarity[image, token]) / config.sigma_f)
        energy += config.w_p * spatial + config.w_f * semantic
        token = energy.masked_fill(chosen, float("inf")).argmin(dim=1)
    return torch.stack(picks, dim=1)


@pytest.mark.parametrize("grid, images, pool, seed", [((5, 7), 2, 17, 0), ((12, 12), 1, 96, 1), ((9, 4), 3, 30, 2)])
def test_stage_one_equals_the_step_by_step_update_exactly(grid, images, pool, seed) -> None:
    # The precomputed pairwise rows give the same float32 energies, hence the same picks
    # (ties included: rounded features make many equal cosines).
    bank = SignalBank(images=images, grid=grid, text_lengths=(2,) * images, seed=seed)
    bank["visual"] = bank["visual"].round() if seed == 0 else bank["visual"]
    for config in (STSConfig(keep=4), STSConfig(keep=4, w_p=0.3, w_f=2.0, sigma_f=0.2, sigma_p=1.5, saliency="norm")):
        signals = signals_for(bank, "visual", "vision_saliency")
        expected = stepwise_structure(signals, pool, config)
        assert torch.equal(select_structure(signals_for(bank, "visual", "vision_saliency"), pool, config), expected)


def test_repulsion_rows_are_the_pairwise_terms() -> None:
    bank = SignalBank(images=1, grid=(3, 4), text_lengths=(2,), seed=6)
    config = STSConfig(keep=2, w_p=0.5, w_f=2.0, sigma_f=0.25)
    pair = repulsion(signals_for(bank, "visual"), config)[0]
    unit = torch.nn.functional.normalize(bank["visual"][0].double(), dim=-1)
    coords = torch.tensor([[r, c] for r in range(3) for c in range(4)], dtype=torch.float64)
    i, s = 5, 10  # (1, 1) and (2, 2): squared distance 2, sigma_p = 4 / 4
    value = 0.5 * math.exp(-float(((coords[i] - coords[s]) ** 2).sum()) / 1.0) + 2.0 * math.exp(
        -(1 - float(unit[i] @ unit[s])) / 0.25
    )
    assert pair[s, i].item() == pytest.approx(value, rel=1e-5)
