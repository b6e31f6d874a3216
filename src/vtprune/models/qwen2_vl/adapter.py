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

from typing import Any, Callable

import torch
from torch import nn

from ...attention import apply_rope, attention_weights
from ...compat import mrope_section, vision_window_index
from ...runtime.compaction import Compaction
from ...runtime.layout import ImageLayout
from ...runtime.vision import VisionCall
from ...runtime.forward_inputs import Forward
from ..base import ModelAdapter
from .names import QWEN2_VL


class Qwen2VLAdapter(ModelAdapter):
    names = QWEN2_VL
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

    def install_vision_capture(self, record: Callable[[str, Any], None]) -> list[Any]:
        visual = self.core.visual
        attn = visual.blocks[-1].attn

        def grids(module: Any, args: tuple, kwargs: dict) -> None:
            record("grid_thw", kwargs.get("grid_thw", args[1] if len(args) > 1 else None))

        def attention_input(module: Any, args: tuple, kwargs: dict) -> None:
            record("cu_seqlens", kwargs.get("cu_seqlens", args[1] if len(args) > 1 else None))
            record("rope", kwargs["position_embeddings"])

        return [
            visual.register_forward_pre_hook(grids, with_kwargs=True),
            attn.register_forward_pre_hook(attention_input, with_kwargs=True),
            attn.qkv.register_forward_hook(lambda m, args, out: record("qkv", out)),
        ]

    def vision_signal(self, name: str, call: VisionCall) -> torch.Tensor:
        """Signals of the vision tower's last block, per LLM token: the mean over its
        2x2 merged patches, in the image's raster order. Qwen's ViT has no CLS token, so
        saliency is the mean attention each patch receives (heads averaged)."""
        visual = self.core.visual
        attn = visual.blocks[-1].attn
        captures = call.captures
        qkv = captures["qkv"]
        patches = qkv.shape[0]
        heads = attn.num_heads
        head_dim = qkv.shape[1] // (3 * heads)
        q, k, _ = qkv.view(patches, 3, heads, head_dim).float().unbind(1)
        if name == "vision_keys":
            per_patch = k.mean(1)  # averaged over heads
        else:
            per_patch = attention_received(q, k, captures["rope"], captures["cu_seqlens"], attn.scaling)[:, None]
        unit = self.merge**2
        per_token = per_patch.view(patches // unit, unit, -1).mean(1)  # the merger's groups of patches
        per_token = self._window_order_undone(per_token, captures["grid_thw"])
        grid_thw = captures["grid_thw"].tolist()
        split = per_token.split([t * h * w // unit for t, h, w in grid_thw])
        padded = torch.nn.utils.rnn.pad_sequence(list(split), batch_first=True)  # images of different sizes
        return padded[..., 0] if name == "vision_saliency" else padded

    def _window_order_undone(self, per_token: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        """Qwen2.5-VL's ViT runs on tokens reordered into attention windows; undo that."""
        visual = self.core.visual
        if not hasattr(visual, "fullatt_block_indexes"):
            return per_token  # Qwen2-VL: no windows, raster order throughout
        window_index = vision_window_index(visual, grid_thw)
        natural = torch.empty_like(per_token)
        natural[window_index.to(per_token.device)] = per_token
        return natural

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
                (c.info for c in reversed(forward.vision_calls) if c.info and [r * w for r, w in c.info] == counts),
                None,
            )
            if grids is None:
                raise RuntimeError(
                    "the images' token grids are unknown: pass image_grid_thw with precomputed "
                    "image features, or compute them with this model's get_image_features"
                )
        if not grids:
            return None
        return ImageLayout(self.image_token_mask(forward), tuple(r * c for r, c in grids), tuple(grids))

    def rope_tables(self, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """transformers releases before the M-RoPE tables were merged in the rotary
        embedding pass (3, B, L, d) and merge them in the attention: do the same."""
        if cos.dim() == 3:
            return cos, sin
        sections = mrope_section(self.config.text_config) * 2

        def merge(table: torch.Tensor) -> torch.Tensor:
            return torch.cat([part[i % 3] for i, part in enumerate(table.split(sections, dim=-1))], dim=-1)

        return merge(cos), merge(sin)

    def match_vision_call(self, forward: Forward, layout: ImageLayout) -> VisionCall | None:
        for call in reversed(forward.vision_calls):
            if call.info and tuple(call.info) == layout.grids:
                return call
        return None

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
        image_ids = torch.repeat_interleave(torch.arange(layout.num_units, device=device), counts)
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
            spill = layout.num_units * size  # one extra slot takes the text positions
            flat = torch.where(visual, img_safe * size + coord, spill).reshape(-1)
            hits = torch.zeros(spill + 1, dtype=torch.long, device=device).scatter_(0, flat, 1)
            return hits[:spill].view(layout.num_units, size)

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


def attention_received(
    q: torch.Tensor, k: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], cu_seqlens: torch.Tensor, scale: float
) -> torch.Tensor:
    """Mean attention each patch receives within its attention segment (an image), over
    all queries and heads. Queries go in chunks so memory stays O(chunk x patches)."""
    cos, sin = (t.float()[:, None, :] for t in rope)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    received = torch.zeros(q.shape[0], device=q.device)
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        keys = k[start:end]
        for chunk in range(start, end, 1024):
            queries = q[chunk : min(chunk + 1024, end)].transpose(0, 1)  # (heads, chunk, d)
            received[start:end] += attention_weights(queries, keys.transpose(0, 1), scale).sum(dim=(0, 1))
        received[start:end] /= (end - start) * q.shape[1]
    return received

