"""Run a method's stages over the images of one token view (before the LLM or after layer K).

Images are processed in groups that share a token grid, so a stage sees batched
tensors (one call for all LLaVA images of a batch). The result is a keep mask over
the whole batch of sequences; text positions are always kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..registry import Selection, Stage
from ..signals import Signals
from .layout import ROW_KEY, ImageGroup
from .stage_outcome import GroupResult, Merge, Move, StageOutcome
from .token_view import TokenView

if TYPE_CHECKING:
    from ..config import PruneConfig
    from .signal_source import SignalSource


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
    if sel.owner is not None and tuple(sel.owner.shape) != (num_images, num_tokens):
        raise RuntimeError(f"stage {where}: owner {tuple(sel.owner.shape)} is not ({num_images}, {num_tokens})")
    if sel.slots is not None and sel.slots.shape != keep.shape:
        raise RuntimeError(f"stage {where}: slots {tuple(sel.slots.shape)} do not match keep {tuple(keep.shape)}")
    return Selection(keep.long(), sel.features, sel.owner, None if sel.slots is None else sel.slots.long())


def select_sorted(
    stage: Stage, signals: Signals, budget: int, config: "PruneConfig", num_images: int, num_tokens: int
) -> tuple[Selection, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Run one stage on a group and put its choice in sequence order: the checked
    selection, the kept columns sorted (I, k), the order that sorted them, and the
    stage's features in that order (``None`` when it merged nothing)."""
    sel = check_selection(stage.select(signals, budget, config), num_images, num_tokens, stage.where)
    kept, order = sel.keep.sort(dim=1)
    features = None
    if sel.features is not None:
        features = sel.features.gather(1, order[..., None].expand(-1, -1, sel.features.shape[-1]))
    return sel, kept, order, features


def run_stages(
    stages: list[Stage], config: "PruneConfig", source: "SignalSource", level: TokenView, start: int = 0
) -> StageOutcome:
    """Apply ``stages`` (all acting at this level) in order to every image group.

    The outcome's keep mask covers the level's sequence (text and padding always
    kept). Stages that merge write their features into the level (see
    ``TokenView.write_features``) so later stages and the language model see them;
    stages that order their kept tokens record the moves the compaction applies.
    """
    layout = level.layout
    keep = ~layout.token_mask
    counts = list(layout.counts)
    outcome = StageOutcome(start, keep, [], (), [])
    # Each stage's budget of every unit: from the image's full token count (shared among
    # its units), whatever is left of it at this level.
    shares = [level.budgets if stage.share is None else layout.budgets(config, stage.share) for stage in stages]
    shares = shares or [level.budgets]
    for (grid, _, budgets), images in layout.groups(tuple(zip(*shares))).items():
        positions, group = _select_group(stages, budgets, config, source, level, grid, images, outcome)
        keep.view(-1)[positions.reshape(-1)] = True
        for image in images:
            counts[image] = positions.shape[1]
        outcome.groups.append(group)
    if layout.row_ends is not None and config.newlines == "with_row":
        keep &= _rows_still_present(layout, level.token, keep)
    outcome.counts = tuple(counts)
    return outcome


def _select_group(
    stages: list[Stage],
    budgets: tuple[int, ...],
    config: "PruneConfig",
    source: "SignalSource",
    level: TokenView,
    grid: tuple[int, int],
    images: list[int],
    outcome: StageOutcome,
) -> tuple[torch.Tensor, GroupResult]:
    """One group of images through the stages: the flat positions it keeps and its result."""
    layout = level.layout
    positions = layout.image_positions(images)
    token_index = level.token.reshape(-1)[positions]
    ordinal = layout.ordinal_of_image[list(images)]
    merged_into = None
    for stage, budget in zip(stages, budgets):
        if budget == 0:  # a unit whose image's budget went to its other units
            positions, token_index = positions[:, :0], token_index[:, :0]
            break
        group = ImageGroup(grid, tuple(images), positions, token_index)
        signals = Signals(
            grid=grid,
            token_index=token_index,
            ordinal=ordinal,
            needs=stage.needs,
            source=lambda name, g=group: source(name, level, g),
        )
        sel, kept, order, features = select_sorted(stage, signals, budget, config, len(images), positions.shape[1])
        before = token_index
        positions = positions.gather(1, kept)
        token_index = token_index.gather(1, kept)
        if sel.owner is not None:
            merged_into = _merged_into(sel.owner, order, before, token_index, grid)
        if features is not None:
            level.write_features(positions, features)
            outcome.merges.append(Merge(positions, features, level.image.shape[1]))
        if sel.slots is not None:
            outcome.moves.append(_move(stage.where, level, positions, sel.slots.gather(1, order)))
    return positions, GroupResult(tuple(images), token_index.sort(dim=1).values, merged_into)


def _move(where: str, level: TokenView, positions: torch.Tensor, ranks: torch.Tensor) -> Move:
    """The kept tokens at flat ``positions`` (I, k), ascending, into the slots ``ranks`` name."""
    if level.capture is None:
        raise ValueError(f"stage {where}: Selection.slots orders the kept tokens only inside the language model")
    return Move(positions.gather(1, ranks), positions, level.image.shape[1])


def keep_everything(level: TokenView) -> StageOutcome:
    """No stage before the LLM: every token goes in (methods that act inside only)."""
    layout = level.layout
    groups = []
    for (_, count), images in layout.groups().items():
        index = torch.arange(count, device=level.image.device).expand(len(images), count)
        groups.append(GroupResult(tuple(images), index))
    return StageOutcome(0, torch.ones_like(layout.token_mask), groups, layout.counts)


def _rows_still_present(layout, token: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(B, L): False at row-end tokens whose row lost all its kept tokens."""
    unit_of = torch.full_like(token, -1)
    flat = unit_of.view(-1)
    counts = torch.tensor(layout.counts, device=token.device)
    flat[layout.flat_positions] = torch.repeat_interleave(torch.arange(layout.num_units, device=token.device), counts)
    cols = torch.tensor([c for _, c in layout.grids], device=token.device)
    kept_visual = keep & (unit_of >= 0)
    key = unit_of.clamp(min=0) * ROW_KEY + torch.div(token.clamp(min=0), cols[unit_of.clamp(min=0)], rounding_mode="floor")
    present = torch.isin(layout.row_ends, torch.where(kept_visual, key, -2))
    return (layout.row_ends < 0) | present


def _merged_into(
    owner: torch.Tensor, order: torch.Tensor, before: torch.Tensor, kept: torch.Tensor, grid: tuple[int, int]
) -> torch.Tensor:
    """(I, rows * cols): grid index of the kept token each token merged into (-1: none)."""
    # ``owner`` names columns of the selection as returned; ``order`` sorted them.
    column = torch.empty_like(order)
    column.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    target = kept.gather(1, column.gather(1, owner.clamp(min=0))).masked_fill(owner < 0, -1)
    full = torch.full((owner.shape[0], grid[0] * grid[1]), -1, dtype=torch.long, device=owner.device)
    return full.scatter_(1, before, target)
