import math

import pytest

import torch

from vtprune.pruning_methods.divprune import DivPruneConfig, select_divprune
from vtprune.signals import Signals

from .method_inputs import SignalBank, signals_for


def farthest_point_reference(visual: torch.Tensor, count: int) -> list[int]:
    """One image, as the official code: the token whose nearest other token is farthest
    first, then each token maximising its minimum cosine distance to the kept set."""
    distance = 1 - torch.nn.functional.cosine_similarity(visual[:, None].double(), visual[None].double(), dim=-1)
    n = visual.shape[0]
    first = max(range(n), key=lambda i: min(distance[i, j].item() for j in range(n) if j != i))
    kept = [first]
    while len(kept) < count:
        free = [j for j in range(n) if j not in kept]
        kept.append(max(free, key=lambda j: min(distance[j, u].item() for u in kept)))
    return kept


def test_matches_the_brute_force_farthest_point_order() -> None:
    bank = SignalBank(seed=6)
    keep = select_divprune(signals_for(bank, "visual"), 10, DivPruneConfig(keep=10))
    for i in range(bank.images):
        assert keep[i].tolist() == farthest_point_reference(bank["visual"][i], 10)


def test_spreads_over_directions() -> None:
    # Unit vectors at these angles: 0, 5, 10 and 200, 205 degrees are near-duplicates.
    angles = torch.tensor([0.0, 5.0, 10.0, 100.0, 200.0, 205.0]) * math.pi / 180
    visual = torch.stack([angles.cos(), angles.sin()], dim=-1)[None]
    keep = select_divprune(Signals.from_tensors((2, 3), visual=visual), 3, DivPruneConfig(keep=3))
    # First 100 degrees (its nearest other token is 90 degrees away), then the farthest
    # from it, 205 (105 degrees), then 0 (100 degrees from the nearer of the two).
    assert keep[0].tolist() == [3, 5, 0]
    assert keep[0].tolist() == farthest_point_reference(visual[0], 3)


def official_divprune(features: torch.Tensor, count: int) -> list[int]:
    """One image, as the official ``DivPrune`` loop (vbdi/divprune): cosine distance
    matrix; first the column whose second-smallest distance (its nearest other token) is
    largest, then each column maximising its minimum distance to the selected rows."""
    normed = features / features.norm(dim=1, keepdim=True)
    distance = 1.0 - normed @ normed.t()
    chosen = torch.empty(count, dtype=torch.long)
    for i in range(count):
        if i == 0:
            scores = torch.topk(distance, 2, dim=0, largest=False).values[1, :]
        else:
            scores = torch.min(torch.index_select(distance, 0, chosen[:i]), dim=0).values
        chosen[i] = torch.argmax(scores)
    return chosen.tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("budget", [64, 128, 192])
def test_matches_the_official_loop_at_the_paper_budgets(seed, budget) -> None:
    bank = SignalBank(images=2, grid=(24, 24), dim=32, seed=seed)
    keep = select_divprune(signals_for(bank, "visual"), budget, DivPruneConfig(keep=budget))
    for i in range(2):
        assert keep[i].tolist() == official_divprune(bank["visual"][i], budget)
