"""Adapter for Qwen2-VL and Qwen2.5-VL (``Qwen2VLForConditionalGeneration``,
``Qwen2_5_VLForConditionalGeneration`` and their ``*Model`` cores).

Images have a dynamic grid: ``image_grid_thw`` gives each image's (t, h, w) in vision
patches, and the 2x2 patch merger makes one LLM token of each 2x2 block, so an image
is ``t * h/2 * w/2`` tokens on a ``(t * h/2) x (w/2)`` grid. Positions are M-RoPE ids
(3, B, L): temporal, row and column. Text tokens carry equal ids in all three rows; an
image starting at id s gives its token at (r, c) the ids (s, s + r, s + c), and the
text after it resumes at s + max(h, w) / 2. Video tokens are never pruned.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..runtime.compaction import Compaction
from ..runtime.layout import ImageLayout
from .base import Forward, ModelAdapter


class Qwen2VLAdapter(ModelAdapter):
    family = "qwen2_vl"
    model_classes = (
        "Qwen2VLForConditionalGeneration",
        "Qwen2VLModel",
        "Qwen2_5_VLForConditionalGeneration",
        "Qwen2_5_VLModel",
    )
    position_rows = 3

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.merge = int(self.config.vision_config.spatial_merge_size)

    @property
    def vision_module(self) -> nn.Module:
        return self.core.visual

    def vision_call(self, args: tuple, kwargs: dict) -> Any:
        grid_thw = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        return None if grid_thw is None else self._grids(grid_thw)

    def _grids(self, grid_thw: torch.Tensor) -> list[tuple[int, int]]:
        return [(t * (h // self.merge), w // self.merge) for t, h, w in grid_thw.tolist()]

    def layout(self, forward: Forward) -> ImageLayout | None:
        if not forward.has_image_features:
            return None
        grid_thw = forward.core_inputs.get("image_grid_thw")
        if grid_thw is not None:
            grids = self._grids(grid_thw)
        else:
            # generate() encoded the images before the prefill and dropped their grids:
            # take them from the vision tower call that produced these features.
            counts = [len(f) for f in forward.encoded_images]
            grids = next(
                (g for g in reversed(forward.vision_calls) if g and [r * c for r, c in g] == counts), None
            )
            if grids is None:
                raise RuntimeError(
                    "the images' token grids are unknown: pass image_grid_thw with precomputed "
                    "image features, or compute them with this model's get_image_features"
                )
        if not grids:
            return None
        return ImageLayout(self.image_token_mask(forward), tuple(r * c for r, c in grids), tuple(grids))

    def compact_positions(
        self, positions: torch.Tensor, mask: torch.Tensor, forward: Forward, compaction: Compaction
    ) -> torch.Tensor:
        """M-RoPE ``positions="compact"``: each image keeps its 2-D structure but shrinks
        to the rows and columns that still hold a kept token (dense ranks), so it spans
        max(kept rows, kept cols) ids instead of max(rows, cols); every later token in
        the prompt moves back by what the images before it saved."""
        layout = forward.layout
        device = positions.device
        batch, length = compaction.index.shape
        seq = layout.seq_len

        # Per source position: image number (-1 for text) and (row, col) in its image.
        image_of = torch.full((batch * seq,), -1, dtype=torch.long, device=device)
        local = torch.zeros(batch * seq, dtype=torch.long, device=device)
        counts = torch.tensor(layout.counts, device=device)
        starts = torch.tensor(layout.starts, device=device)
        image_ids = torch.repeat_interleave(torch.arange(layout.num_images, device=device), counts)
        image_of[layout.flat_positions] = image_ids
        local[layout.flat_positions] = torch.arange(len(image_ids), device=device) - starts[image_ids]
        cols = torch.tensor([g[1] for g in layout.grids], device=device)
        rows_total = torch.tensor([g[0] for g in layout.grids], device=device)

        src = (compaction.index + torch.arange(batch, device=device)[:, None] * seq).reshape(-1)
        img = image_of[src].view(batch, length)
        real = mask.bool()
        visual = (img >= 0) & real
        img_safe = img.clamp(min=0)
        index_in_image = local[src].view(batch, length)
        row = torch.div(index_in_image, cols[img_safe], rounding_mode="floor")
        col = index_in_image - row * cols[img_safe]

        # Dense ranks of the kept rows and columns of each image.
        def used(coord: torch.Tensor, size: int) -> torch.Tensor:
            spill = layout.num_images * size  # one extra slot takes the text positions
            flat = torch.where(visual, img_safe * size + coord, spill).reshape(-1)
            hits = torch.zeros(spill + 1, dtype=torch.long, device=device).scatter_(0, flat, 1)
            return hits[:spill].view(layout.num_images, size)

        row_used = used(row, max(g[0] for g in layout.grids))
        col_used = used(col, max(g[1] for g in layout.grids))
        row_rank = row_used.cumsum(1) - 1
        col_rank = col_used.cumsum(1) - 1
        saved = torch.maximum(rows_total, cols) - torch.maximum(row_used.sum(1), col_used.sum(1))

        # Ids saved by the images before each slot: an image's saving is credited at the
        # slot after its last kept token, so its own tokens do not see it.
        last_kept = visual & torch.cat((img[:, 1:] != img[:, :-1], torch.ones_like(visual[:, :1])), 1)
        credit = torch.zeros(batch, length, dtype=torch.long, device=device)
        credit[:, 1:] = torch.where(last_kept[:, :-1], saved[img_safe[:, :-1]], 0)
        shift = credit.cumsum(1)

        mrope = positions[-3:]  # generate prepends a row of 1-D text ids: (4, B, L)
        text_ids = mrope[0] - shift  # row 0 of an image token is the image's start id
        compact = torch.stack(
            (
                text_ids,
                torch.where(visual, text_ids + row_rank[img_safe, row], text_ids),
                torch.where(visual, text_ids + col_rank[img_safe, col], text_ids),
            )
        )
        compact = torch.where(real[None], compact, mrope)
        if positions.shape[0] == 4:
            text_rows = super().compact_positions(positions[0], mask, forward, compaction)
            compact = torch.cat((text_rows[None], compact))
        return compact
