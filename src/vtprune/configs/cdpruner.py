"""``cdpruner``'s config: a conditional DPP over the visual tokens."""

from __future__ import annotations

from dataclasses import dataclass

from ..checks import choice, model_reference, real
from ..config import PruneConfig, option
from ..registry import PRE_LLM, Stage, lazy_select

RELEVANCE_MODES = ("auto", "clip", "llm")


@dataclass
class CDPrunerConfig(PruneConfig):
    """Greedy MAP of a DPP whose kernel weighs feature similarity by instruction relevance."""

    method = "cdpruner"
    paper = "CDPruner: Maximizing Conditional Diversity for Token Pruning (arXiv 2506.10967, NeurIPS 2025)"
    summary = "greedy MAP of a DPP with kernel diag(r) S diag(r): feature similarity weighted by instruction relevance"
    theta: float = option(
        1.0,
        "Relevance trade-off in (0, 1]: 1 uses the normalised relevance r as is (the official code); "
        "theta < 1 uses exp(theta / (2 (1 - theta)) * r), which weighs relevance more as theta grows.",
        check=real(0.0, 1.0, low_open=True),
    )

    relevance: str = option(
        "auto",
        "Instruction relevance r: 'clip' (the official: CLIP patch embeddings of the vision layer LLaVA "
        "reads against the CLIP text embedding, negated; needs text_tower), 'llm' (cosine with the mean "
        "instruction embedding in the language model's input space), or 'auto' (clip with a text_tower, "
        "else llm).",
        check=choice(*RELEVANCE_MODES),
    )
    text_tower: str | None = option(
        None,
        "CLIP checkpoint (model id or path) matching the vision tower, e.g. "
        "'openai/clip-vit-large-patch14-336' for LLaVA-1.5; loaded with from_pretrained at prune().",
        check=model_reference(),
    )

    def check_relations(self) -> None:
        if self.relevance == "clip" and self.text_tower is None:
            raise ValueError("relevance='clip' needs text_tower=<CLIP checkpoint matching the vision tower>")

    @property
    def relevance_source(self) -> str:
        """'clip' or 'llm': where r comes from."""
        if self.relevance == "auto":
            return "clip" if self.text_tower is not None else "llm"
        return self.relevance

    def stages(self, num_layers: int) -> list[Stage]:
        needs = {"visual", "clip_relevance"} if self.relevance_source == "clip" else {"visual", "text_embeds"}
        return [Stage(PRE_LLM, lazy_select("cdpruner", "select_cdpruner"), frozenset(needs))]
