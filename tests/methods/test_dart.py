import math

import pytest
import torch

from vtprune.methods.dart import DARTConfig, pivot_quotas, select_dart
from vtprune.signals import Signals

from .method_inputs import SignalBank, signals_for


def dart_reference(keys: torch.Tensor, hidden: torch.Tensor, budget: int, pivots: int) -> set[int]:
    """One image, as the official loop: pivots by key L1 norm, each claims its least similar free tokens."""
    n = keys.shape[0]
    norms = keys.abs().sum(-1).tolist()
    chosen = sorted(range(n), key=lambda j: -norms[j])[:pivots]
    free = [j for j in range(n) if j not in chosen]
    kept = list(chosen)
    for p, quota in zip(chosen, pivot_quotas(budget, pivots), strict=True):
        cos = {j: torch.nn.functional.cosine_similarity(hidden[p], hidden[j], dim=0).item() for j in free}
        taken = sorted(free, key=lambda j: cos[j])[:quota]
        kept += taken
        free = [j for j in free if j not in taken]
    return set(kept)


def test_keeps_pivots_and_the_tokens_least_duplicated_with_them() -> None:
    e0, e1 = torch.eye(4)[0], torch.eye(4)[1]
    hidden = torch.stack([e0, -e0, e0, e1, (0.5 * e0 - e1) / math.sqrt(1.25), e1])[None]
    keys = torch.tensor([[1.0, 1.0, 9.0, 1.0, 1.0, 5.0]])[..., None] * torch.ones(1, 6, 3)
    signals = Signals.from_tensors((2, 3), **{"keys@llm:2": keys, "hidden@llm:2": hidden})
    keep = select_dart(signals, 4, DARTConfig(keep=4, pivots=2))
    # pivots 2 (e0) and 5 (e1); 2 claims 1 (-e0), 5 claims 4; duplicates 0 and 3 go.
    assert set(keep[0].tolist()) == {2, 5, 1, 4}


def test_budget_split_among_pivots() -> None:
    assert pivot_quotas(128, 8) == [15] * 8
    assert pivot_quotas(20, 8) == [2, 2, 2, 2, 1, 1, 1, 1]
    assert sum(pivot_quotas(77, 8)) + 8 == 77


@pytest.mark.parametrize("budget, pivots", [(12, 8), (20, 4), (7, 3), (3, 8)])
def test_matches_the_official_loop(budget: int, pivots: int) -> None:
    bank = SignalBank(seed=4)
    signals = signals_for(bank, "keys@llm:2", "hidden@llm:2")
    keep = select_dart(signals, budget, DARTConfig(keep=budget, pivots=pivots))
    for i in range(bank.images):
        expected = dart_reference(bank["keys@llm:2"][i], bank["hidden@llm:2"][i], budget, min(pivots, budget))
        assert set(keep[i].tolist()) == expected
