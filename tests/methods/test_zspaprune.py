import torch

from vtprune.pruning_methods.scoring import prompt_relevance
from vtprune.pruning_methods.zspaprune import ZSPAPruneConfig, core_size, select_zspaprune

from .method_inputs import SignalBank, signals_for


def greedy_reference(visual: torch.Tensor, seeds: list[int], count: int, rule) -> list[int]:
    """One image: add argmin over j not kept of rule(cos(j, u) for u kept)."""
    cos = torch.nn.functional.cosine_similarity(visual[:, None].double(), visual[None].double(), dim=-1)
    kept = list(seeds)
    while len(kept) < count:
        free = [j for j in range(visual.shape[0]) if j not in kept]
        kept.append(min(free, key=lambda j: rule(cos[j, u].item() for u in kept)))
    return kept


def relevance_of(bank: SignalBank) -> torch.Tensor:
    return prompt_relevance(bank["visual"], bank["text_embeds"], bank.text_mask())


def test_all_core_keeps_the_most_relevant_tokens() -> None:
    bank = SignalBank(seed=1)
    keep = select_zspaprune(
        signals_for(bank, "visual", "text_embeds"), 10, ZSPAPruneConfig(keep=10, relevance_fraction=1.0)
    )
    expected = relevance_of(bank).topk(10, dim=1).indices
    for i in range(bank.images):
        assert set(keep[i].tolist()) == set(expected[i].tolist())


def test_no_core_picks_farthest_points_by_the_max_rule() -> None:
    bank = SignalBank(seed=2)
    keep = select_zspaprune(
        signals_for(bank, "visual", "text_embeds"), 12, ZSPAPruneConfig(keep=12, relevance_fraction=0.0)
    )
    seeds = relevance_of(bank).argmax(dim=1)
    found_difference = False
    for i in range(bank.images):
        farthest = greedy_reference(bank["visual"][i], [int(seeds[i])], 12, max)
        buggy = greedy_reference(bank["visual"][i], [int(seeds[i])], 12, min)
        assert keep[i].tolist() == farthest
        found_difference |= set(farthest) != set(buggy)
    assert found_difference  # the inputs tell the farthest-point rule from the min bug


def test_default_keeps_a_relevant_core_then_diversity() -> None:
    bank = SignalBank(seed=3)
    keep = select_zspaprune(signals_for(bank, "visual", "text_embeds"), 10, ZSPAPruneConfig(keep=10))
    core = core_size(10, 0.6)
    assert core == 6
    top = relevance_of(bank).topk(core, dim=1).indices
    for i in range(bank.images):
        assert set(keep[i, :core].tolist()) == set(top[i].tolist())
        assert keep[i].tolist() == greedy_reference(bank["visual"][i], keep[i, :core].tolist(), 10, max)


def test_padding_of_the_instruction_is_ignored() -> None:
    bank = SignalBank(seed=4)
    clean = select_zspaprune(signals_for(bank, "visual", "text_embeds"), 8, ZSPAPruneConfig(keep=8))
    padded = bank["text_embeds"].clone()
    padded[~bank.text_mask()] = 100.0
    bank["text_embeds"] = padded
    assert torch.equal(select_zspaprune(signals_for(bank, "visual", "text_embeds"), 8, ZSPAPruneConfig(keep=8)), clean)
