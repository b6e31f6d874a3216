import pytest
import torch

from vtprune.pruning_methods.atp import ATPConfig, hybrid_scores, select_atp
from vtprune.registry import get_method
from vtprune.signals import Signals

RELEVANCE = torch.tensor([[0.0, 1.0, 2.0, 3.0]])  # minmax: 0, 1/3, 2/3, 1
SALIENCY = torch.tensor([[0.4, 0.1, 0.25, 0.2]])  # minmax: 1, 0, 1/2, 1/3


def signals(**tensors: torch.Tensor) -> Signals:
    return Signals.from_tensors((2, 2), **tensors)


def test_alpha_one_is_pure_text_relevance() -> None:
    keep = select_atp(signals(text_relevance=RELEVANCE), 2, ATPConfig(keep=2, alpha=1.0))
    assert set(keep[0].tolist()) == {3, 2}


def test_alpha_zero_is_pure_saliency() -> None:
    keep = select_atp(signals(vision_saliency=SALIENCY), 2, ATPConfig(keep=2, alpha=0.0))
    assert set(keep[0].tolist()) == {0, 2}


def test_mixed_score_is_the_weighted_sum_of_min_max_normalised_scores() -> None:
    score = hybrid_scores(signals(text_relevance=RELEVANCE, vision_saliency=SALIENCY), 0.5)
    expected = torch.tensor([[0.5, 1 / 6, 7 / 12, 2 / 3]])
    torch.testing.assert_close(score, expected)
    score = hybrid_scores(signals(text_relevance=RELEVANCE * 10 - 4, vision_saliency=SALIENCY * 3), 0.25)
    torch.testing.assert_close(
        score, 0.25 * torch.tensor([[0, 1 / 3, 2 / 3, 1]]) + 0.75 * torch.tensor([[1, 0, 0.5, 1 / 3]])
    )


@pytest.mark.parametrize(
    "alpha, needs",
    [(0.0, {"vision_saliency"}), (1.0, {"text_relevance"}), (0.5, {"vision_saliency", "text_relevance"})],
)
def test_only_weighted_scores_are_requested(alpha: float, needs: set) -> None:
    (stage,) = get_method("atp").stages(ATPConfig(alpha=alpha), 32)
    assert stage.where == "pre_llm" and stage.needs == needs


def test_text_tower_is_stored_for_the_runtime() -> None:
    config = ATPConfig(text_tower="openai/clip-vit-large-patch14-336")
    assert ATPConfig.from_json(config.to_json()).text_tower == "openai/clip-vit-large-patch14-336"
