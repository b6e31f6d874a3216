"""``pdrop``: PyramidDrop, staged attention ranking inside the language model.

Paper: "PyramidDrop: Accelerating Your Large Vision-Language Models via Pyramid
Visual Redundancy Reduction", arXiv 2410.17247 (CVPR 2025; official code:
github.com/Cooperx521/PyramidDrop, ``llava/model/modeling_llama_pdrop.py``).

The language model is cut into segments (after layers 8, 16 and 24 of 32); at the
end of each segment the visual tokens are ranked by the attention they receive from
the prompt's last instruction token and only a share lambda of them goes on, so the
token count falls like a pyramid (100%, lambda, lambda^2, lambda^3 of the image's
tokens).

As in the official code (``pdrop_rank_drop``): the ranking at a boundary after layer K
uses the attention of the *next* layer, K+1: its input norm and q/k projections applied
to the hidden states after layer K, with RoPE at the current positions, softmax over
every key the last token may see, heads averaged (signal ``attn_last_next@llm:K``,
recomputed for that one query row; SDPA stays on). The last instruction token is the
last real token of its row, found from the attention mask. After each drop the official
code renumbers the positions of what is left (``position_ids = arange(len)``) and
shifts a decoding step's ids by what each stage dropped; the default here is the same
(``positions="compact"``, unlike the library-wide "original"), on 1-D RoPE models. On
M-RoPE models (Qwen2-VL, Qwen2.5-VL) the ids inside the language model stay the
original ones. Per-stage counts follow ``int(N * lambda**s)`` in the official code;
here ``round(N * lambda**s)`` (at least 1), so a stage may keep one token more.

``keep`` is an *average over layers*: with ``ratio=None`` (the default) lambda is
solved so that the visual tokens averaged over all decoder layers equal the budget,
which makes PDrop comparable with methods that prune once. With a fixed ``ratio``
(0.5 in the paper) the schedule ignores ``keep``. Stage layers are given for a
32-layer model and scaled to the model's depth.

The paper's layers 8/16/24 make the first quarter of the layers see every token, so
they cannot average fewer than a quarter of the tokens (128 or 64 of 576). With
``layers=None`` (the default) the paper's stages are scaled earlier in proportion
whenever the first segment would cost more than half the budget (at keep 0.5 and above
they are the paper's; at 0.222 they follow layers 4, 7, 11 of 32); the handle's config
shows the layers used. That needs the budget as a share of an image, known when
pruning is applied for a ratio ``keep`` or, with a count, on a family whose images all
have the same number of tokens (LLaVA-1.5); there a budget the layers cannot meet is
an error at ``prune()``. A count on a family with image-dependent token counts
(Qwen2-VL, Qwen2.5-VL, LLaVA-NeXT, OneVision) keeps the paper's layers, and an image
whose budget they cannot meet is an error at its first forward that names ``keep``
and the smallest count that works for that image. Layers given explicitly are used as
they are. Rebuilt: the solved lambda and the earlier layers are this library's way of
meeting a budget (the paper tunes both by hand).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import torch

from ..configs.pdrop import PDropConfig, scaled_layers  # noqa: F401 - importable beside the selection code
from ..signals import Signals
from .scoring import round_half_up


def layer_average(ratio: float, layers: Sequence[int], num_layers: int, tokens: float) -> float:
    """Visual tokens averaged over ``num_layers`` layers when stage s keeps tokens * ratio**s."""
    bounds = (0, *layers, num_layers)
    spans = [bounds[s + 1] - bounds[s] for s in range(len(bounds) - 1)]
    return tokens * sum(span * ratio**s for s, span in enumerate(spans)) / num_layers


@lru_cache(maxsize=1024)
def solve_ratio(budget: int, tokens: int, layers: tuple[int, ...], num_layers: int) -> float:
    """The lambda in [0, 1] whose schedule averages ``budget`` visual tokens over the layers.

    The average grows with lambda, so bisection finds it. Returns 0 when even lambda = 0
    (everything dropped at the first stage) averages more than the budget.
    """
    if budget >= tokens:
        return 1.0
    floor = layer_average(0.0, layers, num_layers, tokens)
    if floor >= budget:
        smallest = math.floor(floor) + 1
        raise ValueError(
            f"pdrop: keep={budget} tokens averaged over {num_layers} layers cannot be met for an image of "
            f"{tokens} tokens with stages after layers {list(layers)}: the first {layers[0]} layers alone average "
            f"{floor:.1f}. The smallest keep that works for this image is {smallest}; accepted: keep >= {smallest}, "
            "earlier layers, or a ratio keep (for which layers=None moves the stages earlier)"
        )
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        if layer_average(middle, layers, num_layers, tokens) < budget:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def check_feasible(keep: int | float, budget: int, tokens: int, layers: tuple[int, ...], num_layers: int) -> None:
    """Raise, naming ``keep`` and the smallest budget that works, when the first segment
    alone averages at least ``budget`` tokens of an image (part) of ``tokens`` tokens."""
    floor = layer_average(0.0, layers, num_layers, tokens)
    if floor < budget:
        return
    smallest = math.floor(floor) + 1
    if budget == keep:
        where = f"an image of {tokens} tokens"
        need = f"The smallest keep that works for this image is {smallest}; accepted: keep >= {smallest}"
    else:  # LLaVA-NeXT / OneVision: the image's budget is shared among its grids
        where = f"a grid of {tokens} tokens of an image (its share of the budget: {budget})"
        need = (
            f"This grid needs a share of at least {smallest}; the image's budget is shared among its grids "
            f"in proportion to their tokens, so raise keep to about {smallest} * (image tokens) / {tokens}"
        )
    raise ValueError(
        f"pdrop: keep={keep} (tokens averaged over {num_layers} layers) cannot be met for {where} with stages "
        f"after layers {list(layers)}: the first {layers[0]} layers alone average {floor:.1f}. {need}, earlier "
        "layers, or a ratio keep (for which layers=None moves the stages earlier)"
    )


def stage_count(tokens: int, ratio: float, stage: int) -> int:
    """Tokens that go on after stage ``stage`` (1-based): tokens * ratio**stage, at least 1."""
    return max(1, round_half_up(tokens * ratio**stage))


def select_pdrop_stage(
    signals: Signals,
    budget: int,
    config: PDropConfig,
    *,
    stage: int,
    layers: tuple[int, ...],
    num_layers: int,
) -> torch.Tensor:
    """Stage ``stage`` (1-based) of the pyramid: keep the top share by the next layer's
    attention from the last instruction token."""
    tokens = signals.grid[0] * signals.grid[1]  # the image's count before any stage
    if config.ratio is None and budget < tokens:
        check_feasible(config.keep, budget, tokens, layers, num_layers)
    ratio = config.ratio if config.ratio is not None else solve_ratio(budget, tokens, layers, num_layers)
    count = min(signals.num_tokens, stage_count(tokens, ratio, stage))
    attention = signals[f"attn_last_next@llm:{layers[stage - 1]}"].float()
    return attention.topk(count, dim=1).indices
