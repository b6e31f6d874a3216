"""Batches of fake prompts: random text tokens and random-pixel images, left-padded
as for generation, for any model of a registered family.

A prompt is a list of parts: an ``int`` n is n random text tokens, an :class:`Image`
one image, a :class:`Video` one video (families that take videos). The family turns each image into its placeholder tokens and pixels
(:class:`~.family.FakeInputs`); this module lays the prompts out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union

import torch
from torch import nn

from .tiny import PAD_ID

TEXT_IDS = (3, 240)  # random text tokens are drawn from this id range


@dataclass(frozen=True)
class Image:
    """An image in a prompt. ``rows`` x ``cols`` is its grid of LLM tokens (Qwen2-VL);
    ``size`` its (height, width) in pixels (LLaVA-NeXT / OneVision, which tile it by
    size); LLaVA-1.5 images always have the vision tower's fixed grid."""

    rows: int = 0
    cols: int = 0
    size: tuple[int, int] | None = None


@dataclass(frozen=True)
class Video:
    """A video in a prompt: ``frames`` frame grids of ``rows`` x ``cols`` LLM tokens (for
    Qwen a frame is a temporal patch, two video frames merged), ``seconds`` apart where
    the family encodes time (Qwen2.5-VL's ``second_per_grid_ts``)."""

    frames: int
    rows: int
    cols: int
    seconds: float = 1.0


IMAGE = Image()
Part = Union[int, Image, Video]


@dataclass(frozen=True)
class ImageTokens:
    """One image of a fake prompt: its placeholder ids (with any markers around them),
    their multimodal token types, its pixels, and what else the family's inputs need
    of it (``extra``: Qwen's (t, h, w) grid, LLaVA-NeXT's size)."""

    ids: list[int]
    types: list[int]
    pixels: torch.Tensor
    extra: Any = None
    video: bool = False  # a video's tokens (its pixels go in the family's video inputs)


def make_batch(
    model: nn.Module, prompts: Sequence[Sequence[Part]], seeds: Sequence[int] | None = None
) -> dict[str, torch.Tensor]:
    """Inputs for ``model`` (a tiny or real model of a registered family) from prompt
    descriptions.

    Text tokens and pixels are random but a pure function of each prompt's seed
    (default: its index), so ``make_batch(m, [p], seeds=[i])`` is sample i of
    ``make_batch(m, prompts)`` on its own.
    """
    from .family import family_of

    fake = family_of(model).fake_inputs
    seeds = list(range(len(prompts))) if seeds is None else list(seeds)
    rows, types, images, per_prompt = [], [], [], []
    for seed, prompt in zip(seeds, prompts):
        gen = torch.Generator().manual_seed(seed)
        ids: list[int] = []
        kinds: list[int] = []
        images_here = sum(1 for part in prompt if isinstance(part, Image))  # videos apart
        per_prompt.append(images_here)
        for part in prompt:
            if isinstance(part, int):
                ids += torch.randint(*TEXT_IDS, (part,), generator=gen).tolist()
                kinds += [0] * part
            else:
                image = fake.image(model, part, gen, images_here)
                images.append(image)
                ids += image.ids
                kinds += image.types
        rows.append(ids)
        types.append(kinds)

    length = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), PAD_ID, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    token_types = torch.zeros((len(rows), length), dtype=torch.long)
    for b, (ids, kinds) in enumerate(zip(rows, types)):
        input_ids[b, length - len(ids):] = torch.tensor(ids)
        attention_mask[b, length - len(ids):] = 1
        token_types[b, length - len(ids):] = torch.tensor(kinds)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    batch.update(fake.inputs(model, images, per_prompt, token_types))
    return batch


def pixel_dtype(model: nn.Module) -> torch.dtype:
    """The dtype the model's pixels go in."""
    return next(model.parameters()).dtype
