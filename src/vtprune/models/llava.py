"""Adapter for LLaVA-1.5 (``LlavaForConditionalGeneration``, ``LlavaModel``).

Each image is a fixed square grid of ``(image_size // patch_size) ** 2`` tokens (576
for LLaVA-1.5 at 336 px, patch 14), written in raster order where the prompt has its
``<image>`` placeholder tokens. Positions are plain 1-D RoPE ids.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..runtime.layout import ImageLayout
from ..runtime.vision import VisionCall
from .base import Forward, ModelAdapter


class LlavaAdapter(ModelAdapter):
    family = "llava"
    model_classes = ("LlavaForConditionalGeneration", "LlavaModel")
    position_rows = 1
    signals = ModelAdapter.signals | {"vision_saliency", "vision_keys", "vision_features"}

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        strategy = getattr(self.config, "vision_feature_select_strategy", "default")
        if strategy != "default":
            raise ValueError(
                f"vision_feature_select_strategy={strategy!r} puts the CLS token among the image "
                "tokens, which has no place on the patch grid; accepted: 'default'"
            )
        vision = self.config.vision_config
        side = int(vision.image_size) // int(vision.patch_size)
        self.grid = (side, side)

    @property
    def image_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def vision_module(self) -> nn.Module:
        return self.core.vision_tower

    def vision_call(self, args: tuple, kwargs: dict) -> Any:
        pixel_values = args[0] if args else kwargs.get("pixel_values")
        return None if pixel_values is None else int(pixel_values.shape[0])  # images in the call

    def _feature_layer(self) -> nn.Module:
        """The encoder layer whose output LLaVA feeds the projector."""
        index = self.config.vision_feature_layer
        layers = self._encoder_layers()
        if not isinstance(index, int):
            raise ValueError(f"vision signals need one vision_feature_layer; this model reads {index}")
        # hidden_states[0] is the embedding output; hidden_states[j] the output of layer j - 1.
        position = index if index >= 0 else len(layers) + 1 + index
        if not 1 <= position <= len(layers):
            raise ValueError(f"vision_feature_layer={index} is not an encoder layer's output")
        return layers[position - 1]

    def _encoder_layers(self) -> nn.ModuleList:
        tower = self.core.vision_tower
        return getattr(tower, "vision_model", tower).encoder.layers  # nested in older releases

    def install_vision_capture(self, record: Callable[[str, Any], None]) -> list[Any]:
        layer = self._feature_layer()
        first = lambda out: out[0] if isinstance(out, tuple) else out  # noqa: E731
        return [
            layer.register_forward_pre_hook(lambda m, args: record("layer_in", args[0])),
            layer.self_attn.k_proj.register_forward_hook(lambda m, args, out: record("keys", out)),
            layer.register_forward_hook(lambda m, args, out: record("layer_out", first(out))),
            # The final layer's patches, which CLIP's projection head was trained on.
            self._encoder_layers()[-1].register_forward_hook(lambda m, args, out: record("last_out", first(out))),
        ]

    def check_text_tower(self) -> None:
        """CLIP towers have a text counterpart: nothing to refuse."""

    def _clip_relevance(self, level, group) -> torch.Tensor:
        """Cosine, in CLIP space, between each patch of the vision tower's final layer
        (post layer norm, projected) and the CLIP text embedding of the instruction."""
        call, tower = level.vision, self.text_tower
        if "clip_image" not in call.cache:
            tower_module = self.core.vision_tower
            post_ln = getattr(tower_module, "vision_model", tower_module).post_layernorm
            call.cache["clip_image"] = tower.image_embeddings(post_ln(call.captures["last_out"][:, 1:]))
        patches = call.cache["clip_image"][list(group.images)]
        patches = patches.gather(1, group.token_index[..., None].expand(-1, -1, patches.shape[-1]))
        text = tower.text_embeddings(self._instruction_ids(level, group)).to(patches.device)
        return (patches * text[:, None, :]).sum(-1)

    def vision_signal(self, name: str, call: VisionCall) -> torch.Tensor:
        """Signals of the layer LLaVA reads; its first token is CLS, the rest the grid."""
        captures = call.captures
        if name == "vision_features":
            return captures["layer_out"][:, 1:]
        if name == "vision_keys":
            return captures["keys"][:, 1:]
        # vision_saliency: the CLS token's attention row in that layer, heads averaged,
        # recomputed from the layer's input and keys (no eager attention needed).
        layer = self._feature_layer()
        attn = layer.self_attn
        hidden, keys = captures["layer_in"], captures["keys"]
        images, tokens, _ = keys.shape
        query = attn.q_proj(layer.layer_norm1(hidden[:, :1])).view(images, 1, attn.num_heads, attn.head_dim)
        keys = keys.view(images, tokens, attn.num_heads, attn.head_dim)
        scores = torch.einsum("iqhd,ikhd->ihqk", query.float(), keys.float()) * attn.scale
        return torch.softmax(scores, dim=-1).mean(dim=1)[:, 0, 1:]

    def layout(self, forward: Forward) -> ImageLayout | None:
        if not forward.has_image_features:
            return None
        mask = self.image_token_mask(forward)
        per_image = self.grid[0] * self.grid[1]
        pixel_values = forward.core_inputs.get("pixel_values")
        # Shapes known on the host: no device sync to count the images.
        num_images = len(forward.encoded_images) if pixel_values is None else int(pixel_values.shape[0])
        if num_images == 0:
            return None
        return ImageLayout(mask, (per_image,) * num_images, (self.grid,) * num_images)
