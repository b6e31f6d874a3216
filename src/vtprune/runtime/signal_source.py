"""The signals a stage declared, computed for one image group from the family's facts.

Every family computes its signals alike from what its adapter says about it (where the
tokens are, the vision tower's per-image signals, a decoder layer's attention parts
and RoPE tables, the final norm); only the vision tower's own signals are the
adapter's to compute. Helper models (a CLIP text tower) are provided by the runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..pruning_methods.scoring import prompt_relevance
from ..signals import VISION_SIGNALS, parse_signal
from .attention_rows import attention_rows, keys_for, rope_keys, rotated_keys
from .layout import ImageGroup
from .token_view import LayerCapture, TokenView

if TYPE_CHECKING:
    from .adapter_protocol import FamilyAdapter
    from .attention_rows import AttentionParts
    from .text_tower import TextTower

_TEXT_LLM_SIGNALS = ("text_keys_rope", "text_hidden_norm", "text_hidden")


class SignalSource:
    """Computes signal ``name`` for the current tokens of an image group at a level."""

    def __init__(self, adapter: "FamilyAdapter", text_tower: "TextTower | None" = None) -> None:
        self.adapter = adapter
        self.text_tower = text_tower

    def __call__(self, name: str, level: TokenView, group: ImageGroup) -> torch.Tensor:
        base, layer = parse_signal(name)
        if layer is not None:
            return self._llm_signal(base, layer, level, group)
        if name == "visual":
            return level.embeds_at(group.positions)
        if name == "entry_visual":
            entry = level.entry if level.entry is not None else level
            return rows_at(entry.embeds, entry.layout.image_positions(list(group.images)))
        if name == "text_mask":
            return instruction_rows(level, group)[1]
        if name == "text_embeds":
            return instruction(level, group)[1]
        if name == "text_relevance":
            return self._text_relevance(level, group)
        if name == "clip_relevance":
            if self.text_tower is None:
                raise RuntimeError("signal 'clip_relevance' needs a CLIP text tower (text_tower=...)")
            return self._clip_relevance(level, group, select_layer=True)
        if name in VISION_SIGNALS:
            return self._vision_signal(name, level, group)
        raise KeyError(f"signal {name!r} is not provided by the {self.adapter.family} adapter")

    # -- the vision tower's -----------------------------------------------------------------
    def _vision_signal(self, name: str, level: TokenView, group: ImageGroup) -> torch.Tensor:
        call = level.vision
        if call is None:
            raise RuntimeError(
                f"signal {name!r}: the vision tower's run for these images was not recorded "
                "(were the image features computed before pruning was enabled?)"
            )
        if name not in call.cache:
            call.cache[name] = self.adapter.vision_signal(name, call)
        full = call.cache[name][list(group.images)]
        index = group.token_index if full.dim() == 2 else group.token_index[..., None].expand(-1, -1, full.shape[-1])
        return full.gather(1, index)

    # -- inside the language model -----------------------------------------------------------
    def _llm_signal(self, base: str, layer: int, level: TokenView, group: ImageGroup) -> torch.Tensor:
        capture = level.capture
        if capture is None or capture.index != layer - 1:
            raise RuntimeError(f"signal '{base}@llm:{layer}' is only available to a stage at llm:{layer}")
        if base == "hidden":
            return rows_at(capture.hidden_out, group.positions)
        if base == "keys":
            return rows_at(capture.keys, group.positions)
        if base in ("keys_rope", "hidden_norm"):
            return rows_at(self._derived(base, capture), group.positions)
        if base in _TEXT_LLM_SIGNALS:
            return self._text_rows(base, capture, level, group)
        if base in ("attn_last", "attn_last_next"):
            return self._last_token_attention(base, layer, capture, level, group)
        return self._instruction_attention(capture, level, group)

    def _text_rows(self, base: str, capture: LayerCapture, level: TokenView, group: ImageGroup) -> torch.Tensor:
        """A layer tensor at each image's instruction tokens (rows of ``text_mask``)."""
        whole = capture.hidden_out if base == "text_hidden" else self._derived(base.removeprefix("text_"), capture)
        order, mask = instruction_rows(level, group)
        length = level.image.shape[1]
        sample = torch.div(group.positions[:, 0], length, rounding_mode="floor")
        rows = rows_at(whole, order + (sample * length)[:, None])
        return rows * mask[..., None].to(rows.dtype)

    def _last_token_attention(
        self, base: str, layer: int, capture: LayerCapture, level: TokenView, group: ImageGroup
    ) -> torch.Tensor:
        """(I, N) attention of each prompt's last token to the group's tokens; with
        ``attn_last_next``, the next layer's norm and q/k on this layer's output."""
        samples, columns = _samples_and_columns(level, group)
        rope = self.adapter.rope_tables(*capture.position_embeddings)
        last = last_real_column(level.attention_mask, samples, level.image.shape[1])[:, None]
        if base == "attn_last":
            parts = self.adapter.attention_parts(capture.layer)
            rotated = _group_keys(group, parts, capture, rope, samples)
            rows = attention_rows(parts, capture, rope, samples, last, level.attention_mask, rotated=rotated)
        else:
            parts = self.adapter.attention_parts(self.adapter.decoder_layers[layer])
            if "next_keys" not in capture.derived:
                capture.derived["next_keys"] = keys_for(parts, capture.hidden_out)
            rows = attention_rows(
                parts, capture, rope, samples, last, level.attention_mask,
                hidden=capture.hidden_out, keys=capture.derived["next_keys"],
            )
        return rows[:, 0].gather(1, columns)

    def _instruction_attention(self, capture: LayerCapture, level: TokenView, group: ImageGroup) -> torch.Tensor:
        """(I, T, N) attention of each image's instruction tokens to its tokens."""
        samples, columns = _samples_and_columns(level, group)
        parts = self.adapter.attention_parts(capture.layer)
        rope = self.adapter.rope_tables(*capture.position_embeddings)
        queries, mask = instruction_rows(level, group)
        rotated = _group_keys(group, parts, capture, rope, samples)
        rows = attention_rows(parts, capture, rope, samples, queries, level.attention_mask, rotated=rotated)
        picked = rows.gather(2, columns[:, None, :].expand(-1, queries.shape[1], -1))
        return picked * mask[..., None]

    def _derived(self, name: str, capture: LayerCapture) -> torch.Tensor:
        """Whole-batch tensors of the captured layer, computed once per stage: keys after
        RoPE (``keys_rope``), output hidden states through the final norm (``hidden_norm``)."""
        if name not in capture.derived:
            if name == "keys_rope":
                parts = self.adapter.attention_parts(capture.layer)
                rope = self.adapter.rope_tables(*capture.position_embeddings)
                capture.derived[name] = rotated_keys(capture.keys, rope, parts.num_kv_heads, parts.head_dim)
            else:
                capture.derived[name] = self.adapter.final_norm(capture.hidden_out)
        return capture.derived[name]

    # -- relevance to the prompt ---------------------------------------------------------------
    def _text_relevance(self, level: TokenView, group: ImageGroup) -> torch.Tensor:
        """Cosine between each token and the prompt: in CLIP space with a text tower, else
        between the token's LLM-input features and the mean of its prompt's instruction
        tokens (the same float32 computation the methods' own fallback uses)."""
        if self.text_tower is not None:
            return self._clip_relevance(level, group)
        _, text, mask = instruction(level, group)
        return prompt_relevance(level.embeds_at(group.positions), text, mask)

    def _clip_relevance(self, level: TokenView, group: ImageGroup, select_layer: bool = False) -> torch.Tensor:
        """Cosine, in CLIP space, between each patch (post layer norm, projected) and the
        CLIP text embedding of the instruction: patches of the vision tower's final layer
        (``text_relevance``), or of the layer the LLM reads (``clip_relevance``, CDPruner's)."""
        call = level.vision
        key = "clip_image_select" if select_layer else "clip_image"
        if key not in call.cache:
            call.cache[key] = self.text_tower.image_embeddings(self.adapter.clip_patches(call, select_layer))
        patches = call.cache[key][list(group.images)]
        patches = patches.gather(1, group.token_index[..., None].expand(-1, -1, patches.shape[-1]))
        text = self.text_tower.text_embeddings(instruction_ids(level, group)).to(patches.device)
        return (patches * text[:, None, :]).sum(-1)


def instruction_rows(level: TokenView, group: ImageGroup) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (I, T) and mask (I, T) of each image's instruction tokens: the text
    after the image in its prompt (after the whole video for a video's frame), or all
    of the prompt's text if the image comes last. Padded rows point at a real token."""
    if "instruction_rows" in group.cache:
        return group.cache["instruction_rows"]
    length = level.image.shape[1]
    positions = group.positions
    sample = torch.div(positions[:, 0], length, rounding_mode="floor")
    last = positions.max(dim=1).values if group.last_position is None else group.last_position
    last_visual = last - sample * length
    text = level.image[sample] < 0  # (I, L) text and padding
    if level.row_ends is not None:
        text &= level.row_ends[sample] == -1  # image tokens outside the grids are not text
    if level.attention_mask is not None:
        text &= level.attention_mask[sample].bool()
    column = torch.arange(length, device=positions.device)
    after = text & (column[None, :] > last_visual[:, None])
    rows = torch.where(after.any(-1, keepdim=True), after, text)
    count = rows.sum(-1)
    width = max(int(count.max()), 1)
    order = torch.argsort((~rows).to(torch.uint8), dim=1, stable=True)[:, :width]
    mask = torch.arange(width, device=positions.device)[None, :] < count[:, None]
    order = torch.where(mask, order, order[:, :1])  # padded rows repeat a real token
    group.cache["instruction_rows"] = (order, mask)
    return order, mask


def instruction(level: TokenView, group: ImageGroup) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Positions (I, T), LLM-input embeddings (I, T, D) and mask (I, T) of each image's
    instruction tokens (see :func:`instruction_rows`); padded rows are zeros. Only the
    instruction's rows are gathered, not the level's whole sequence."""
    if "instruction" in group.cache:
        return group.cache["instruction"]
    order, mask = instruction_rows(level, group)
    length = level.image.shape[1]
    sample = torch.div(group.positions[:, 0], length, rounding_mode="floor")
    gathered = level.embeds_at(order + (sample * length)[:, None])
    result = (order, gathered * mask[..., None].to(gathered.dtype), mask)
    group.cache["instruction"] = result
    return result


def instruction_ids(level: TokenView, group: ImageGroup) -> list[list[int]]:
    """Token ids of each image's instruction (see :func:`instruction`), on the host."""
    if level.input_ids is None:
        raise RuntimeError("relevance in CLIP space needs the prompt as input_ids, not inputs_embeds")
    order, mask = instruction_rows(level, group)
    length = level.image.shape[1]
    sample = torch.div(group.positions[:, 0], length, rounding_mode="floor")
    ids = level.input_ids[sample[:, None], order]
    return [row[keep].tolist() for row, keep in zip(ids, mask)]


def last_real_column(mask: torch.Tensor | None, samples: torch.Tensor, length: int) -> torch.Tensor:
    """(I,) column of the last real token of each row in ``samples`` (the prompt's last
    token): found from the attention mask, so left and right padding give the same token."""
    if mask is None:
        return torch.full_like(samples, length - 1)
    column = torch.arange(length, device=mask.device)
    return torch.where(mask[samples].bool(), column, -1).amax(dim=-1)


def _group_keys(
    group: ImageGroup, parts: "AttentionParts", capture: LayerCapture, rope: tuple[torch.Tensor, torch.Tensor],
    samples: torch.Tensor,
) -> torch.Tensor:
    """The captured layer's keys after RoPE for the group's batch rows, computed once per
    group and stage: the instruction rows and the last token's row score against the same."""
    if "rotated_keys" not in group.cache:
        group.cache["rotated_keys"] = rope_keys(parts, capture.keys, rope, samples)
    return group.cache["rotated_keys"]


def rows_at(x: torch.Tensor, flat_positions: torch.Tensor) -> torch.Tensor:
    """Gather (B, L, D) ``x`` at flat (b * L + l) positions of any shape."""
    return x.reshape(-1, x.shape[-1])[flat_positions]


def _samples_and_columns(level: TokenView, group: ImageGroup) -> tuple[torch.Tensor, torch.Tensor]:
    """(I,) batch row of each image of the group and (I, N) its tokens' columns there."""
    length = level.image.shape[1]
    samples = torch.div(group.positions[:, 0], length, rounding_mode="floor")
    return samples, group.positions - samples[:, None] * length
