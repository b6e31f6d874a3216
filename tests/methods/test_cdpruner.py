import itertools

import pytest
import torch

from vtprune.pruning_methods.cdpruner import (
    CDPrunerConfig,
    conditional_kernel,
    greedy_dpp_map,
    relevance_weights,
    select_cdpruner,
)
from vtprune.pruning_methods.scoring import cosine_matrix, prompt_relevance
from vtprune.signals import Signals

from .method_inputs import SignalBank, signals_for


def kernel_of(bank: SignalBank, theta: float = 1.0) -> torch.Tensor:
    relevance = prompt_relevance(bank["visual"], bank["text_embeds"], bank.text_mask())
    return conditional_kernel(cosine_matrix(bank["visual"]), relevance_weights(relevance, theta))


def brute_force_steps(kernel: torch.Tensor, count: int) -> list[int]:
    """One image: at each step the token whose addition gives the largest determinant."""
    kernel = kernel.double()
    kept: list[int] = []
    for _ in range(count):
        free = [j for j in range(kernel.shape[0]) if j not in kept]
        kept.append(max(free, key=lambda j: torch.linalg.det(kernel[kept + [j]][:, kept + [j]]).item()))
    return kept


@pytest.mark.parametrize("seed, theta", [(0, 1.0), (1, 1.0), (2, 0.5), (3, 0.8)])
def test_greedy_steps_match_brute_force_determinants(seed: int, theta: float) -> None:
    bank = SignalBank(images=2, grid=(2, 4), dim=12, text_lengths=(3, 2), seed=seed)  # N = 8
    keep = select_cdpruner(signals_for(bank, "visual", "text_embeds"), 5, CDPrunerConfig(keep=5, theta=theta))
    kernel = kernel_of(bank, theta)
    for i in range(2):
        assert keep[i].tolist() == brute_force_steps(kernel[i], 5)


def test_greedy_reaches_the_best_set_when_features_are_orthogonal() -> None:
    # S = I: det L[S] is the product of r_i^2, maximised by the most relevant tokens,
    # which greedy adds in descending relevance.
    visual = torch.eye(8)[None]
    text = torch.tensor([[[0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.05, 0.6]]])
    signals = Signals.from_tensors(
        (2, 4), visual=visual, text_embeds=text, text_mask=torch.ones(1, 1, dtype=torch.bool)
    )
    keep = select_cdpruner(signals, 4, CDPrunerConfig(keep=4))
    assert keep[0].tolist() == [0, 4, 7, 2]
    relevance = prompt_relevance(visual, text, torch.ones(1, 1, dtype=torch.bool))
    kernel = conditional_kernel(cosine_matrix(visual), relevance_weights(relevance, 1.0))[0].double()
    best = max(itertools.combinations(range(8), 4), key=lambda s: torch.linalg.det(kernel[list(s)][:, list(s)]).item())
    assert set(best) == {0, 4, 7, 2}


def test_relevance_weights_are_positive_and_at_most_one() -> None:
    weights = relevance_weights(torch.tensor([[-0.5, 0.0, 0.25, 0.5]]), 1.0)
    assert weights.min() > 0 and weights.max() == pytest.approx(1.0)
    torch.testing.assert_close(weights[0, 1:3], torch.tensor([0.5, 0.75]), atol=1e-5, rtol=0)
    sharpened = relevance_weights(torch.tensor([[0.0, 1.0]]), 0.5)  # exp(0.5 * r)
    torch.testing.assert_close(sharpened, torch.exp(torch.tensor([[1e-6, 1.0]]) * 0.5))


def test_more_tokens_than_kernel_rank_fall_back_to_relevance() -> None:
    # Features in 2 dimensions give a rank-2 kernel: after 2 picks no token adds volume.
    gen = torch.Generator().manual_seed(0)
    visual = torch.randn(1, 8, 2, generator=gen)
    text = torch.randn(1, 2, 2, generator=gen)
    mask = torch.ones(1, 2, dtype=torch.bool)
    keep = select_cdpruner(
        Signals.from_tensors((2, 4), visual=visual, text_embeds=text, text_mask=mask), 5, CDPrunerConfig(keep=5)
    )
    assert keep[0].unique().numel() == 5
    relevance = prompt_relevance(visual, text, mask)[0]
    rest = [j for j in relevance.argsort(descending=True).tolist() if j not in keep[0, :2].tolist()]
    assert keep[0, 2:].tolist() == rest[:3]


def test_batched_map_is_each_image_alone() -> None:
    kernel = kernel_of(SignalBank(seed=9))
    fallback = torch.zeros(kernel.shape[:2])
    batched = greedy_dpp_map(kernel, 10, fallback)
    for i in range(kernel.shape[0]):
        assert torch.equal(greedy_dpp_map(kernel[i : i + 1], 10, fallback[i : i + 1])[0], batched[i])


def official_map(features: torch.Tensor, relevance: torch.Tensor, count: int) -> list[int]:
    """One image, the official ``encode_images`` from the relevance on: cosine kernel of
    the features, r = (r - min + 1e-6) / (max - min) of the negated cosine, fast greedy MAP."""
    normed = (features / features.norm(dim=-1, keepdim=True)).float()[None]
    similarity = normed @ normed.transpose(1, 2)
    r = (-relevance)[None]
    r = (r - r.min() + 1e-6) / (r.max() - r.min())
    kernel = r.unsqueeze(2) * similarity * r.unsqueeze(1)
    cis = torch.zeros((count, 1, kernel.shape[1]))
    di2s = torch.diagonal(kernel, dim1=1, dim2=2).clone()
    chosen = []
    for i in range(count):
        j = torch.argmax(di2s, dim=-1)
        chosen.append(int(j))
        eis = (kernel[0, j] - torch.einsum("tb,tbn->bn", cis[:i, :, j[0]], cis[:i])) / torch.sqrt(di2s[0, j]).unsqueeze(-1)
        cis[i] = eis
        di2s -= torch.square(eis)
        di2s[0, j] = -float("inf")
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("budget", [64, 128, 192])
def test_clip_relevance_matches_the_official_code_at_the_paper_budgets(seed, budget) -> None:
    """relevance="clip" on hand-built CLIP cosines: the official kept set (features wider
    than the budget, as LLaVA's 4096, so the kernel's rank is never used up)."""
    bank = SignalBank(images=2, grid=(24, 24), dim=640, seed=seed)
    cosine = bank["text_relevance"]  # stands for the CLIP cosine of each patch with the text
    signals = Signals.from_tensors((24, 24), visual=bank["visual"], clip_relevance=cosine)
    config = CDPrunerConfig(keep=budget, relevance="clip", text_tower="clip")
    keep = select_cdpruner(signals, budget, config)
    for i in range(2):
        assert sorted(keep[i].tolist()) == sorted(official_map(bank["visual"][i], cosine[i], budget))
