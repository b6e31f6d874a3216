"""Adapter for Qwen3-VL (``Qwen3VLForConditionalGeneration`` and its ``Qwen3VLModel`` core).

What Qwen3-VL shares with Qwen2-VL (so this adapter extends that one):

* images are a (t, h, w) patch grid, one LLM token per 2x2 block of patches, in the
  image's raster order;
* an image's position ids are Qwen2-VL's: (s, s + row, s + col) from its start id s,
  the text after it resuming at s + max(h, w) / 2. The *interleaved* M-RoPE of
  Qwen3-VL changes only which rotary frequencies read which of the three rows, not the
  ids, so ``positions="compact"`` renumbers them exactly as for Qwen2-VL. A video is
  pruned as on Qwen2-VL (one unit, frame by frame before the LLM); its frames' tokens
  are not contiguous (each frame follows its own timestamp text, between its own
  markers), which the layout's per-token positions follow, and the text stays;
* the ViT has no windows: every block attends over each image's patches in full
  (``cu_seqlens`` one segment per image frame), with 2-D rotary over the whole head,
  so the vision signals are computed from the last block's qkv as for Qwen2-VL.

What it adds:

* **DeepStack.** The ViT's merged features of some middle blocks reach the language
  model as ``deepstack_visual_embeds`` (one (visual tokens, D) tensor per ViT block in
  ``deepstack_visual_indexes``) with ``visual_pos_masks`` (B, L); the features of
  block i are added to the visual tokens' hidden states after decoder layer i. They
  are per visual token, so they are compacted with the tokens
  (:meth:`compact_side_inputs`). A kept token keeps its own DeepStack rows, also when
  a merging method rewrote its embedding (the merged features enter at the input only).
  An in-LLM stage after layer K <= (DeepStack layers) would shorten the sequence before
  a DeepStack addition that is still sized to the full one: such stages are refused.
* **q/k norms.** The decoder's attention normalises each head's queries and keys
  (RMSNorm over the head dimension) before RoPE, so the attention parts and the
  captured keys include those norms.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ...runtime.attention_rows import AttentionParts
from ...runtime.compaction import Compaction
from ..qwen2_vl.adapter import Qwen2VLAdapter
from .names import QWEN3_VL


def deepstack_layers(config: Any) -> int:
    """How many first decoder layers get DeepStack features added after them."""
    return len(getattr(config.vision_config, "deepstack_visual_indexes", None) or ())


class HeadNormed(nn.Module):
    """A projection followed by the per-head RMSNorm of Qwen3's attention, heads
    flattened back: (..., D) -> (..., heads * head_dim), what the runtime's attention
    rows expect of a ``q_proj`` / ``k_proj``."""

    def __init__(self, proj: nn.Module, norm: nn.Module, head_dim: int) -> None:
        super().__init__()
        self.proj, self.norm, self.head_dim = proj, norm, head_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(x)
        return self.norm(y.view(*y.shape[:-1], -1, self.head_dim)).flatten(-2)


class FlatHeadsOutput:
    """Hooks on ``module`` (the attention's k_norm, whose output is (B, L, H_kv, d))
    that see its output with the heads flattened, (B, L, H_kv * d): the keys before
    RoPE as the runtime captures them from ``key_projection``."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def register_forward_hook(self, hook: Callable[..., Any]) -> Any:
        return self.module.register_forward_hook(lambda m, args, out: hook(m, args, out.flatten(-2)))


class Qwen3VLAdapter(Qwen2VLAdapter):
    names = QWEN3_VL

    @classmethod
    def check_config_stages(cls, config: Any, stages: list) -> None:
        super().check_config_stages(config, stages)
        deep = deepstack_layers(config)
        for stage in stages:
            if stage.layer is not None and stage.layer <= deep:
                raise ValueError(
                    f"stage {stage.where!r}: this model adds DeepStack features to the visual tokens after "
                    f"its first {deep} decoder layers, so in-LLM stages must act after layer K > {deep}"
                )

    def compact_side_inputs(self, kwargs: dict, compaction: Compaction) -> dict:
        """``visual_pos_masks`` and ``deepstack_visual_embeds`` of the kept tokens.

        The embeds' rows are the visual positions of ``visual_pos_masks`` in row-major
        order (images and video frames alike); a compaction keeps the order of the
        tokens in each row, so the kept rows stay in that order."""
        mask, embeds = kwargs.get("visual_pos_masks"), kwargs.get("deepstack_visual_embeds")
        if mask is None or embeds is None or not compaction.removed:
            return kwargs
        mask = mask.to(compaction.index.device).bool()
        row = (mask.reshape(-1).cumsum(0) - 1).view(mask.shape)  # each visual position's row in the embeds
        kept = compaction.gather(mask, seq_dim=-1) & compaction.valid
        # Boolean indexing syncs once; the language model indexes by this mask anyway.
        rows = compaction.gather(row, seq_dim=-1)[kept]
        return {**kwargs, "visual_pos_masks": kept, "deepstack_visual_embeds": [e[rows.to(e.device)] for e in embeds]}

    def attention_parts(self, layer: nn.Module) -> AttentionParts:
        attn = layer.self_attn
        parts = super().attention_parts(layer)
        return AttentionParts(
            norm=parts.norm,
            q_proj=HeadNormed(attn.q_proj, attn.q_norm, parts.head_dim),
            num_heads=parts.num_heads,
            num_kv_heads=parts.num_kv_heads,
            head_dim=parts.head_dim,
            scaling=parts.scaling,
            k_proj=HeadNormed(attn.k_proj, attn.k_norm, parts.head_dim),
        )

    def key_projection(self, layer: nn.Module) -> Any:
        return FlatHeadsOutput(layer.self_attn.k_norm)
