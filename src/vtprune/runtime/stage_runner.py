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
from .frame_budgets import frame_shares
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
    Before the LLM, a unit that stacks frames (a video) is selected frame by frame,
    each frame with its share of the unit's budget (frame_budgets.py); inside the LLM
    it is one grid.
    """
    layout = level.layout
    keep = ~layout.token_mask
    counts = list(layout.counts)
    outcome = StageOutcome(start, keep, [], (), [])
    # Each stage's budget of every unit: from the image's full token count (shared among
    # its units), whatever is left of it at this level.
    shares = [level.budgets if stage.share is None else layout.budgets(config, stage.share) for stage in stages]
    shares = shares or [level.budgets]
    unit_budgets = list(zip(*shares))
    framed = frame_shares(level, config, unit_budgets) if level.capture is None else {}
    for (grid, _, budgets), images in layout.groups(tuple(unit_budgets)).items():
        images = [image for image in images if image not in framed]
        if not images:
            continue
        positions, _, kept, merged_into = _select_group(
            stages, budgets, config, source, level, grid, images, outcome, layout.image_positions(images)
        )
        keep.view(-1)[positions.reshape(-1)] = True
        for image in images:
            counts[image] = positions.shape[1]
        outcome.groups.append(GroupResult(tuple(images), kept, merged_into))
    if framed:
        _select_frames(stages, framed, config, source, level, outcome, counts)
    if layout.row_ends is not None and config.newlines == "with_row":
        keep &= _rows_still_present(layout, level.token, keep)
    outcome.counts = tuple(counts)
    return outcome


def _select_frames(
    stages: list[Stage],
    framed: dict[int, list[tuple[int, ...]]],
    config: "PruneConfig",
    source: "SignalSource",
    level: TokenView,
    outcome: StageOutcome,
    counts: list[int],
) -> None:
    """The frames of stacked units, grouped by frame grid and budgets, through the
    stages; each unit's frames are then joined into its result (kept indices over the
    unit's whole grid)."""
    layout = level.layout
    device = level.image.device
    groups: dict[tuple, list[tuple[int, int]]] = {}
    for unit, per_frame in framed.items():
        rows, cols = layout.grids[unit]
        frame_grid = (rows // layout.frames[unit], cols)
        for frame, budgets in enumerate(per_frame):
            groups.setdefault((frame_grid, budgets), []).append((unit, frame))
    parts: dict[int, dict[int, tuple]] = {unit: {} for unit in framed}
    for (frame_grid, budgets), members in groups.items():
        size = frame_grid[0] * frame_grid[1]
        images = [unit for unit, _ in members]
        offsets = torch.tensor([frame * size for _, frame in members], device=device)
        starts = torch.tensor([layout.starts[unit] for unit in images], device=device)
        positions = layout.flat_positions[(starts + offsets)[:, None] + torch.arange(size, device=device)]
        last = layout.flat_positions[starts + torch.tensor([layout.counts[u] - 1 for u in images], device=device)]
        full = max(layout.grids[u][0] * layout.grids[u][1] for u in images)
        kept_positions, _, kept, merged_into = _select_group(
            stages, budgets, config, source, level, frame_grid, images, outcome, positions,
            frame_offsets=offsets, last_position=last, full_size=full,
        )
        keep = outcome.keep
        keep.view(-1)[kept_positions.reshape(-1)] = True
        for row, (unit, frame) in enumerate(members):
            parts[unit][frame] = (kept[row], None if merged_into is None else merged_into[row])
    for unit, by_frame in parts.items():
        ordered = [by_frame[f] for f in sorted(by_frame)]
        kept = torch.cat([k for k, _ in ordered])
        counts[unit] = int(kept.shape[0])
        merged = [m for _, m in ordered if m is not None]
        merged_into = None
        if merged:
            rows, cols = layout.grids[unit]
            merged_into = torch.stack([m[: rows * cols] for m in merged]).amax(0)[None]
        outcome.groups.append(GroupResult((unit,), kept[None], merged_into))


def _select_group(
    stages: list[Stage],
    budgets: tuple[int, ...],
    config: "PruneConfig",
    source: "SignalSource",
    level: TokenView,
    grid: tuple[int, int],
    images: list[int],
    outcome: StageOutcome,
    positions: torch.Tensor,
    frame_offsets: torch.Tensor | None = None,
    last_position: torch.Tensor | None = None,
    full_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One group of images at flat ``positions`` (or of frames, ``frame_offsets`` where
    each starts in its unit's grid) through the stages: the flat positions it keeps,
    their indices in their units' grids (in that order and sorted), and where merged
    tokens went (``None``: no merge)."""
    token_index = level.token.reshape(-1)[positions]
    ordinal = level.layout.ordinal_of_image[list(images)]
    merged_into = None
    for stage, budget in zip(stages, budgets):
        if budget == 0:  # a unit whose image's budget went to its other units
            positions, token_index = positions[:, :0], token_index[:, :0]
            break
        group = ImageGroup(grid, tuple(images), positions, token_index, last_position=last_position)
        local = token_index if frame_offsets is None else token_index - frame_offsets[:, None]
        signals = Signals(
            grid=grid,
            token_index=local,
            ordinal=ordinal,
            needs=stage.needs,
            source=lambda name, g=group: source(name, level, g),
        )
        sel, kept, order, features = select_sorted(stage, signals, budget, config, len(images), positions.shape[1])
        before = token_index
        positions = positions.gather(1, kept)
        token_index = token_index.gather(1, kept)
        if sel.owner is not None:
            size = full_size if full_size is not None else grid[0] * grid[1]
            merged_into = _merged_into(sel.owner, order, before, token_index, size)
        if features is not None:
            level.write_features(positions, features)
            outcome.merges.append(Merge(positions, features, level.image.shape[1]))
        if sel.slots is not None:
            outcome.moves.append(_move(stage.where, level, positions, sel.slots.gather(1, order)))
    return positions, token_index, token_index.sort(dim=1).values, merged_into


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
    owner: torch.Tensor, order: torch.Tensor, before: torch.Tensor, kept: torch.Tensor, size: int
) -> torch.Tensor:
    """(I, size): grid index of the kept token each token merged into (-1: none); ``size``
    is the tokens of the units' full grids."""
    # ``owner`` names columns of the selection as returned; ``order`` sorted them.
    column = torch.empty_like(order)
    column.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    target = kept.gather(1, column.gather(1, owner.clamp(min=0))).masked_fill(owner < 0, -1)
    full = torch.full((owner.shape[0], size), -1, dtype=torch.long, device=owner.device)
    return full.scatter_(1, before, target)
