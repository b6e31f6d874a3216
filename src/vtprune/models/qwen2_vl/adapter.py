"""Adapter for Qwen2-VL and Qwen2.5-VL (``Qwen2VLForConditionalGeneration``,
``Qwen2_5_VLForConditionalGeneration`` and their ``*Model`` cores).

Images have a dynamic grid: ``image_grid_thw`` gives each image's (t, h, w) in vision
patches, and the 2x2 patch merger makes one LLM token of each 2x2 block, so an image
is ``t * h/2 * w/2`` tokens on a ``(t * h/2) x (w/2)`` grid. Positions are M-RoPE ids
(3, B, L): temporal, row and column. Text tokens carry equal ids in all three rows; an
image starting at id s gives its token at (r, c) the ids (s, s + r, s + c), and the
text after it resumes at s + max(h, w) / 2.

A video is one unit of t temporal patches (two frames each, merged by the patch
embedding), its grid the t frame grids stacked (``ImageLayout.frames``): stages before
the LLM select in each temporal patch with its share of the video's budget, as the ViT
attends within each (one ``cu_seqlens`` segment per temporal patch); inside the LLM
the video is one grid. Its tokens keep their M-RoPE ids (temporal ids spaced by
``second_per_grid_ts`` on Qwen2.5-VL), which the model computes for the whole prompt.
Images and videos are numbered together in order of appearance (media.py).
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
from ..media_order import units_in_prompt_order
from .media import forward_media, llm_grids
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
        """The (t, rows, cols) LLM-token grid of every image or video of the call."""
        grid_thw = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        return None if grid_thw is None else llm_grids(grid_thw, self.merge)

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
        2x2 merged patches, in the image's raster order (a video's: frame by frame).
        Qwen's ViT has no CLS token, so saliency is the mean attention each patch
        receives within its attention segment (an image, a video's temporal patch),
        heads averaged. A forward with images and videos reads two calls (``parts``)."""
        if "parts" in call.captures:
            rows = []
            for sub, item, count in call.captures["parts"]:
                if name not in sub.cache:
                    sub.cache[name] = self.vision_signal(name, sub)
                rows.append(sub.cache[name][item, :count])
            return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
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

    def layout(self, forward: Forward) -> ImageLayout | None:
        media = forward_media(forward, self.merge)
        if not forward.prune_videos:
            media = {kind: m for kind, m in media.items() if kind == "image"}
        if not media:
            return None
        ids = {"image": self.image_token_id, "video": int(self.config.video_token_id)}
        masks = {kind: self.placeholder_mask(forward, ids[kind]) for kind in media}
        units = units_in_prompt_order(masks, {kind: m.counts for kind, m in media.items()})
        forward.extras["qwen_units"] = units
        grids = [media[kind].grids[item] for kind, item in units]
        token_mask = masks["image"] if "image" in masks else masks["video"]
        if len(masks) == 2:
            token_mask = masks["image"] | masks["video"]
        return ImageLayout(
            token_mask,
            tuple(t * r * c for t, r, c in grids),
            tuple((t * r, c) for t, r, c in grids),
            frames=tuple(t if kind == "video" else 1 for (kind, _), (t, _, _) in zip(units, grids)),
        )

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
        """The call that encoded the layout's units; for images and videos together, one
        that reads each unit's signals from its own kind's call."""
        media = forward_media(forward, self.merge)
        units = forward.extras.get("qwen_units", ())
        kinds = {kind for kind, _ in units}
        if any(media[kind].call is None for kind in kinds):
            return None
        if len(kinds) == 1:
            return media[next(iter(kinds))].call
        parts = [(media[kind].call, item, media[kind].counts[item]) for kind, item in units]
        return VisionCall(info=None, captures={"parts": parts})

    def compact_positions(
        self, positions: torch.Tensor, mask: torch.Tensor, forward: Forward, compaction: Compaction
    ) -> torch.Tensor:
        """M-RoPE ``positions="compact"``: each image keeps its 2-D structure but shrinks
        to the rows and columns that still hold a kept token (dense ranks), so it spans
        max(kept rows, kept cols) ids instead of max(rows, cols); every later token in
        the prompt moves back by what the images before it saved. Video tokens keep
        their ids, moved back likewise."""
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
        img_safe = img.clamp(min=0)
        # A video's ids are not one image's (temporal ids, per-frame starts on Qwen3-VL):
        # its tokens keep them, moved back only by what the images before it saved.
        is_video = torch.tensor([kind == "video" for kind, _ in forward.extras.get("qwen_units", ())] or [False], device=device)
        video = (img >= 0) & real & is_video[img_safe.clamp(max=len(is_video) - 1)]
        visual = (img >= 0) & real & ~video
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
        compact = torch.where(video[None], mrope - shift, compact)
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

