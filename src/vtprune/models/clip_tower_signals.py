"""Signals of a CLIP- or SigLIP-style vision tower that encodes fixed-size tiles.

LLaVA-1.5 encodes each image as one tile, LLaVA-NeXT and OneVision as a base tile plus
high-resolution tiles. The signals come from the encoder layer whose output the model
projects (``vision_feature_layer``), captured as it runs, per tile:

* ``vision_saliency``: the CLS token's attention row over the patches (CLIP), or, for
  towers without CLS (SigLIP), the mean attention each patch receives; heads averaged,
  recomputed from the layer's input and keys rather than from eager attention;
* ``vision_keys``: that layer's keys of the patches, averaged over heads (VisionZip's
  merge metric).

The feature layer's output and the final layer's are captured too, for CLIP-space
relevance (``clip_relevance``, ``text_relevance`` with a text tower).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..attention import attention_weights
from ..compat import vision_model

def encoder_layers(tower: nn.Module) -> nn.ModuleList:
    return vision_model(tower).encoder.layers


def has_cls(tower: nn.Module) -> bool:
    """CLIP prepends a CLS token to the patches; SigLIP does not."""
    return hasattr(vision_model(tower).embeddings, "class_embedding")


def post_layernorm(tower: nn.Module) -> nn.Module:
    return vision_model(tower).post_layernorm


def feature_layer(tower: nn.Module, index: Any) -> nn.Module:
    """The encoder layer whose output is ``hidden_states[index]``."""
    return layer_of_hidden_state(encoder_layers(tower), index)


def layer_of_hidden_state(layers: nn.ModuleList, index: Any) -> nn.Module:
    """The layer of ``layers`` whose output is a tower's ``hidden_states[index]``;
    ``ValueError`` for several indices or one that is no layer's output."""
    if not isinstance(index, int):
        raise ValueError(f"vision signals need one vision_feature_layer; this model reads {index}")
    # hidden_states[0] is the embedding output; hidden_states[j] the output of layer j - 1.
    position = index if index >= 0 else len(layers) + 1 + index
    if not 1 <= position <= len(layers):
        raise ValueError(f"vision_feature_layer={index} is not an encoder layer's output")
    return layers[position - 1]


def install_capture(tower: nn.Module, index: Any, record: Callable[[str, Any], None]) -> list[Any]:
    """Hooks recording the feature layer's input, keys and output, and the final
    layer's output (for CLIP's projection head)."""
    layer = feature_layer(tower, index)
    first = lambda out: out[0] if isinstance(out, tuple) else out  # noqa: E731
    return [
        layer.register_forward_pre_hook(lambda m, args: record("layer_in", args[0])),
        layer.self_attn.k_proj.register_forward_hook(lambda m, args, out: record("keys", out)),
        layer.register_forward_hook(lambda m, args, out: record("layer_out", first(out))),
        encoder_layers(tower)[-1].register_forward_hook(lambda m, args, out: record("last_out", first(out))),
    ]


def tile_signal(name: str, captures: dict, tower: nn.Module, index: Any) -> torch.Tensor:
    """(tiles, patches[, D]) signal ``name`` of every tile of a vision call."""
    skip = 1 if has_cls(tower) else 0
    if name == "vision_keys":
        keys = captures["keys"][:, skip:]
        heads = feature_layer(tower, index).self_attn.num_heads
        return keys.unflatten(-1, (heads, -1)).mean(-2)
    if name != "vision_saliency":
        raise KeyError(name)
    layer = feature_layer(tower, index)
    attn = layer.self_attn
    hidden, keys = captures["layer_in"], captures["keys"]
    # CLIP: the CLS token's row (one query per tile); no CLS: every query.
    query = attn.q_proj(layer.layer_norm1(hidden[:, :1] if skip else hidden))
    return saliency(query, keys, attn.num_heads, attn.scale, cls=bool(skip))


def saliency(query: torch.Tensor, keys: torch.Tensor, heads: int, scale: float, cls: bool) -> torch.Tensor:
    """(tiles, patches) ``vision_saliency`` from one layer's queries and keys (heads
    concatenated): with ``cls``, the attention of the CLS query (query row 0, key
    column 0) to each patch; without, the attention each patch receives, averaged
    over all queries. Heads averaged, in float32."""
    tiles, tokens, width = keys.shape
    keys = keys.reshape(tiles, tokens, heads, width // heads).float()
    query = query.reshape(tiles, query.shape[1], heads, width // heads).float()
    probs = attention_weights(query.transpose(1, 2), keys.transpose(1, 2), scale)  # (tiles, heads, Q, K)
    if cls:
        return probs.mean(dim=1)[:, 0, 1:]
    return probs.mean(dim=(1, 2))
