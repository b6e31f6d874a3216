import math

import torch

from vtprune.pruning_methods.coast import COASTConfig, normalised_entropy, select_coast, tail_counts

from .method_inputs import SignalBank, signals_for

NEEDS = ("attn_rows@llm:2", "attn_last@llm:2", "hidden@llm:2")


def coast_reference(rows, mask, last, hidden, budget, config) -> set[int]:
    """One image, the pseudo-code of the method written out with Python loops."""
    n = last.shape[0]
    s_glo = [max(rows[t, j].item() for t in range(rows.shape[0]) if mask[t]) for j in range(n)]
    total = sum(s_glo)
    entropy = -sum(p / total * math.log(p / total) for p in s_glo if p > 0) / math.log(n)
    n_anchor = math.floor(config.rho * budget + 1e-9)
    anchors = sorted(range(n), key=lambda j: -last[j].item())[:n_anchor]
    rest = budget - n_anchor
    n_tail = math.floor(rest * (config.a_min + (config.a_max - config.a_min) * entropy) + 1e-9)
    n_head = rest - n_tail
    k_r = max(1, min(n // 10, n - n_anchor - budget))
    refs = sorted(range(n), key=lambda j: s_glo[j])[:k_r]
    cos = torch.nn.functional.cosine_similarity(hidden[:, None], hidden[None], dim=-1)

    def score(c: int) -> float:
        near = max(cos[c, a].item() for a in anchors) if anchors else 0.0
        return near - sum(cos[c, r].item() for r in refs) / len(refs)

    others = sorted((c for c in range(n) if c not in anchors), key=score, reverse=True)
    return set(anchors) | set(others[:n_head]) | set(others[len(others) - n_tail :])


def test_entropy_is_zero_for_one_token_and_one_for_uniform_attention() -> None:
    one_hot = torch.zeros(2, 16)
    one_hot[0, 3] = 1.0
    one_hot[1] = 1.0 / 16
    assert torch.allclose(normalised_entropy(one_hot), torch.tensor([0.0, 1.0]), atol=1e-6)


def test_dispersed_attention_moves_budget_from_head_to_tail() -> None:
    config = COASTConfig(rho=0.5, a_min=0.1, a_max=0.9)
    tails = tail_counts(10, torch.tensor([0.0, 0.5, 1.0]), config).tolist()
    assert tails == [1, 5, 9]  # of the 10 non-anchor slots of a budget of 20


def test_matches_the_pseudo_code_with_focused_and_dispersed_attention() -> None:
    # Same hidden states and last-token attention for both images; image 0's
    # instruction attends to one token (low entropy), image 1's to all (high entropy).
    bank = SignalBank(images=2, grid=(8, 8), text_lengths=(3, 2), seed=2)
    rows = torch.rand(2, 3, 64, generator=torch.Generator().manual_seed(1)) * 1e-3  # no ties
    rows[0, :, 5] = 1.0
    rows[1, :2] = torch.rand(2, 64, generator=torch.Generator().manual_seed(0)) * 0.01 + 1.0
    rows[1, 2] = 0.0  # padding
    rows[1, 2, 9] = 50.0  # a padded row's value must not count
    bank["attn_rows@llm:2"] = rows
    bank["attn_last@llm:2"] = bank["attn_last@llm:2"][:1].expand(2, -1).clone()
    bank["hidden@llm:2"] = bank["hidden@llm:2"][:1].expand(2, -1, -1).clone()
    config = COASTConfig(keep=20, rho=0.5, a_min=0.1, a_max=0.9)
    keep = select_coast(signals_for(bank, *NEEDS), 20, config)
    mask = bank.text_mask()
    kept = []
    for i in range(2):
        expected = coast_reference(rows[i], mask[i], bank["attn_last@llm:2"][i], bank["hidden@llm:2"][i], 20, config)
        kept.append(set(keep[i].tolist()))
        assert kept[i] == expected
    # Same anchors; the dispersed image gives more of the other 10 slots to the tail.
    entropy = normalised_entropy(rows.masked_fill(~mask[..., None], float("-inf")).amax(dim=1))
    assert entropy[0] < 0.3 and entropy[1] > 0.99
    assert tail_counts(10, entropy, config).tolist() == [1, 8]


def test_default_config_matches_the_pseudo_code_on_random_inputs() -> None:
    bank = SignalBank(seed=8)
    config = COASTConfig(keep=16)
    keep = select_coast(signals_for(bank, *NEEDS), 16, config)
    mask = bank.text_mask()
    for i in range(bank.images):
        expected = coast_reference(
            bank["attn_rows@llm:2"][i], mask[i], bank["attn_last@llm:2"][i], bank["hidden@llm:2"][i], 16, config
        )
        assert set(keep[i].tolist()) == expected


def test_anchors_are_the_top_last_token_attention() -> None:
    bank = SignalBank(seed=1)
    config = COASTConfig(keep=10, rho=0.8)
    keep = select_coast(signals_for(bank, *NEEDS), 10, config)
    anchors = bank["attn_last@llm:2"].topk(8, dim=1).indices
    for i in range(bank.images):
        assert set(anchors[i].tolist()) <= set(keep[i].tolist())


def test_no_anchors_when_rho_is_zero() -> None:
    bank = SignalBank(seed=6)
    config = COASTConfig(keep=9, rho=0.0)
    keep = select_coast(signals_for(bank, *NEEDS), 9, config)
    mask = bank.text_mask()
    for i in range(bank.images):
        expected = coast_reference(
            bank["attn_rows@llm:2"][i], mask[i], bank["attn_last@llm:2"][i], bank["hidden@llm:2"][i], 9, config
        )
        assert set(keep[i].tolist()) == expected
