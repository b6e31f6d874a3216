import torch

from vtprune.methods.visionzip import VisionZipConfig, select_visionzip, split_budget
from vtprune.registry import Selection
from vtprune.signals import Signals

from .method_inputs import SignalBank, signals_for


def test_split_follows_the_paper() -> None:
    assert split_budget(64, 10 / 64) == (54, 10)
    assert split_budget(128, 10 / 64) == (108, 20)
    assert split_budget(192, 10 / 64) == (162, 30)
    assert split_budget(1, 10 / 64) == (1, 0)
    assert split_budget(40, 0.25) == (30, 10)


def test_contextual_tokens_are_the_means_of_their_groups() -> None:
    # 12 tokens; 0, 5, 10 most salient. Remaining in raster order: 1 2 3 4 6 7 8 9 11;
    # two targets every 9 // 2 = 4th: tokens 1 and 6. Keys put 2, 3, 4 with 1 and
    # 7, 8, 9, 11 with 6.
    saliency = torch.full((1, 12), 0.01)
    saliency[0, [0, 5, 10]] = torch.tensor([0.5, 0.4, 0.3])
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    key_of = {1: a, 2: a + 0.1 * b, 3: a, 4: a - 0.2 * b, 6: b, 7: b, 8: b + 0.3 * a, 9: b, 11: b - 0.1 * a}
    keys = torch.stack([key_of.get(j, a + b) for j in range(12)])[None]
    visual = torch.arange(12 * 3, dtype=torch.float32).reshape(1, 12, 3) ** 1.5
    signals = Signals.from_tensors((3, 4), visual=visual, vision_saliency=saliency, vision_keys=keys)
    out = select_visionzip(signals, 5, VisionZipConfig(keep=5, contextual_ratio=0.4))
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


def visionzip_reference(saliency, keys, visual, budget, ratio):
    """One image, the official steps with Python loops."""
    dominant_count, contextual = split_budget(budget, ratio)
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


def test_matches_the_official_steps_on_random_inputs() -> None:
    bank = SignalBank(seed=12)
    out = select_visionzip(signals_for(bank, "visual", "vision_saliency", "vision_keys"), 13, VisionZipConfig(keep=13))
    for i in range(bank.images):
        expected = visionzip_reference(
            bank["vision_saliency"][i], bank["vision_keys"][i], bank["visual"][i], 13, 10 / 64
        )
        assert set(out.keep[i].tolist()) == set(expected)
        for slot, token in enumerate(out.keep[i].tolist()):
            torch.testing.assert_close(out.features[i, slot], expected[token])
