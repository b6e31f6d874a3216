"""Pieces every served family shares: the per-image fields as tensors, the prompt
signals, and the position channels split off the encoder outputs."""

from __future__ import annotations

from typing import Any

import torch


def stack_rows(values: Any, images: int, device: torch.device) -> torch.Tensor:
    """(images,) long from a batched per-image scalar field (0 where absent)."""
    if values is None:
        return torch.zeros(images, dtype=torch.long, device=device)
    if isinstance(values, torch.Tensor):
        return values.reshape(images).to(device=device, dtype=torch.long)
    return torch.stack([torch.as_tensor(v).reshape(()) for v in values]).to(device=device, dtype=torch.long)


def prompt_signals(language_model: Any, text: Any, images: int, device: torch.device) -> dict[str, torch.Tensor]:
    """``text_embeds`` (I, T, D) and ``text_mask`` (I, T) of each image's instruction:
    the language model's input embeddings of the token ids the processor carried,
    right-padded (padded rows zero, as in the Hugging Face path)."""
    if text is None:
        raise RuntimeError("vtprune: the image's instruction did not reach the model")
    rows = list(text) if not isinstance(text, torch.Tensor) or text.dim() == 2 else [text]
    rows = [torch.as_tensor(r, dtype=torch.long).reshape(-1).to(device) for r in rows]
    if len(rows) != images:
        raise RuntimeError(f"vtprune: {len(rows)} instructions for {images} images")
    width = max(max(r.numel() for r in rows), 1)
    ids = torch.zeros(images, width, dtype=torch.long, device=device)
    mask = torch.zeros(images, width, dtype=torch.bool, device=device)
    for i, row in enumerate(rows):
        ids[i, : row.numel()] = row
        mask[i, : row.numel()] = True
    embeds = language_model.embed_input_ids(ids.reshape(-1)).reshape(images, width, -1)
    return {"text_embeds": embeds * mask[..., None].to(embeds.dtype), "text_mask": mask}


def placed_rows(
    embeddings: Any, is_multimodal: torch.Tensor, width: int
) -> tuple[list[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Split the position channels off a step's encoder outputs: the features to merge
    (``width`` wide), and (rows, offsets) for :func:`vtprune.vllm.positions.place`.
    Items without channels (videos, which are not pruned) keep zero offsets."""
    from .positions import CHANNELS, decode, split_channels

    features, offsets = [], []
    for embeds in embeddings:
        if embeds.shape[-1] == width + CHANNELS:
            kept, channels = split_channels(embeds)
            features.append(kept)
            offsets.append(decode(channels))
        else:
            features.append(embeds)
            offsets.append(torch.zeros(embeds.shape[0], 3, dtype=torch.long, device=embeds.device))
    return features, (is_multimodal, torch.cat(offsets))
