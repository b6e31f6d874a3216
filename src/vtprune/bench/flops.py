"""Prefill compute by one stated formula.

Counted in multiply-accumulates (MACs), the convention of the FastV line of papers
(LLaVA-1.5-7B: about 3.8 T at 576 visual tokens, 0.83 T at 128, 0.42 T at 64, counting
the visual tokens only). For one decoder layer over n tokens, with hidden size d,
key/value width d_kv (d for multi-head, smaller with grouped-query attention) and MLP
width m:

    q and o projections   2 n d^2
    k and v projections   2 n d d_kv
    attention             2 n^2 d         (scores and the weighted sum)
    gated MLP             3 n d m         (gate, up and down matrices)

so 4 n d^2 + 2 n^2 d + 3 n d m for multi-head attention. Layer norms, RoPE, softmax
and the language model head (one position at prefill) are left out. The vision tower
is counted the same way (a ViT layer's MLP has two matrices: 2 n d m), by each
family's ``models/<family>/cost.py``, and is the same with and without pruning, since
every method here acts after it.

A prefill's total adds every decoder layer at its own token count (text tokens plus
the visual tokens that layer sees), so methods that prune inside the language model
are counted layer by layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LayerShape:
    """What a transformer layer's MACs depend on."""

    hidden: int  # d
    kv_width: int  # d_kv = key/value heads x head dim
    mlp: int  # m
    mlp_matrices: int  # 3 for gated (SwiGLU) MLPs, 2 for plain ones

    def macs(self, tokens: int) -> int:
        d, n = self.hidden, tokens
        return 2 * n * d * d + 2 * n * d * self.kv_width + 2 * n * n * d + self.mlp_matrices * n * d * self.mlp


def language_layer(text_config) -> LayerShape:
    """The decoder-layer shape of a transformers text config (Llama, Qwen2...)."""
    heads = text_config.num_attention_heads
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // heads
    kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
    return LayerShape(text_config.hidden_size, kv_heads * head_dim, text_config.intermediate_size, 3)


def prefill_macs(layer: LayerShape, tokens_per_layer: list[int]) -> int:
    """MACs of the decoder layers of one sequence, given each layer's token count."""
    return sum(layer.macs(n) for n in tokens_per_layer)


def vision_macs(model, patches_per_image: list[int]) -> int:
    """MACs of the vision tower and projector for images of the given patch counts
    (before any merging), by the model's family. Identical with and without pruning."""
    from ..models import family_of

    return family_of(model).vision_macs(model.config, patches_per_image)


def patches_per_image(model, batch: dict) -> list[int]:
    """Vision patches of each image (InternVL: each tile) of a batch, before merging: the
    family's own count where its images vary in size without a patch grid input
    (Mistral 3, Idefics3), else ``image_grid_thw``, else one fixed grid per ``pixel_values`` row."""
    from ..models import family_of

    counter = family_of(model).patches_per_image
    if counter is not None:
        return counter(model, batch)
    if "image_grid_thw" in batch or "video_grid_thw" in batch:
        images = [int(t * h * w) for t, h, w in batch.get("image_grid_thw", torch.empty(0, 3)).tolist()]
        # The tower attends within each temporal patch of a video: one block per frame group.
        frames = [int(h * w) for t, h, w in batch.get("video_grid_thw", torch.empty(0, 3)).tolist() for _ in range(int(t))]
        return images + frames
    vision = model.config.vision_config
    # Sizes are ints or (height, width) pairs (InternVL).
    size, patch = (v if isinstance(v, (list, tuple)) else (v, v) for v in (vision.image_size, vision.patch_size))
    return [(size[0] // patch[0]) * (size[1] // patch[1])] * int(batch["pixel_values"].shape[0])


def patch_counts_or_empty(counts: list[int]) -> list[int]:
    """Images with patches (a prompt without images has none)."""
    return [c for c in counts if c > 0]
