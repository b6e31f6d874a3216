"""Positions of the kept tokens in a served prompt.

vLLM numbers a prompt's positions when the request arrives, before the vision tower
runs, so which tokens of an image are kept is not known yet. What is known then is
where each image starts and how far the text after it moves on (its span: the
unpruned image's extent for ``positions="original"``), so the served models number the
prompt with every placeholder at its image's first id (:func:`provisional`), and the
text and the decoding steps get their final ids right away.

Each kept row then learns its own ids from the encoder: every row of a pruned image's
encoder output carries its (t, h, w) offsets from the image's first id in extra
channels (each split into two base-256 digits, so that bf16 and fp16 hold them
exactly). The model strips them where vLLM merges the encoder output into the
prompt's embeddings and moves those rows' ids in the same step's forward
(:func:`place`). vLLM's own post-encoder position hook is not used: its CPU model
runner never switches it on.

M-RoPE ids are (3, L): temporal, row, column. LLaVA's 1-D RoPE is the case of three
equal rows (the served LLaVA's rotary embedding is M-RoPE with equal rows, which
computes exactly the 1-D rotation).
"""

from __future__ import annotations

from typing import Sequence

import torch

FIELDS = 3  # dt, dh, dw
CHANNELS = 2 * FIELDS
_BASE = 256
LIMIT = _BASE * _BASE  # every field must stay below this


def encode(offsets: torch.Tensor, span: int, dtype: torch.dtype) -> torch.Tensor:
    """(K, CHANNELS) channels for an image's K kept rows with (3, K) ``offsets`` (its
    ``span`` bounds them)."""
    if span >= LIMIT:  # every offset is below the span
        raise ValueError(f"an image spans {span} positions; at most {LIMIT - 1} can be carried")
    fields = offsets.T.long()
    return torch.cat((fields // _BASE, fields % _BASE), dim=1).to(dtype)


def decode(channels: torch.Tensor) -> torch.Tensor:
    """(rows, FIELDS) long from (rows, CHANNELS) channels."""
    digits = channels.float().round().long()
    return digits[:, :FIELDS] * _BASE + digits[:, FIELDS:]


def split_channels(embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, channels) of an encoder output that carries positions."""
    return embeds[:, :-CHANNELS], embeds[:, -CHANNELS:]


def provisional(
    length: int, images: Sequence[tuple], device: torch.device | None = None
) -> tuple[torch.Tensor, int]:
    """(3, length) ids of a prompt before its images are encoded, and the decoding delta.

    ``images``: (offset, placeholders, span) of each image, in prompt order, or
    (offset, placeholders, span, ids) for an item whose (3, placeholders) ``ids`` from
    its first id are known already (a video, which is not pruned). Text advances one id
    per token; an image's placeholders all get the image's first id and the text after
    it resumes ``span`` ids later.
    """
    ids = torch.empty(3, length, dtype=torch.long)
    cursor, previous = 0, 0
    for offset, placeholders, span, *fixed in sorted(images, key=lambda item: item[0]):
        text = offset - previous
        ids[:, previous:offset] = torch.arange(cursor, cursor + text)
        cursor += text
        ids[:, offset : offset + placeholders] = cursor + (fixed[0] if fixed else 0)
        cursor += span
        previous = offset + placeholders
    ids[:, previous:] = torch.arange(cursor, cursor + length - previous)
    cursor += length - previous
    return ids.to(device), cursor - length


def place(positions: torch.Tensor, rows: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """The ids a forward runs with: ``positions`` (3, T) with each image row (``rows``,
    (T',) bool, T' <= T: the batch's multimodal rows) moved from its image's first id
    by its (R, 3) ``offsets``."""
    mask = torch.zeros(positions.shape[-1], dtype=torch.bool, device=positions.device)
    mask[: rows.shape[0]] = rows.to(positions.device)
    moved = positions.clone()
    moved[:, mask] += offsets.T.to(positions.device, positions.dtype)
    return moved
