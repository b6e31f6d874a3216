import math

import torch

from vtprune.pruning_methods.sppruner import SPprunerConfig, merge_into_nearest, select_sppruner, subject_scores
from vtprune.signals import Signals

from .method_inputs import SignalBank, signals_for


def controlled_image(rows: int, cols: int, relevance: torch.Tensor, saliency: torch.Tensor, dim: int = 6) -> Signals:
    """Visual tokens whose cosine with the single prompt token is exactly ``relevance``."""
    n = rows * cols
    gen = torch.Generator().manual_seed(0)
    side = torch.nn.functional.normalize(torch.randn(n, dim - 1, generator=gen), dim=-1)
    visual = torch.cat([relevance[:, None], (1 - relevance[:, None] ** 2).sqrt() * side], dim=-1)
    text = torch.zeros(1, 1, dim)
    text[0, 0, 0] = 1.0
    return Signals.from_tensors(
        (rows, cols),
        visual=visual[None],
        vision_saliency=saliency[None],
        text_embeds=text,
        text_mask=torch.ones(1, 1, dtype=torch.bool),
    )


def ring(coords: torch.Tensor, a: int, b: int) -> int:
    return int((coords[a] - coords[b]).abs().max())


def test_keeps_subjects_then_their_grid_neighbours() -> None:
    rows = cols = 7
    n = rows * cols
    r, c = torch.arange(n) // cols, torch.arange(n) % cols
    # One subject blob around (2, 2); saliency and relevance agree.
    bump = torch.exp(-((r - 2.0) ** 2 + (c - 2.0) ** 2) / 3) + 0.001 * torch.arange(n) / n
    signals = controlled_image(rows, cols, 0.9 * bump / bump.max(), bump)
    config = SPprunerConfig(keep=12, subject_fraction=0.5)
    out = select_sppruner(signals, 12, config)
    score = subject_scores(signals, config.lam)[0]
    subjects = set(score.topk(6).indices.tolist())
    kept = set(out.keep[0].tolist())
    assert subjects <= kept
    coords = signals.coords[0]
    ring_tokens = kept - subjects
    assert len(ring_tokens) == 6
    assert all(min(ring(coords, j, s) for s in subjects) == 1 for j in ring_tokens)
    # ... the highest-scoring tokens of the first ring
    first_ring = [j for j in range(n) if j not in subjects and min(ring(coords, j, s) for s in subjects) == 1]
    assert ring_tokens == set(sorted(first_ring, key=lambda j: -score[j].item())[:6])


def test_rings_grow_outward_once_the_first_is_full() -> None:
    saliency = torch.zeros(25)
    saliency[12] = 1.0  # centre of a 5 x 5 grid
    signals = controlled_image(5, 5, torch.linspace(0.1, 0.2, 25), saliency)
    out = select_sppruner(signals, 12, SPprunerConfig(keep=12, lam=1.0, subject_fraction=1 / 12))
    coords = signals.coords[0]
    distances = sorted(ring(coords, j, 12) for j in out.keep[0].tolist())
    assert distances == [0] + [1] * 8 + [2] * 3


def merge_reference(coords, visual, keep):
    """One image: every dropped token, in raster order, joins its nearest kept token."""
    unit = torch.nn.functional.normalize(visual.double(), dim=-1)
    totals = {k: visual[k].double().clone() for k in keep}
    weights = {k: 1.0 for k in keep}
    for j in range(visual.shape[0]):
        if j in keep:
            continue
        owner = min(keep, key=lambda k: (ring(coords, j, k), -float(unit[j] @ unit[k]), k))
        w = max(0.0, float(unit[j] @ unit[owner]))
        totals[owner] += w * visual[j].double()
        weights[owner] += w
    return torch.stack([totals[k] / weights[k] for k in keep]).float()


def test_merged_features_are_the_stated_weighted_means() -> None:
    bank = SignalBank(seed=14)
    signals = signals_for(bank, "visual", "vision_saliency", "text_embeds")
    out = select_sppruner(signals, 9, SPprunerConfig(keep=9))
    for i in range(bank.images):
        expected = merge_reference(signals.coords[i], bank["visual"][i], out.keep[i].tolist())
        torch.testing.assert_close(out.features[i], expected, rtol=1e-5, atol=1e-5)


def test_merge_by_hand() -> None:
    # A 1 x 4 strip; kept tokens 0 and 3. Token 1 is next to 0, token 2 next to 3.
    visual = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [-1.0, 0.2], [0.0, 1.0]]])
    coords = torch.tensor([[[0.0, 0.0], [0.0, 1.0], [0.0, 2.0], [0.0, 3.0]]])
    merged, owner = merge_into_nearest(coords, visual, torch.tensor([[0, 3]]))
    assert owner.tolist() == [[0, 0, 1, 1]]  # columns of keep: token 1 into 0, token 2 into 3
    w1 = 1 / math.sqrt(2)  # cos(token 1, token 0)
    w2 = 0.2 / math.sqrt(1.04)  # cos(token 2, token 3)
    expected = torch.tensor([[(1 + w1) / (1 + w1), w1 / (1 + w1)], [-w2 / (1 + w2), (1 + 0.2 * w2) / (1 + w2)]])
    torch.testing.assert_close(merged[0], expected)
    # A dropped token whose cosine with its nearest kept token is <= 0 merges into none.
    visual[0, 1] = torch.tensor([-1.0, 0.0])
    assert merge_into_nearest(coords, visual, torch.tensor([[0, 3]]))[1].tolist() == [[0, -1, 1, 1]]
