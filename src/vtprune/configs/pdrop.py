"""``pdrop``'s config: rank-and-drop at several depths, and the layers it chooses for a budget.

See :mod:`vtprune.pruning_methods.pdrop` for the method; here are its options, where
its stages act (``layers`` scaled to the model's depth) and how ``layers=None`` moves
them earlier for a budget the paper's layers cannot meet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from ..checks import layers as layer_check
from ..checks import optional, real
from ..config import PruneConfig, option, round_half_up
from ..registry import ModelShape, Stage, lazy_select

REFERENCE_DEPTH = 32  # the depth ``layers`` is written for (LLaVA-1.5-7B)
PAPER_LAYERS = (8, 16, 24)


@dataclass
class PDropConfig(PruneConfig):
    """Rank-and-drop at several depths of the language model, by last-token attention."""

    method = "pdrop"
    paper = "PyramidDrop: Pyramid Visual Redundancy Reduction (arXiv 2410.17247, CVPR 2025)"
    summary = (
        "drop a share of the visual tokens at several depths by the next layer's last-token attention; "
        "keep = layer average"
    )
    positions: str = option(
        "compact",
        "'compact' (the official code's): after each stage the kept tokens are renumbered "
        "consecutively and decoding continues that numbering, on 1-D RoPE models (M-RoPE models keep "
        "their ids inside the language model); 'original': each kept token keeps its unpruned position id.",
    )
    layers: Sequence[int] | None = option(
        None,
        f"Stage depths for a {REFERENCE_DEPTH}-layer model, scaled to the model's depth; strictly "
        "increasing ints in [1, 32]. None: the paper's (8, 16, 24), scaled earlier in proportion when "
        "the first segment would cost over half the budget (the applied config shows the layers used).",
        check=layer_check(top=REFERENCE_DEPTH, allow_none=True),
    )
    ratio: float | None = option(
        None,
        "Share lambda of the remaining visual tokens each stage keeps (the paper: 0.5), in (0, 1]. "
        "None: solve lambda so that the visual tokens averaged over all layers equal `keep`.",
        check=optional(real(0.0, 1.0, low_open=True)),
    )

    def stages(self, num_layers: int) -> list[Stage]:
        layers = scaled_layers(self.layers or PAPER_LAYERS, num_layers)
        return [
            Stage(
                f"llm:{layer}",
                lazy_select("pdrop", "select_pdrop_stage", stage=s + 1, layers=layers, num_layers=num_layers),
                frozenset({f"attn_last_next@llm:{layer}"}),
            )
            for s, layer in enumerate(layers)
        ]

    def prepare(self, shape: ModelShape) -> PDropConfig:
        """Choose the layers when left to the model; reject a budget the layers cannot meet."""
        config = self
        share = budget_share(config.keep, shape.image_tokens)
        solving = config.ratio is None and share is not None and share < 1.0
        if config.layers is None:
            layers = PAPER_LAYERS
            if solving:
                # Move the stages earlier until the first segment costs at most half the budget.
                factor = min(1.0, share / (2 * PAPER_LAYERS[0] / REFERENCE_DEPTH))
                layers = _increasing([max(1, round_half_up(layer * factor)) for layer in PAPER_LAYERS])
            config = dataclasses.replace(config, layers=layers)
        if solving:
            scaled = scaled_layers(config.layers, shape.num_layers)
            first = scaled[0]
            if share <= first / shape.num_layers:
                raise ValueError(
                    f"pdrop: keep={config.keep} (visual tokens averaged over the layers) cannot be met with "
                    f"layers={list(config.layers)} (on a {REFERENCE_DEPTH}-layer scale: {list(scaled)} in this "
                    f"model): the first {first} of {shape.num_layers} layers see every token, "
                    f"so the average is at least {first / shape.num_layers:.3f} of them. Accepted: a keep above "
                    "that, earlier layers, layers=None (chosen for the budget), or a fixed ratio"
                )
        return config


def budget_share(keep: int | float, image_tokens: int | None) -> float | None:
    """The budget as a share of an image's tokens, when it is known before any image."""
    if isinstance(keep, float):
        return keep
    return None if not image_tokens else min(1.0, keep / image_tokens)


def _increasing(layers: list[int]) -> tuple[int, ...]:
    """Make rounded layers strictly increasing (the later ones move up when they collide)."""
    out: list[int] = []
    for layer in layers:
        out.append(max(layer, out[-1] + 1) if out else layer)
    return tuple(out)


def scaled_layers(layers: Sequence[int], num_layers: int) -> tuple[int, ...]:
    """Stage depths for a model of ``num_layers`` layers, unique and in [1, num_layers - 1]."""
    top = max(1, num_layers - 1)  # pruning after the last layer would save nothing
    scaled = (min(top, max(1, round_half_up(layer * num_layers / REFERENCE_DEPTH))) for layer in layers)
    return tuple(sorted(set(scaled)))
