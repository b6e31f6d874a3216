"""``dart``'s config: key-norm pivots and the tokens least duplicated with them, after layer K."""

from __future__ import annotations

from dataclasses import dataclass

from ..checks import choice, integer
from ..config import PruneConfig, option
from ..registry import Stage, lazy_select

HIDDEN_MODES = ("final_norm", "raw")


@dataclass
class DARTConfig(PruneConfig):
    """Keep key-norm pivots and the tokens least duplicated with them, after layer K."""

    method = "dart"
    paper = "DART: Stop Looking for Important Tokens, Duplication Matters More (arXiv 2502.11494)"
    summary = "after layer K, keep key-norm pivots and the tokens least duplicated with them and with text pivots"
    layer: int = option(
        2, "K: prune after the first K decoder layers ran on the full sequence (DART: 2).", check=integer(1)
    )
    image_pivots: int = option(
        4,
        "Pivots among the image's tokens, by the L1 norm of their post-RoPE layer-K keys; kept (official: 4). Int >= 1.",
        check=integer(1),
    )
    text_pivots: int = option(
        4,
        "Pivots among the instruction tokens after the image, by the same norm; they claim image tokens but "
        "are text, so not counted in the budget (official: 4). Int >= 0.",
        check=integer(0),
    )
    hidden: str = option(
        "final_norm",
        "States compared by cosine: 'final_norm' (the hidden states after layer K through the model's final "
        "norm, as the official code) or 'raw' (the layer-K hidden states as they are).",
        check=choice(*HIDDEN_MODES),
    )

    def stages(self, num_layers: int) -> list[Stage]:
        where = f"llm:{self.layer}"
        hidden = "hidden_norm" if self.hidden == "final_norm" else "hidden"
        needs = {f"keys_rope@{where}", f"{hidden}@{where}"}
        if self.text_pivots > 0:
            needs |= {f"text_keys_rope@{where}", f"text_{hidden}@{where}"}
        return [Stage(where, lazy_select("dart", "select_dart"), frozenset(needs))]
