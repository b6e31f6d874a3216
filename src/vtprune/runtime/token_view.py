"""The token view: the sequence as a stage sees it (before the LLM, or after layer K).

Each level knows where every image's current tokens sit in its (possibly already
compacted) batch of sequences, which token of the image's grid each one is, the
attention mask, and the features stages read and merges write: LLM-input embeddings
before the LLM, hidden states inside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .compaction import Compaction
from .layout import ImageLayout
from .vision import VisionCall


@dataclass
class LayerCapture:
    """What decoder layer ``index`` (0-based) saw and produced during a prefill."""

    index: int
    layer: nn.Module
    hidden_in: torch.Tensor  # (B, L, D) the layer's input
    position_embeddings: tuple[torch.Tensor, torch.Tensor]  # (cos, sin), each (B, L, head_dim)
    keys: torch.Tensor | None = None  # (B, L, H_kv * head_dim) k_proj output, before RoPE
    hidden_out: torch.Tensor | None = None  # (B, L, D) the layer's output
    derived: dict = field(default_factory=dict)  # whole-batch tensors signals derive from it (cached)


@dataclass
class TokenView:
    """The current tokens of one forward at one stage.

    image:  (B, L) image number of each position, -1 for text and padding
    token:  (B, L) index of each image token in its image's full grid, -1 elsewhere
    origin: (B, L) position of each token in the language model's input sequence
    counts: current tokens of each image (host ints)
    grids:  each image's full (rows, cols) grid
    (images here are the layout's units; see ``ImageLayout.parents``)
    """

    image: torch.Tensor
    token: torch.Tensor
    origin: torch.Tensor
    counts: tuple[int, ...]
    grids: tuple[tuple[int, int], ...]
    attention_mask: torch.Tensor | None
    input_embeds: torch.Tensor  # (B, L0, D) the language model's input (merged features written in)
    input_ids: torch.Tensor | None = None  # (B, L0) its token ids, when the prompt came as ids
    parents: tuple[int, ...] = ()
    offsets: tuple[int, ...] = ()
    budgets: tuple[int, ...] = ()  # each unit's budget, fixed for the whole forward
    row_ends: torch.Tensor | None = None  # see ImageLayout.row_ends
    frames: tuple[int, ...] = ()  # see ImageLayout.frames
    capture: LayerCapture | None = None
    vision: "VisionCall | None" = None  # the vision tower's run that produced the images
    entry: "TokenView | None" = None  # the level at the language model's input (None: this one)
    _cache: dict = field(default_factory=dict)

    @classmethod
    def at_input(
        cls,
        layout: ImageLayout,
        embeds: torch.Tensor,
        attention_mask: torch.Tensor | None,
        input_ids: torch.Tensor | None = None,
    ) -> "TokenView":
        """The level of a language model input whose images are described by ``layout``."""
        batch, length = layout.token_mask.shape
        device = embeds.device
        image = torch.full((batch * length,), -1, dtype=torch.long, device=device)
        token = torch.full((batch * length,), -1, dtype=torch.long, device=device)
        counts = torch.tensor(layout.counts, device=device)
        image_ids = torch.repeat_interleave(torch.arange(layout.num_units, device=device), counts)
        starts = torch.tensor(layout.starts, device=device)
        image[layout.flat_positions] = image_ids
        token[layout.flat_positions] = torch.arange(len(image_ids), device=device) - starts[image_ids]
        origin = torch.arange(length, device=device).expand(batch, length)
        return cls(
            image.view(batch, length), token.view(batch, length), origin, layout.counts, layout.grids,
            attention_mask, embeds, input_ids, layout.parents, layout.offsets, (), layout.row_ends, layout.frames,
        )

    @property
    def layout(self) -> ImageLayout:
        """The images at this level (cached)."""
        if "layout" not in self._cache:
            self._cache["layout"] = ImageLayout(
                self.image >= 0, self.counts, self.grids, self.parents, self.offsets, self.row_ends, self.frames
            )
        return self._cache["layout"]

    @property
    def embeds(self) -> torch.Tensor:
        """(B, L, D) LLM-input features of the current tokens."""
        if self.capture is None:
            return self.input_embeds
        if "embeds" not in self._cache:
            width = self.input_embeds.shape[1]
            rows = torch.arange(self.origin.shape[0], device=self.origin.device)[:, None] * width
            flat = self.input_embeds.reshape(-1, self.input_embeds.shape[-1])
            self._cache["embeds"] = flat[rows + self.origin]
        return self._cache["embeds"]

    def embeds_at(self, flat_positions: torch.Tensor) -> torch.Tensor:
        """:attr:`embeds` at flat (b * L + l) positions of any shape, gathering only
        those rows from the language model's input (not the whole sequence)."""
        width = self.input_embeds.shape[-1]
        if self.capture is None or "embeds" in self._cache:
            return self.embeds.reshape(-1, width)[flat_positions]
        length, source = self.origin.shape[1], self.input_embeds.shape[1]
        row = torch.div(flat_positions, length, rounding_mode="floor")
        return self.input_embeds.reshape(-1, width)[row * source + self.origin.reshape(-1)[flat_positions]]

    @property
    def features(self) -> torch.Tensor:
        """The features a stage at this level selects among: LLM-input embeddings before
        the LLM, the layer's output hidden states inside it."""
        return self.input_embeds if self.capture is None else self.capture.hidden_out

    def write_features(self, positions: torch.Tensor, values: torch.Tensor) -> None:
        """Replace the features at flat ``positions`` (merges), out of place."""
        current = self.features
        width = current.shape[-1]
        updated = current.reshape(-1, width).index_put((positions.reshape(-1),), values.reshape(-1, width).to(current.dtype))
        if self.capture is None:
            self.input_embeds = updated.view_as(current)
        else:
            self.capture.hidden_out = updated.view_as(current)
        self._cache.pop("embeds", None)

    def compact(
        self,
        compaction: Compaction,
        counts: tuple[int, ...],
        mask: torch.Tensor | None,
        input_embeds: torch.Tensor | None = None,
    ) -> "TokenView":
        """The next level: these tokens after ``compaction`` (in the order it puts them),
        with ``counts`` per image.

        ``input_embeds``: the compacted sequence becomes the language model's input
        (pruning before the LLM), so positions there are counted afresh and the new level
        is its own ``entry``; otherwise the entry level is passed on.
        """
        origin = compaction.gather_tokens(self.origin, -1)
        if input_embeds is not None:
            origin = torch.arange(compaction.length, device=origin.device).expand_as(origin)
        return TokenView(
            compaction.gather_tokens(self.image, -1).masked_fill(~compaction.valid, -1),
            compaction.gather_tokens(self.token, -1).masked_fill(~compaction.valid, -1),
            origin,
            counts,
            self.grids,
            mask,
            self.input_embeds if input_embeds is None else input_embeds,
            self.input_ids if input_embeds is None or self.input_ids is None else compaction.gather_tokens(self.input_ids, -1),
            self.parents,
            self.offsets,
            self.budgets,
            None if self.row_ends is None else compaction.gather_tokens(self.row_ends, -1).masked_fill(~compaction.valid, -1),
            self.frames,
            vision=self.vision,
            entry=None if input_embeds is not None else (self.entry if self.entry is not None else self),
        )
