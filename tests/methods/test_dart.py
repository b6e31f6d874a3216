"""DART against a transcription of the official ``get_retained_image_token``."""

import math

import pytest
import torch

from vtprune.pruning_methods.dart import DARTConfig, pivot_quotas, select_dart
from vtprune.signals import Signals

from .method_inputs import SignalBank, signals_for


def official_dart(keys, text_keys, hidden, text_hidden, max_num, image_pivots=4, text_pivots=4, order="sequence"):
    """One image, written after the official loop on one sequence [image tokens | text
    tokens]: pivots by key L1 norm, TOKEN_TOPK = max_num // (pivots) tokens claimed per
    pivot among the image tokens not yet taken, by the lowest cosine of the normed states.

    order="sequence" visits the pivots by sequence index (vtprune's documented order);
    order="set" iterates a Python set of the indices, as the official code does."""
    n = keys.shape[0]
    states = torch.cat([hidden, text_hidden])
    topk = max_num // (image_pivots + text_pivots)
    image_idx = keys.abs().sum(-1).topk(image_pivots).indices.tolist()
    query_idx = (text_keys.abs().sum(-1).topk(text_pivots).indices + n).tolist()
    pivots = set(image_idx + query_idx)
    visit = list(pivots) if order == "set" else sorted(pivots)
    valid = set(range(n)) - set(image_idx)
    kept = set(image_idx)
    for item in visit:
        valid_list = sorted(valid)
        cos = -torch.nn.functional.cosine_similarity(states[item], states[valid_list], dim=-1)
        chosen = [valid_list[i] for i in cos.topk(topk).indices.tolist()]
        kept.update(chosen)
        valid.difference_update(chosen)
    return kept


def dart_signals(bank: SignalBank) -> Signals:
    return signals_for(bank, "keys_rope@llm:2", "hidden_norm@llm:2", "text_keys_rope@llm:2", "text_hidden_norm@llm:2")


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("official_budget", [64, 128, 192])
def test_official_selection_at_the_official_count(seed, official_budget) -> None:
    """Given the official count (4 image pivots + 8 * (B // 8) claimed), the kept set is the official one."""
    bank = SignalBank(images=2, grid=(24, 24), dim=32, key_dim=16, text_lengths=(12, 12), seed=seed)
    count = 4 + 8 * (official_budget // 8)
    keep = select_dart(dart_signals(bank), count, DARTConfig(keep=count))
    for i in range(2):
        expected = official_dart(
            bank["keys_rope@llm:2"][i], bank["text_keys_rope@llm:2"][i],
            bank["hidden_norm@llm:2"][i], bank["text_hidden_norm@llm:2"][i], official_budget,
        )
        assert set(keep[i].tolist()) == expected


def test_exact_budget_shares_the_claims_and_overlaps_the_official() -> None:
    bank = SignalBank(images=1, grid=(24, 24), dim=32, key_dim=16, text_lengths=(12,), seed=5)
    keep = select_dart(dart_signals(bank), 128, DARTConfig(keep=128))
    assert keep.shape == (1, 128) and keep[0].unique().numel() == 128
    official = official_dart(
        bank["keys_rope@llm:2"][0], bank["text_keys_rope@llm:2"][0],
        bank["hidden_norm@llm:2"][0], bank["text_hidden_norm@llm:2"][0], 128,
    )
    assert len(official) == 132
    assert len(set(keep[0].tolist()) & official) >= 124  # 128 - 4 claims move between the last pivots


def test_budget_split_among_pivots() -> None:
    quotas = pivot_quotas(128, 4, torch.tensor([4, 2]))
    assert quotas.tolist() == [[16, 16, 16, 16, 15, 15, 15, 15], [21, 21, 21, 21, 20, 20, 0, 0]]
    assert int(quotas[1].sum()) + 4 == 128


def test_short_instruction_and_padded_rows() -> None:
    """An image whose instruction has fewer tokens than text_pivots uses them all; a
    batch equals its images alone."""
    bank = SignalBank(images=3, grid=(6, 8), text_lengths=(5, 2, 4), seed=3)
    names = ("keys_rope@llm:2", "hidden_norm@llm:2", "text_keys_rope@llm:2", "text_hidden_norm@llm:2")
    config = DARTConfig(keep=12)
    batch = select_dart(signals_for(bank, *names), 12, config)
    for i in range(3):
        alone = select_dart(signals_for(bank.image(i), *names), 12, config)
        assert set(alone[0].tolist()) == set(batch[i].tolist())


def test_keeps_pivots_and_the_tokens_least_duplicated_with_them() -> None:
    e0, e1 = torch.eye(4)[0], torch.eye(4)[1]

    hidden = torch.stack([e0, -e0, e0, e1, (0.5 * e0 - e1) / math.sqrt(1.25), e1])[None]
    keys = torch.tensor([[1.0, 1.0, 9.0, 1.0, 1.0, 5.0]])[..., None] * torch.ones(1, 6, 3)
    signals = Signals.from_tensors((2, 3), **{"keys_rope@llm:2": keys, "hidden_norm@llm:2": hidden})
    keep = select_dart(signals, 4, DARTConfig(keep=4, image_pivots=2, text_pivots=0))
    # pivots 2 (e0) and 5 (e1); 2 claims 1 (-e0), 5 claims 4; duplicates 0 and 3 go.
    assert set(keep[0].tolist()) == {2, 5, 1, 4}
