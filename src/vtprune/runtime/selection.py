"""Run a method's pre-LLM stages over the images of one forward.

Images are processed in groups that share a token grid, so a stage sees batched
tensors (one call for all LLaVA images of a batch). The result is a keep mask over
the whole batch of sequences; text positions are always kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..registry import Selection, Stage
from ..signals import Signals
from .layout import ImageGroup

if TYPE_CHECKING:
    from ..config import PruneConfig
    from ..models.base import Forward, ModelAdapter


@dataclass(frozen=True)
class GroupResult:
    """Kept tokens of a group of images, as indices into each image's full grid."""

    images: tuple[int, ...]
    kept: torch.Tensor  # (I, k) sorted


def check_selection(out: Selection | torch.Tensor, num_images: int, num_tokens: int, where: str) -> Selection:
    """Normalise a stage's return value and check its shape (host-side only)."""
    sel = out if isinstance(out, Selection) else Selection(out)
    keep = sel.keep
    if not isinstance(keep, torch.Tensor) or keep.dim() != 2 or keep.dtype not in (torch.int64, torch.int32):
        raise RuntimeError(f"stage {where}: selection must be an (I, k) integer tensor; got {keep!r}")
    if keep.shape[0] != num_images or not 1 <= keep.shape[1] <= num_tokens:
        raise RuntimeError(
            f"stage {where}: selection has shape {tuple(keep.shape)}; expected ({num_images}, k) "
            f"with 1 <= k <= {num_tokens}"
        )
    if sel.features is not None and sel.features.shape[:2] != keep.shape:
        raise RuntimeError(f"stage {where}: features {tuple(sel.features.shape)} do not match keep {tuple(keep.shape)}")
    return Selection(keep.long(), sel.features)


def run_pre_llm(
    stages: list[Stage], config: "PruneConfig", adapter: "ModelAdapter", forward: "Forward"
) -> tuple[torch.Tensor, list[GroupResult]]:
    """Apply ``stages`` in order to every image group of ``forward.layout``.

    Returns the keep mask (B, L) and the kept indices of every group. Stages that merge
    write their features into ``forward.inputs_embeds`` (a new tensor: the old one may
    be the caller's), so later stages and the language model see them.
    """
    layout = forward.layout
    keep = ~layout.token_mask
    flat_keep = keep.view(-1)
    results = []
    for grid, images in layout.groups().items():
        count = layout.counts[images[0]]
        budget = config.budget(count)
        positions = layout.image_positions(images)
        token_index = torch.arange(count, device=positions.device).expand(len(images), count)
        ordinal = layout.ordinal_of_image[list(images)]
        for stage in stages:
            group = ImageGroup(grid, tuple(images), positions, token_index)
            signals = Signals(
                grid=grid,
                token_index=token_index,
                ordinal=ordinal,
                needs=stage.needs,
                source=lambda name, g=group: adapter.signal(name, forward, g),
            )
            sel = check_selection(stage.select(signals, budget, config), len(images), positions.shape[1], stage.where)
            kept, order = sel.keep.sort(dim=1)
            positions = positions.gather(1, kept)
            token_index = token_index.gather(1, kept)
            if sel.features is not None:
                embeds = forward.inputs_embeds
                width = embeds.shape[-1]
                features = sel.features.gather(1, order[..., None].expand(-1, -1, width))
                flat = embeds.reshape(-1, width).index_put(
                    (positions.reshape(-1),), features.reshape(-1, width).to(embeds.dtype)
                )
                forward.inputs_embeds = flat.view_as(embeds)
        flat_keep[positions.reshape(-1)] = True
        results.append(GroupResult(tuple(images), token_index))
    return keep, results
