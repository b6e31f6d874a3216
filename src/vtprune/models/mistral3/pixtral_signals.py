"""Signals of the Pixtral vision tower, per LLM token of Mistral 3.

Pixtral encodes every image of a call as one sequence of patches (each image's
patches in raster order, image after image), with 2-D RoPE over each image's patch
grid and a block-diagonal attention: a patch attends to the patches of its own image
only. The signals come from the encoder layer whose output the model projects
(``vision_feature_layer``), recomputed from that layer's queries and keys as it ran:

* ``vision_saliency``: the mean attention each patch receives from all the patches of
  its image (Pixtral has no CLS token), heads averaged, with the 2-D RoPE applied to
  queries and keys as the layer applies it;
* ``vision_keys``: the layer's keys before RoPE, averaged over heads.

Mistral 3's patch merger makes one LLM token of each ``merge x merge`` block of patches
(``unfold`` over the patch grid: blocks in raster order; an odd last patch row or
column is dropped). A token's signal is the mean over the patches of its block, so the
signals follow the token grid exactly as the features do.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..clip_tower_signals import layer_of_hidden_state
from ..qwen2_vl.adapter import attention_received


def encoder_layers(tower: nn.Module) -> nn.ModuleList:
    return tower.transformer.layers


def feature_layer(tower: nn.Module, index: Any) -> nn.Module:
    """The encoder layer whose output is ``hidden_states[index]`` (``hidden_states[0]``
    is the patch embeddings, ``hidden_states[j]`` the output of layer j - 1)."""
    return layer_of_hidden_state(encoder_layers(tower), index)


def patch_grids(pixel_values: torch.Tensor, image_sizes: Any, patch: int) -> tuple[tuple[int, int], ...]:
    """(patch rows, patch cols) of each image of a tower call, as Pixtral crops its
    patch embeddings (``image_sizes`` in pixels; none: every image fills its pixels)."""
    if image_sizes is None:
        height, width = pixel_values.shape[-2:]
        return ((int(height) // patch, int(width) // patch),) * int(pixel_values.shape[0])
    return tuple((int(h) // patch, int(w) // patch) for h, w in torch.as_tensor(image_sizes).tolist())


def install_capture(tower: nn.Module, index: Any, record: Callable[[str, Any], None]) -> list[Any]:
    """Hooks recording each call's patch grids, and the feature layer's queries, keys
    (before RoPE) and RoPE tables."""
    attn = feature_layer(tower, index).attention
    patch = int(tower.patch_size)

    def grids(module: Any, args: tuple, kwargs: dict) -> None:
        pixel_values = args[0] if args else kwargs["pixel_values"]
        sizes = kwargs.get("image_sizes", args[1] if len(args) > 1 else None)
        record("patch_grids", patch_grids(pixel_values, sizes, patch))

    def attention_input(module: Any, args: tuple, kwargs: dict) -> None:
        record("rope", kwargs["position_embeddings"])

    return [
        tower.register_forward_pre_hook(grids, with_kwargs=True),
        attn.register_forward_pre_hook(attention_input, with_kwargs=True),
        attn.q_proj.register_forward_hook(lambda m, args, out: record("queries", out)),
        attn.k_proj.register_forward_hook(lambda m, args, out: record("keys", out)),
    ]


def per_patch(name: str, captures: dict, tower: nn.Module, index: Any) -> torch.Tensor:
    """(patches, C) signal ``name`` of every patch of a call, in the tower's order."""
    attn = feature_layer(tower, index).attention
    keys = captures["keys"].reshape(-1, attn.num_heads, attn.head_dim).float()
    if name == "vision_keys":
        return keys.mean(1)
    if name != "vision_saliency":
        raise KeyError(name)
    queries = captures["queries"].reshape(-1, attn.num_heads, attn.head_dim).float()
    sizes = [h * w for h, w in captures["patch_grids"]]
    bounds = torch.tensor([0, *sizes]).cumsum(0)  # one attention block per image
    cos, sin = (t.reshape(-1, t.shape[-1]) for t in captures["rope"])  # (patches, head_dim)
    return attention_received(queries, keys, (cos, sin), bounds, float(attn.scaling))[:, None]


def merged(values: torch.Tensor, grids: tuple[tuple[int, int], ...], merge: int) -> list[torch.Tensor]:
    """Per image, (tokens, C): the mean of ``values`` (patches, C) over each token's
    ``merge x merge`` block of patches, tokens in raster order as the merger makes them."""
    out = []
    for (height, width), part in zip(grids, values.split([h * w for h, w in grids])):
        rows, cols = height // merge, width // merge
        grid = part.view(height, width, -1)[: rows * merge, : cols * merge]
        out.append(grid.reshape(rows, merge, cols, merge, -1).mean(dim=(1, 3)).reshape(rows * cols, -1))
    return out


def token_signal(name: str, captures: dict, tower: nn.Module, index: Any, merge: int) -> torch.Tensor:
    """(images, tokens[, C]) signal ``name`` per LLM token, images padded to the most
    tokens (their grids differ in size)."""
    tokens = merged(per_patch(name, captures, tower, index), captures["patch_grids"], merge)
    padded = torch.nn.utils.rnn.pad_sequence(tokens, batch_first=True)
    return padded[..., 0] if name == "vision_saliency" else padded
