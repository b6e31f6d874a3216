import pytest
import torch

from vtprune.pruning_methods.visionzip import VisionZipConfig, select_visionzip, dominant_and_contextual
from vtprune.registry import Selection
from vtprune.signals import Signals

from .method_inputs import SignalBank, signals_for


def test_split_follows_the_paper() -> None:
    assert dominant_and_contextual(64, 10 / 64) == (54, 10)
    assert dominant_and_contextual(128, 10 / 64) == (108, 20)
    assert dominant_and_contextual(192, 10 / 64) == (162, 30)
    assert dominant_and_contextual(1, 10 / 64) == (1, 0)
    assert dominant_and_contextual(40, 0.25) == (30, 10)


def two_groups() -> tuple[Signals, torch.Tensor]:
    """12 tokens; 0, 5, 10 most salient. Remaining in raster order: 1 2 3 4 6 7 8 9 11;
    two targets every 9 // 2 = 4th: tokens 1 and 6. Keys put 2, 3, 4 with 1 and
    7, 8, 9, 11 with 6."""
    saliency = torch.full((1, 12), 0.01)
    saliency[0, [0, 5, 10]] = torch.tensor([0.5, 0.4, 0.3])
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    key_of = {1: a, 2: a + 0.1 * b, 3: a, 4: a - 0.2 * b, 6: b, 7: b, 8: b + 0.3 * a, 9: b, 11: b - 0.1 * a}
    keys = torch.stack([key_of.get(j, a + b) for j in range(12)])[None]
    visual = torch.arange(12 * 3, dtype=torch.float32).reshape(1, 12, 3) ** 1.5
    return Signals.from_tensors((3, 4), visual=visual, vision_saliency=saliency, vision_keys=keys), visual


def test_contextual_tokens_are_the_means_of_their_groups() -> None:
    signals, visual = two_groups()
    out = select_visionzip(signals, 5, VisionZipConfig(keep=5, contextual_ratio=0.4, merge="mean"))
    assert isinstance(out, Selection)
    assert out.keep[0].tolist() == [0, 5, 10, 1, 6]
    expected = torch.stack(
        [
            visual[0, 0],
            visual[0, 5],
            visual[0, 10],
            visual[0, [1, 2, 3, 4]].mean(0),
            visual[0, [6, 7, 8, 9, 11]].mean(0),
        ]
    )
    torch.testing.assert_close(out.features[0], expected)
    # Each token's column in keep: its own if dominant, else its contextual target's.
    assert out.owner[0].tolist() == [0, 3, 3, 3, 3, 1, 4, 4, 4, 4, 2, 4]


def test_official_contextual_token_is_the_target_plus_the_mean_of_its_group() -> None:
    signals, visual = two_groups()
    out = select_visionzip(signals, 5, VisionZipConfig(keep=5, contextual_ratio=0.4))
    torch.testing.assert_close(out.features[0, 3], visual[0, 1] + visual[0, [2, 3, 4]].mean(0))
    torch.testing.assert_close(out.features[0, 4], visual[0, 6] + visual[0, [7, 8, 9, 11]].mean(0))


def official_visionzip(saliency, keys, hidden, dominant_num, contextual_num):
    """Batched, as ``visionzip/clip_encoder.py`` computes it (without the CLS token):
    returns the kept patch indices and features [dominant..., contextual...]."""
    batch, n, _ = hidden.shape
    topk_indices = saliency.topk(dominant_num, dim=1).indices
    mask = torch.ones(batch, n, dtype=torch.bool).scatter_(1, topk_indices, False)
    dominant_tokens = hidden.masked_select(~mask.unsqueeze(-1)).view(batch, dominant_num, -1)
    dominant_index = torch.arange(n).expand(batch, n)[~mask].view(batch, dominant_num)
    metric_filtered = keys[mask].view(batch, n - dominant_num, keys.shape[2])
    hidden_filtered = hidden.masked_select(mask.unsqueeze(-1)).view(batch, n - dominant_num, hidden.shape[2])
    index_filtered = torch.arange(n).expand(batch, n)[mask].view(batch, n - dominant_num)
    metric_normalized = metric_filtered / metric_filtered.norm(dim=-1, keepdim=True)
    step = max(1, metric_normalized.shape[1] // contextual_num)
    target_indices = torch.arange(0, metric_normalized.shape[1], step)[:contextual_num]
    target_tokens = metric_normalized[:, target_indices, :]
    others = ~torch.isin(torch.arange(metric_normalized.shape[1]), target_indices)
    tokens_to_merge = metric_normalized[:, others, :]
    similarity = torch.bmm(tokens_to_merge, target_tokens.transpose(1, 2))
    assign_one_hot = torch.zeros(batch, tokens_to_merge.shape[1], contextual_num)
    assign_one_hot.scatter_(2, similarity.argmax(dim=2).unsqueeze(-1), 1)
    counts = assign_one_hot.sum(dim=1).clamp(min=1).unsqueeze(-1)
    aggregated = torch.bmm(assign_one_hot.transpose(1, 2), hidden_filtered[:, others, :]) / counts
    contextual_tokens = hidden_filtered[:, target_indices, :] + aggregated
    index = torch.cat([dominant_index, index_filtered[:, target_indices]], dim=1)
    return index, torch.cat([dominant_tokens, contextual_tokens], dim=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("budget, split", [(64, (54, 10)), (128, (108, 20)), (192, (162, 30))])
def test_matches_the_official_code_at_the_paper_budgets(seed, budget, split) -> None:
    bank = SignalBank(images=2, grid=(24, 24), dim=32, key_dim=16, seed=seed)
    out = select_visionzip(signals_for(bank, "visual", "vision_saliency", "vision_keys"), budget, VisionZipConfig(keep=budget))
    index, features = official_visionzip(bank["vision_saliency"], bank["vision_keys"], bank["visual"], *split)
    for i in range(2):
        ours = dict(zip(out.keep[i].tolist(), out.features[i]))
        assert set(ours) == set(index[i].tolist())
        for slot, token in enumerate(index[i].tolist()):
            torch.testing.assert_close(ours[token], features[i, slot], atol=1e-5, rtol=1e-5)


def visionzip_reference(saliency, keys, visual, budget, ratio):
    """One image, the official steps with Python loops."""
    dominant_count, contextual = dominant_and_contextual(budget, ratio)
    dominant = saliency.topk(dominant_count).indices.tolist()
    remaining = [j for j in range(saliency.shape[0]) if j not in dominant]
    step = max(1, len(remaining) // contextual)
    targets = remaining[::step][:contextual]
    groups = {t: [t] for t in targets}
    unit = torch.nn.functional.normalize(keys, dim=-1)
    for j in remaining:
        if j not in targets:
            groups[max(targets, key=lambda t: float(unit[j] @ unit[t]))].append(j)
    features = {j: visual[j] for j in dominant} | {t: visual[g].mean(0) for t, g in groups.items()}
    return features


def test_group_mean_matches_the_steps_on_random_inputs() -> None:
    bank = SignalBank(seed=12)
    config = VisionZipConfig(keep=13, merge="mean")
    out = select_visionzip(signals_for(bank, "visual", "vision_saliency", "vision_keys"), 13, config)
    for i in range(bank.images):
        expected = visionzip_reference(
            bank["vision_saliency"][i], bank["vision_keys"][i], bank["visual"][i], 13, 10 / 64
        )
        assert set(out.keep[i].tolist()) == set(expected)
        for slot, token in enumerate(out.keep[i].tolist()):
            torch.testing.assert_close(out.features[i, slot], expected[token])
