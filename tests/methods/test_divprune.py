import math

import torch

from vtprune.methods.divprune import DivPruneConfig, select_divprune
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
