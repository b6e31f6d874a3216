"""Several questions about one image in one training sequence.

The image prefix (``<s> USER : <image> x 576``) is the expensive part of a sequence,
so training puts k questions after one prefix. The attention mask lets each question
block see the prefix and itself only, and every block's position ids continue from
the end of the prefix, so each block is computed exactly as the single-question
prompt ``"USER: <image>\\n{question} ASSISTANT:"`` would be, at 1/k of the cost.

A block is the question's tokens, ``ASSISTANT :`` and the answer word; the loss is on
the answer (predicted after ``:``) and on ``</s>`` (predicted after the answer).
Blocks shorter than the longest are padded at their end; nothing real attends to the
padding, since it comes after the real tokens of its own block.

Early in training a batch may carry only a subset of each image's visual tokens
(``image_tokens`` < 576, see ``training.curriculum``): they keep their own position
ids and the question blocks keep theirs, exactly as vtprune prunes a prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from ..model import PROMPT
from ..scenes import GRID

IGNORE = -100


@dataclass
class PackedBatch:
    """Inputs and targets of a packed batch (B images, each with its questions)."""

    input_ids: torch.Tensor  # (B, L)
    position_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (1, 1, L, L) bool, True = may attend; shared by the batch
    labels: torch.Tensor  # (B, L) next-token targets at this position, IGNORE elsewhere
    image_slice: slice  # where the 576 visual tokens sit
    block_width: int  # tokens per question block; block j starts at image_slice.stop + j * block_width
    visual_index: torch.Tensor | None = None  # (B, k): which of the 576 tokens fill the image slots


class Packer:
    """Builds :class:`PackedBatch` es with the model's own tokenizer."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        head, tail = PROMPT.split("{question}")
        self.prefix = tokenizer(head, add_special_tokens=True).input_ids  # <s> USER : <image>
        image_id = tokenizer.convert_tokens_to_ids(tokenizer.image_token)
        assert self.prefix[-1] == image_id, "the prompt must end its prefix with the image"
        self.image_start = len(self.prefix) - 1
        self.head = self.prefix[:-1]
        self.image_id = image_id
        self.tail = tokenizer(tail, add_special_tokens=False).input_ids  # ASSISTANT :
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id
        self._words = lru_cache(maxsize=None)(self._encode)

    def _encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(text, add_special_tokens=False).input_ids)

    def block(self, question: str, answer: str) -> tuple[list[int], list[int]]:
        """(inputs, next-token labels) of one question block."""
        answer_ids = self._words(answer)
        if len(answer_ids) != 1:
            raise ValueError(f"answers must be one known word; {answer!r} is {answer_ids}")
        inputs = list(self._words(question)) + self.tail + list(answer_ids)
        labels = [IGNORE] * (len(inputs) - 2) + [answer_ids[0], self.eos]
        return inputs, labels

    def pack(
        self, questions: Sequence[Sequence[tuple[str, str]]], visual_index: torch.Tensor | None = None
    ) -> PackedBatch:
        """``questions[b]`` lists the (question, answer) pairs about image b.

        ``visual_index``: (B, k) sorted indices of the visual tokens to keep per image
        (None: all 576).
        """
        blocks = [[self.block(q, a) for q, a in per_image] for per_image in questions]
        slots = max(len(per_image) for per_image in blocks)
        width = max(len(inputs) for per_image in blocks for inputs, _ in per_image)
        visual = GRID * GRID if visual_index is None else visual_index.shape[1]
        n_prefix = self.image_start + visual
        length = n_prefix + slots * width

        input_ids = torch.full((len(blocks), length), self.pad, dtype=torch.long)
        labels = torch.full((len(blocks), length), IGNORE, dtype=torch.long)
        input_ids[:, :self.image_start] = torch.tensor(self.head)
        input_ids[:, self.image_start:n_prefix] = self.image_id
        for b, per_image in enumerate(blocks):
            for j, (inputs, targets) in enumerate(per_image):
                start = n_prefix + j * width
                input_ids[b, start:start + len(inputs)] = torch.tensor(inputs)
                labels[b, start:start + len(targets)] = torch.tensor(targets)

        # Text positions are those of the full prompt, whatever number of visual tokens is kept.
        full_prefix = self.image_start + GRID * GRID
        positions = torch.cat([torch.arange(n_prefix), full_prefix + torch.arange(width).repeat(slots)])
        positions = positions.expand(len(blocks), length).clone()
        if visual_index is not None:
            positions[:, self.image_start:n_prefix] = self.image_start + visual_index
        block_of = torch.cat([torch.full((n_prefix,), -1), torch.arange(slots).repeat_interleave(width)])
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        same_block = block_of[:, None] == block_of[None, :]
        sees_prefix = (block_of[None, :] == -1).expand(length, length)
        mask = causal & (same_block | sees_prefix)
        return PackedBatch(
            input_ids=input_ids,
            position_ids=positions,
            attention_mask=mask[None, None],
            labels=labels,
            image_slice=slice(self.image_start, n_prefix),
            block_width=width,
            visual_index=visual_index,
        )
