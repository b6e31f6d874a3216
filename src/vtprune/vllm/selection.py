"""Run a plan's pre-LLM stages on the images a served model just encoded.

The same pure selection functions as the Hugging Face path, on the same signals: a
group of images that share a token grid is one batched call per stage. What comes
back per image is the kept token indices (sorted, as the HF path writes them into the
sequence) and the features the language model reads at those tokens.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..runtime.stage_runner import select_sorted
from ..signals import Signals
from .plan import ServingPlan


def select_group(
    plan: ServingPlan,
    grid: tuple[int, int],
    visual: torch.Tensor,
    ordinal: torch.Tensor,
    signal: Callable[[str], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kept indices (I, K) into each image's full grid, and the features (I, K, D).

    visual:  (I, N, D) the images' LLM-input features over their full grids
    signal:  name -> (I, N[, ...]) full-grid signal, or a prompt signal (I, T[, D])
    """
    images, tokens, _ = visual.shape
    budget = plan.budget(tokens)  # one image per group here: its units are the image
    token_index = torch.arange(tokens, device=visual.device).expand(images, tokens)
    features = visual
    for stage in plan.stages:

        def source(name: str, index=token_index, current=features) -> torch.Tensor:
            if name == "visual":
                return current
            if name == "text_relevance":
                return prompt_relevance(current, signal("text_embeds"), signal("text_mask"))
            value = signal(name)
            if name in ("text_embeds", "text_mask"):
                return value  # over the instruction, not the image's tokens
            if value.dim() == 2:
                return value.gather(1, index)
            return value.gather(1, index[..., None].expand(-1, -1, value.shape[-1]))

        signals = Signals(grid=grid, token_index=token_index, ordinal=ordinal, needs=stage.needs, source=source)
        share = budget if stage.share is None else stage.share(budget, tokens, plan.config)
        _, kept, _, merged = select_sorted(stage, signals, share, plan.config, images, token_index.shape[1])
        token_index = token_index.gather(1, kept)
        features = merged if merged is not None else features.gather(1, kept[..., None].expand(-1, -1, features.shape[-1]))
    return token_index, features


def prompt_relevance(visual: torch.Tensor, text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(I, N) cosine between each token's LLM-input features and the mean embedding of
    its instruction: the HF path's ``text_relevance`` without a CLIP text tower."""
    query = (text * mask[..., None].to(text.dtype)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1).to(text.dtype)
    return torch.nn.functional.cosine_similarity(visual.float(), query.float()[:, None, :], dim=-1)
