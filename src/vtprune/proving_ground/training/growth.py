"""Deepening a trained language model without changing what it computes.

Block expansion as in LLaMA Pro (Wu et al., 2024, arXiv 2401.02415): a new decoder
layer starts as a copy of a trained one with its two output projections
(``self_attn.o_proj`` and ``mlp.down_proj``) set to zero, so it adds nothing to the
residual stream and the grown model's logits equal the original's. Training then
gives the new layers work of their own.

Layers are put in front of the first one: a model whose few layers already carry the
image's evidence into the text by layer 2 gets early layers that see every visual
token before any of the trained routing runs, so methods that prune at layer 2 read
the attention of layers that have not yet looked for anything in particular, as in a
32-layer model.
"""

from __future__ import annotations

import copy

import torch
from transformers import LlavaForConditionalGeneration


def identity_copy(layer: torch.nn.Module) -> torch.nn.Module:
    """A copy of the decoder layer ``layer`` that leaves the residual stream unchanged."""
    grown = copy.deepcopy(layer)
    with torch.no_grad():
        grown.self_attn.o_proj.weight.zero_()
        grown.mlp.down_proj.weight.zero_()
        for projection in (grown.self_attn.o_proj, grown.mlp.down_proj):
            if projection.bias is not None:
                projection.bias.zero_()
    return grown


def grow_front(model: LlavaForConditionalGeneration, layers: int, source: int = 0) -> None:
    """Insert ``layers`` identity copies of decoder layer ``source`` before the first
    decoder layer of ``model``'s language model, in place; the config's depth follows."""
    if layers < 0:
        raise ValueError(f"grow_front: expected a number of layers >= 0; got {layers}")
    decoder = model.model.language_model
    if not 0 <= source < len(decoder.layers):
        raise ValueError(f"grow_front: source layer must be in [0, {len(decoder.layers) - 1}]; got {source}")
    if layers == 0:
        return
    stack = [identity_copy(decoder.layers[source]) for _ in range(layers)] + list(decoder.layers)
    for index, layer in enumerate(stack):
        layer.self_attn.layer_idx = index  # the KV cache is indexed by it
    decoder.layers = torch.nn.ModuleList(stack)
    config = model.config.text_config
    config.num_hidden_layers = len(stack)
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[0]] * layers + list(config.layer_types)
