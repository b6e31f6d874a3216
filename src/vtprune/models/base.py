"""What every model adapter provides, and the signals all families compute alike.

An adapter knows one model family: which module is the multimodal core (the one that
embeds text and images and calls the language model), which tokens are visual, each
image's token grid, how position ids work, and how to compute each signal. It never
decides what to keep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from ..runtime.attention_rows import AttentionParts, attention_rows, keys_for, rotated_keys
from ..runtime.compaction import Compaction
from ..runtime.layout import ImageGroup, ImageLayout
from ..runtime.level import Level
from ..runtime.text_tower import TextTower
from ..registry import ModelShape
from ..runtime.vision import VISION_SIGNALS, VisionCall
from ..signals import parse_signal


@dataclass
class Forward:
    """What one forward of the multimodal core was called with, and what the language
    model is about to receive. Built by the runtime, read by the adapter's signals."""

    core_inputs: dict[str, Any]
    vision_calls: tuple[Any, ...] = ()
    encoder_calls: tuple[dict, ...] = ()  # what the image encoder was called with (see records_encoder)
    inputs_embeds: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    layout: ImageLayout | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def has_image_features(self) -> bool:
        """Whether this forward brings image features (not only image token ids: a
        generated token may equal the image token id and must then stay text)."""
        return self.core_inputs.get("pixel_values") is not None or self.encoded_images is not None

    @property
    def encoded_images(self) -> tuple[torch.Tensor, ...] | None:
        """Per-image features computed before the forward (``generate`` encodes images
        before the prefill and passes them as ``mm_encoder_outputs``)."""
        encoded = (self.core_inputs.get("mm_encoder_outputs") or {}).get("image")
        return None if encoded is None else tuple(encoded.pooler_output)


class ModelAdapter:
    """Base class of the per-family adapters."""

    family: ClassVar[str] = ""
    model_classes: ClassVar[tuple[str, ...]] = ()
    model_types: ClassVar[tuple[str, ...]] = ()  # the ``model_type`` of the family's configs
    position_rows: ClassVar[int] = 1  # 1: (B, L) RoPE ids; 3: (3, B, L) M-RoPE ids
    records_encoder: ClassVar[bool] = False  # record the arguments of core.get_image_features
    signals: ClassVar[frozenset[str]] = frozenset(
        {
            "visual", "entry_visual", "text_embeds", "text_mask", "text_relevance",
            "attn_rows", "attn_last", "attn_last_next", "hidden", "hidden_norm", "keys", "keys_rope",
            "text_hidden", "text_hidden_norm", "text_keys_rope",
        }
    )

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.text_tower: TextTower | None = None  # set when a method scores relevance in CLIP space
        self.core: nn.Module = model.model if hasattr(model, "model") and hasattr(model.model, "language_model") else model
        self.language_model: nn.Module = self.core.language_model
        self.config = self.core.config

    # -- identification --------------------------------------------------------------
    @classmethod
    def handles(cls, model: nn.Module) -> bool:
        return type(model).__name__ in cls.model_classes

    @classmethod
    def handles_config(cls, config: Any) -> bool:
        """Whether a transformers config (``AutoConfig.from_pretrained``) is of this family."""
        return getattr(config, "model_type", None) in cls.model_types

    @classmethod
    def shape_of(cls, config: Any) -> ModelShape:
        """What a method may know of a model with this config, before it is loaded."""
        return ModelShape(int(config.text_config.num_hidden_layers), cls.image_tokens_of(config))

    @classmethod
    def image_tokens_of(cls, config: Any) -> int | None:
        """Visual tokens per image when every image has the same number, else None."""
        return None

    @property
    def vision_module(self) -> nn.Module:
        """The vision tower, whose calls the runtime records (``generate`` runs it before
        the prefill, outside the core's forward)."""
        raise NotImplementedError

    def vision_call(self, args: tuple, kwargs: dict) -> Any:
        """What to remember of one call of the vision tower (default: nothing)."""
        return None

    def encoder_call(self, args: tuple, kwargs: dict) -> dict:
        """What to remember of a call of ``core.get_image_features`` (``records_encoder``)."""
        return {}

    def install_vision_capture(self, record: Callable[[str, Any], None]) -> list[Any]:
        """Hooks inside the vision tower that ``record(name, value)`` what the vision
        signals are computed from. Returns the hook handles."""
        return []

    def captures_vision(self, needs: set[str]) -> bool:
        """Whether signals in ``needs`` are computed from inside the vision tower."""
        return (
            bool(needs & VISION_SIGNALS)
            or "clip_relevance" in needs
            or ("text_relevance" in needs and self.text_tower is not None)
        )

    def match_vision_call(self, forward: Forward, layout: ImageLayout) -> VisionCall | None:
        """The recorded vision call that produced this forward's images (the latest one
        with as many images)."""
        for call in reversed(forward.vision_calls):
            if isinstance(call, VisionCall) and call.info == layout.num_images:
                return call
        return None

    def vision_signal(self, name: str, call: VisionCall) -> torch.Tensor:
        """Signal ``name`` for every image of a vision call: (images, N[, D]) over each
        image's full token grid."""
        raise KeyError(f"signal {name!r} is not provided by the {self.family} adapter")

    @property
    def image_tokens(self) -> int | None:
        """Visual tokens per image when every image has the same number, else None."""
        return self.image_tokens_of(self.config)

    @property
    def num_layers(self) -> int:
        return int(self.config.text_config.num_hidden_layers)

    @property
    def image_token_id(self) -> int:
        return int(self.config.image_token_id)

    def check_stages(self, stages: list) -> None:
        """Raise before patching if the stages cannot run on this model (see
        :meth:`check_config_stages`)."""
        self.check_config_stages(self.config, stages)

    @classmethod
    def check_config_stages(cls, config: Any, stages: list) -> None:
        """Raise if the stages cannot run on a model with this config: a layer outside
        the language model, stages out of order, or a signal this adapter cannot give."""
        num_layers = cls.shape_of(config).num_layers
        last = 0
        for stage in stages:
            layer = stage.layer
            if layer is not None:
                if not 1 <= layer < num_layers:
                    raise ValueError(
                        f"stage {stage.where!r}: K must be in [1, {num_layers - 1}] for this model's "
                        f"{num_layers} decoder layers"
                    )
                if layer <= last:
                    raise ValueError(
                        f"stages must run in order: 'pre_llm' first, then 'llm:K' with K increasing; "
                        f"got {[s.where for s in stages]}"
                    )
                if "sliding_attention" in (getattr(config.text_config, "layer_types", None) or ()):
                    raise ValueError("in-LLM stages need full-attention layers; this model uses sliding windows")
                if not _masks_per_layer():
                    import transformers

                    raise ValueError(
                        f"stage {stage.where!r}: pruning inside the language model needs transformers >= 5.14 "
                        f"(attention masks sized to one layer's cache); installed: {transformers.__version__}"
                    )
                last = layer
            elif last:
                raise ValueError(
                    f"stages must run in order: 'pre_llm' first, then 'llm:K' with K increasing; "
                    f"got {[s.where for s in stages]}"
                )
            for name in stage.needs:
                base, at = parse_signal(name)
                if base not in cls.signals:
                    raise ValueError(
                        f"signal {name!r} is not provided by the {cls.family} adapter; "
                        f"provided: {sorted(cls.signals)}"
                    )
                if at is not None and at != layer:
                    raise ValueError(f"stage {stage.where!r} cannot read {name!r}: only its own layer's signals")

    # -- where the images are ---------------------------------------------------------
    def image_token_mask(self, forward: Forward) -> torch.Tensor:
        """(B, L) True at image placeholder tokens of this forward's input."""
        input_ids = forward.core_inputs.get("input_ids")
        if input_ids is not None:
            return input_ids == self.image_token_id
        # Same rule transformers uses when only embeddings are given.
        embeds = forward.core_inputs["inputs_embeds"]
        token = self.core.get_input_embeddings()(torch.tensor(self.image_token_id, device=embeds.device))
        return (embeds == token).all(-1)

    def layout(self, forward: Forward) -> ImageLayout | None:  # pragma: no cover - abstract
        """The images of this forward, or ``None`` if it has none to prune."""
        raise NotImplementedError

    # -- positions ----------------------------------------------------------------------
    def default_positions(self, batch: int, length: int, offset: int, device: torch.device) -> torch.Tensor:
        """Position ids the language model would derive itself when given none."""
        ids = torch.arange(offset, offset + length, device=device).expand(batch, length)
        return ids if self.position_rows == 1 else ids.expand(self.position_rows, batch, length)

    def compact_positions(
        self, positions: torch.Tensor, mask: torch.Tensor, forward: Forward, compaction: Compaction
    ) -> torch.Tensor:
        """``positions="compact"``: renumber the kept tokens as if they were the whole
        sequence. 1-D RoPE: consecutive ids from the first real token's id."""
        real = mask.bool()
        rank = real.long().cumsum(-1) - 1
        first = positions.gather(-1, real.long().argmax(-1, keepdim=True))
        return torch.where(real, first + rank, positions)

    # -- decoder layers (in-LLM stages) ---------------------------------------------------
    @property
    def decoder_layers(self) -> nn.ModuleList:
        return self.language_model.layers

    def attention_parts(self, layer: nn.Module) -> AttentionParts:
        """The pieces of ``layer``'s attention that scores depend on (Llama / Qwen2 naming)."""
        attn = layer.self_attn
        head_dim = int(attn.head_dim)
        return AttentionParts(
            norm=layer.input_layernorm,
            q_proj=attn.q_proj,
            num_heads=attn.q_proj.out_features // head_dim,
            num_kv_heads=attn.k_proj.out_features // head_dim,
            head_dim=head_dim,
            scaling=float(attn.scaling),
            k_proj=attn.k_proj,
        )

    @property
    def final_norm(self) -> nn.Module:
        """The language model's norm after its last decoder layer."""
        return self.language_model.norm

    def rope_tables(self, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder layers' (cos, sin) as their attention applies them, (B, L, head_dim)."""
        return cos, sin

    def key_projection(self, layer: nn.Module) -> nn.Module:
        """The module whose output is the layer's keys before RoPE."""
        return layer.self_attn.k_proj

    # -- signals ------------------------------------------------------------------------
    def signal(self, name: str, level: Level, group: ImageGroup) -> torch.Tensor:
        """Signal ``name`` for the current tokens of an image group at ``level``."""
        base, layer = parse_signal(name)
        if layer is not None:
            return self._llm_signal(base, layer, level, group)
        if name == "visual":
            return _rows(level.embeds, group.positions)
        if name == "entry_visual":
            entry = level.entry if level.entry is not None else level
            return _rows(entry.embeds, entry.layout.image_positions(list(group.images)))
        if name in ("text_embeds", "text_mask"):
            embeds, mask = self._instruction(level, group)[1:]
            return embeds if name == "text_embeds" else mask
        if name == "text_relevance":
            return self._text_relevance(level, group)
        if name == "clip_relevance":
            if self.text_tower is None:
                raise RuntimeError("signal 'clip_relevance' needs a CLIP text tower (text_tower=...)")
            return self._clip_relevance(level, group, select_layer=True)
        if name in VISION_SIGNALS:
            if level.vision is None:
                raise RuntimeError(
                    f"signal {name!r}: the vision tower's run for these images was not recorded "
                    "(were the image features computed before pruning was enabled?)"
                )
            if name not in level.vision.cache:
                level.vision.cache[name] = self.vision_signal(name, level.vision)
            full = level.vision.cache[name][list(group.images)]
            index = group.token_index if full.dim() == 2 else group.token_index[..., None].expand(-1, -1, full.shape[-1])
            return full.gather(1, index)
        raise KeyError(f"signal {name!r} is not provided by the {self.family} adapter")

    def _llm_signal(self, base: str, layer: int, level: Level, group: ImageGroup) -> torch.Tensor:
        capture = level.capture
        if capture is None or capture.index != layer - 1:
            raise RuntimeError(f"signal '{base}@llm:{layer}' is only available to a stage at llm:{layer}")
        if base == "hidden":
            return _rows(capture.hidden_out, group.positions)
        if base == "keys":
            return _rows(capture.keys, group.positions)
        if base in ("keys_rope", "text_keys_rope", "hidden_norm", "text_hidden_norm", "text_hidden"):
            whole = capture.hidden_out if base == "text_hidden" else self._derived(base.removeprefix("text_"), capture)
            if base.startswith("text_"):
                order, _, mask = self._instruction(level, group)
                sample = torch.div(group.positions[:, 0], level.image.shape[1], rounding_mode="floor")
                rows = _rows(whole, order + (sample * level.image.shape[1])[:, None])
                return rows * mask[..., None].to(rows.dtype)
            return _rows(whole, group.positions)
        samples = torch.div(group.positions[:, 0], level.image.shape[1], rounding_mode="floor")
        columns = group.positions - samples[:, None] * level.image.shape[1]
        parts = self.attention_parts(capture.layer)
        rope = self.rope_tables(*capture.position_embeddings)
        if base in ("attn_last", "attn_last_next"):
            last = last_real_column(level.attention_mask, samples, level.image.shape[1])[:, None]
            if base == "attn_last":
                rows = attention_rows(parts, capture, rope, samples, last, level.attention_mask)
            else:
                # The next layer's norm and q/k on this layer's output, at this layer's positions.
                parts = self.attention_parts(self.decoder_layers[layer])
                hidden = capture.hidden_out
                if "next_keys" not in capture.derived:
                    capture.derived["next_keys"] = keys_for(parts, hidden)
                rows = attention_rows(
                    parts, capture, rope, samples, last, level.attention_mask,
                    hidden=hidden, keys=capture.derived["next_keys"],
                )
            return rows[:, 0].gather(1, columns)
        queries, _, mask = self._instruction(level, group)
        rows = attention_rows(parts, capture, rope, samples, queries, level.attention_mask)
        picked = rows.gather(2, columns[:, None, :].expand(-1, queries.shape[1], -1))
        return picked * mask[..., None]

    def _derived(self, name: str, capture) -> torch.Tensor:
        """Whole-batch tensors of the captured layer, computed once per stage: keys after
        RoPE (``keys_rope``), output hidden states through the final norm (``hidden_norm``)."""
        if name not in capture.derived:
            if name == "keys_rope":
                parts = self.attention_parts(capture.layer)
                rope = self.rope_tables(*capture.position_embeddings)
                capture.derived[name] = rotated_keys(capture.keys, rope, parts.num_kv_heads, parts.head_dim)
            else:
                capture.derived[name] = self.final_norm(capture.hidden_out)
        return capture.derived[name]

    def _instruction(self, level: Level, group: ImageGroup) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Positions (I, T), embeddings (I, T, D) and mask (I, T) of each image's
        instruction tokens: the text after the image in its prompt, or all of the
        prompt's text if the image comes last. Padded rows point at a real token."""
        if "instruction" in group.cache:
            return group.cache["instruction"]
        embeds, length = level.embeds, level.image.shape[1]
        positions = group.positions
        sample = torch.div(positions[:, 0], length, rounding_mode="floor")
        last_visual = positions.max(dim=1).values - sample * length
        text = level.image[sample] < 0  # (I, L) text and padding
        if level.row_ends is not None:
            text &= level.row_ends[sample] == -1  # image tokens outside the grids are not text
        if level.attention_mask is not None:
            text &= level.attention_mask[sample].bool()
        column = torch.arange(length, device=embeds.device)
        after = text & (column[None, :] > last_visual[:, None])
        rows = torch.where(after.any(-1, keepdim=True), after, text)
        count = rows.sum(-1)
        width = max(int(count.max()), 1)
        order = torch.argsort((~rows).to(torch.uint8), dim=1, stable=True)[:, :width]
        mask = torch.arange(width, device=embeds.device)[None, :] < count[:, None]
        order = torch.where(mask, order, order[:, :1])  # padded rows repeat a real token
        gathered = _rows(embeds, order + (sample * length)[:, None])
        result = (order, gathered * mask[..., None].to(gathered.dtype), mask)
        group.cache["instruction"] = result
        return result

    def check_text_tower(self) -> None:
        """Raise if this family's vision tower has no CLIP text counterpart."""
        raise ValueError(
            f"text_tower: relevance in CLIP space is available for LLaVA-1.5 (family 'llava'); the "
            f"{self.family} adapter computes text relevance from the language model's input embeddings, "
            "leave text_tower unset"
        )

    def _clip_relevance(self, level: Level, group: ImageGroup, select_layer: bool = False) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _instruction_ids(self, level: Level, group: ImageGroup) -> list[list[int]]:
        """Token ids of each image's instruction (see ``_instruction``), on the host."""
        if level.input_ids is None:
            raise RuntimeError("relevance in CLIP space needs the prompt as input_ids, not inputs_embeds")
        order, _, mask = self._instruction(level, group)
        length = level.image.shape[1]
        sample = torch.div(group.positions[:, 0], length, rounding_mode="floor")
        ids = level.input_ids[sample[:, None], order]
        return [row[keep].tolist() for row, keep in zip(ids, mask)]

    def _text_relevance(self, level: Level, group: ImageGroup) -> torch.Tensor:
        """Cosine between each token and the prompt: in CLIP space with a text tower, else
        between the token's LLM-input features and the mean of its prompt's instruction
        tokens (the fallback)."""
        if self.text_tower is not None:
            return self._clip_relevance(level, group)
        _, text, mask = self._instruction(level, group)
        query = text.sum(1) / mask.sum(1, keepdim=True).clamp(min=1).to(text.dtype)
        visual = _rows(level.embeds, group.positions)
        return torch.nn.functional.cosine_similarity(visual.float(), query.float()[:, None, :], dim=-1)


def last_real_column(mask: torch.Tensor | None, samples: torch.Tensor, length: int) -> torch.Tensor:
    """(I,) column of the last real token of each row in ``samples`` (the prompt's last
    token): found from the attention mask, so left and right padding give the same token."""
    if mask is None:
        return torch.full_like(samples, length - 1)
    column = torch.arange(length, device=mask.device)
    return torch.where(mask[samples].bool(), column, -1).amax(dim=-1)


def _masks_per_layer() -> bool:
    """Whether transformers can size a causal mask to one layer's cache (5.14+)."""
    import inspect

    from transformers.masking_utils import create_causal_mask

    return "layer_idx" in inspect.signature(create_causal_mask).parameters


def _rows(x: torch.Tensor, flat_positions: torch.Tensor) -> torch.Tensor:
    """Gather (B, L, D) ``x`` at flat (b * L + l) positions of any shape."""
    return x.reshape(-1, x.shape[-1])[flat_positions]
