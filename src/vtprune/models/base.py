"""What every model adapter provides, and the signals all families compute alike.

An adapter knows one model family: which module is the multimodal core (the one that
embeds text and images and calls the language model), which tokens are visual, each
image's token grid, how position ids work, and how to compute each signal. It never
decides what to keep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..runtime.compaction import Compaction
from ..runtime.layout import ImageGroup, ImageLayout


@dataclass
class Forward:
    """What one forward of the multimodal core was called with, and what the language
    model is about to receive. Built by the runtime, read by the adapter's signals."""

    core_inputs: dict[str, Any]
    vision_calls: tuple[Any, ...] = ()
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
    position_rows: ClassVar[int] = 1  # 1: (B, L) RoPE ids; 3: (3, B, L) M-RoPE ids
    signals: ClassVar[frozenset[str]] = frozenset({"visual", "text_embeds", "text_mask"})

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.core: nn.Module = model.model if hasattr(model, "model") and hasattr(model.model, "language_model") else model
        self.language_model: nn.Module = self.core.language_model
        self.config = self.core.config

    # -- identification --------------------------------------------------------------
    @classmethod
    def handles(cls, model: nn.Module) -> bool:
        return type(model).__name__ in cls.model_classes

    @property
    def vision_module(self) -> nn.Module:
        """The vision tower, whose calls the runtime records (``generate`` runs it before
        the prefill, outside the core's forward)."""
        raise NotImplementedError

    def vision_call(self, args: tuple, kwargs: dict) -> Any:
        """What to remember of one call of the vision tower (default: nothing)."""
        return None

    @property
    def num_layers(self) -> int:
        return int(self.config.text_config.num_hidden_layers)

    @property
    def image_token_id(self) -> int:
        return int(self.config.image_token_id)

    def check_stages(self, stages: list) -> None:
        """Raise before patching if a stage needs something this adapter cannot give."""
        from ..signals import parse_signal

        for stage in stages:
            if stage.layer is not None:
                raise ValueError(
                    f"stage {stage.where!r}: in-LLM pruning is not available for the "
                    f"{self.family} adapter; accepted stage: 'pre_llm'"
                )
            for name in stage.needs:
                base, _ = parse_signal(name)
                if base not in self.signals:
                    raise ValueError(
                        f"signal {name!r} is not provided by the {self.family} adapter; "
                        f"provided: {sorted(self.signals)}"
                    )

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

    # -- signals ------------------------------------------------------------------------
    def signal(self, name: str, forward: Forward, group: ImageGroup) -> torch.Tensor:
        """Signal ``name`` for the current tokens of an image group."""
        if name == "visual":
            embeds = forward.inputs_embeds
            return embeds.reshape(-1, embeds.shape[-1])[group.positions]
        if name in ("text_embeds", "text_mask"):
            if "instruction" not in group.cache:
                group.cache["instruction"] = self._instruction(forward, group.positions)
            embeds, mask = group.cache["instruction"]
            return embeds if name == "text_embeds" else mask
        raise KeyError(f"signal {name!r} is not provided by the {self.family} adapter")

    def _instruction(self, forward: Forward, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (I, T, D) and mask (I, T) of each image's instruction tokens: the
        text after the image in its prompt, or all of the prompt's text if the image
        comes last."""
        embeds, layout = forward.inputs_embeds, forward.layout
        length = layout.seq_len
        sample = torch.div(positions[:, 0], length, rounding_mode="floor")
        last_visual = positions[:, -1] - sample * length
        text = ~layout.token_mask[sample]  # (I, L)
        if forward.attention_mask is not None:
            text &= forward.attention_mask[sample].bool()
        column = torch.arange(length, device=embeds.device)
        after = text & (column[None, :] > last_visual[:, None])
        rows = torch.where(after.any(-1, keepdim=True), after, text)
        count = rows.sum(-1)
        width = max(int(count.max()), 1)
        order = torch.argsort((~rows).to(torch.uint8), dim=1, stable=True)[:, :width]
        mask = torch.arange(width, device=embeds.device)[None, :] < count[:, None]
        flat = (sample[:, None] * length + order).reshape(-1)
        gathered = embeds.reshape(-1, embeds.shape[-1])[flat].view(len(sample), width, -1)
        return gathered * mask[..., None].to(gathered.dtype), mask
