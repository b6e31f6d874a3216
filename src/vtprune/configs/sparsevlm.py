"""``sparsevlm``'s config: rater-attention ranking at three depths, with token recycling.

See :mod:`vtprune.pruning_methods.sparsevlm` for the method and its per-layer counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..checks import layers as layer_check
from ..checks import choice, real
from ..config import PruneConfig, option, round_half_up
from ..registry import Stage, lazy_select

REFERENCE_DEPTH = 32
PLACEMENTS = ("appended", "centre")


@dataclass
class SparseVLMConfig(PruneConfig):
    """Rater-attention ranking at three depths, the best of the pruned recycled into clusters."""

    method = "sparsevlm"
    paper = "SparseVLM: Visual Token Sparsification for Efficient VLM Inference (arXiv 2410.04417, ICML 2025)"
    summary = (
        "at three depths, keep the tokens the prompt's relevant words attend to; recycle the best pruned "
        "ones into clusters"
    )
    keep: int | float = option(
        0.222,
        "Budget naming the per-layer schedule, as a count (64, 128, 192: the official counts for 576 "
        "tokens) or a ratio in (0, 1]; the tokens left after the last layer are fewer (64 -> 18, "
        "128 -> 39, 192 -> 113). Other budgets interpolate the official shares; 1.0 keeps everything.",
    )
    positions: str = option(
        "compact",
        "'compact' (the official code's): after each stage the kept tokens are renumbered "
        "consecutively, on 1-D RoPE models (M-RoPE models keep their ids inside the language model); "
        "'original': each kept token keeps its unpruned position id.",
    )
    layers: Sequence[int] = option(
        (3, 7, 16),
        "Stages after these many layers of a 32-layer model (the official pruning layers 2, 6, 15, 0-based), "
        "scaled to the model's depth; three strictly increasing ints in [1, 32].",
        check=layer_check(top=REFERENCE_DEPTH, count=3),
    )
    recycle: float = option(
        0.3,
        "Share of each stage's pruned tokens, best scored first, recycled into merged tokens (official 0.3); [0, 1].",
        check=real(0.0, 1.0),
    )
    placement: str = option(
        "appended",
        "Where each stage's merged tokens go among the image's kept tokens: 'appended' (the official "
        "code's) after the kept ones, in cluster order; 'centre': each at its cluster centre's place.",
        check=choice(*PLACEMENTS),
    )

    def stages(self, num_layers: int) -> list[Stage]:
        layers = scaled_layers(self.layers, num_layers)
        return [
            Stage(
                f"llm:{layer}",
                lazy_select("sparsevlm", "select_sparsevlm_stage", stage=s + 1, stages=len(layers), layer=layer),
                frozenset({f"attn_rows@llm:{layer}", f"hidden@llm:{layer}", "entry_visual", "text_embeds"}),
            )
            for s, layer in enumerate(layers)
        ]


def scaled_layers(layers: Sequence[int], num_layers: int) -> tuple[int, ...]:
    """Stage depths on a model of ``num_layers`` layers: strictly increasing, in
    [1, num_layers - 1]; the earliest stages go when there are too few layers."""
    top = num_layers - 1
    if top < 1:
        return ()
    scaled: list[int] = []
    for layer in layers:
        depth = max(1, round_half_up(layer * num_layers / REFERENCE_DEPTH))
        scaled.append(max(depth, scaled[-1] + 1) if scaled else depth)
    scaled = scaled[-top:]
    # Pull the last ones under the top, keeping them strictly increasing.
    return tuple(min(layer, top - (len(scaled) - 1 - i)) for i, layer in enumerate(scaled))
