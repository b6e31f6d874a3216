"""Training and validation batches: scenes rendered on the fly, questions packed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..dataset import planned_scene, scene_questions
from ..questions import QA, question_words
from ..render import render
from ..scenes import GRID
from .curriculum import choose_visual_tokens
from .objective import patch_targets, scene_targets
from .packing import PackedBatch, Packer
from .pixels import pixel_values


@dataclass
class Batch:
    pixel_values: torch.Tensor
    packed: PackedBatch
    scene_targets: torch.Tensor
    patch_targets: torch.Tensor
    anchors: "Anchors"  # question words that name objects, and those objects' tokens
    families: list[str]  # per question block, in (image, block) order


@dataclass
class VisionBatch:
    pixel_values: torch.Tensor
    scene_targets: torch.Tensor
    patch_targets: torch.Tensor


def make_vision_batch(indices: range | list[int]) -> VisionBatch:
    """Train scenes ``indices`` with their scene and patch labels (no questions)."""
    scenes = [planned_scene("train", i)[0] for i in indices]
    return VisionBatch(pixel_values([render(s) for s in scenes]), scene_targets(scenes), patch_targets(scenes))


def make_batch(
    packer: Packer,
    split: str,
    indices: range | list[int],
    per_family: int = 1,
    visual_tokens: int = GRID * GRID,
    generator: torch.Generator | None = None,
) -> Batch:
    """Scenes ``indices`` of ``split``, each with up to ``per_family`` questions per family,
    and ``visual_tokens`` of its visual tokens (see ``training.curriculum``)."""
    scenes, questions = zip(*(scene_questions(split, i, per_family) for i in indices))
    patches = patch_targets(list(scenes))
    visual_index = choose_visual_tokens(patches, visual_tokens, generator or torch.Generator())
    packed = packer.pack([[(qa.question, qa.answer) for qa in per_scene] for per_scene in questions], visual_index)
    return Batch(
        pixel_values([render(s) for s in scenes]), packed,
        scene_targets(list(scenes)), patches, anchors(packed, questions),
        [qa.family for per_scene in questions for qa in per_scene],
    )


@dataclass
class Anchors:
    """Positions of anchor words in a packed batch, and the visual tokens each names;
    and for each question with anchors, its answer position and its anchor words."""

    rows: torch.Tensor  # (n,) image of the batch
    cols: torch.Tensor  # (n,) position of the word in the sequence
    focus: torch.Tensor  # (n, visual tokens in the sequence) bool
    answer_rows: torch.Tensor  # (m,) image of the batch
    answer_cols: torch.Tensor  # (m,) position of the token that predicts the answer
    first_word: torch.Tensor  # (m,) position of that question's first anchor word
    last_word: torch.Tensor  # (m,) ...and of its last (the same word when it has one)


def anchors(packed: PackedBatch, questions: Sequence[Sequence[QA]]) -> Anchors:
    rows, cols, masks = [], [], []
    answer_rows, answer_cols, first_word, last_word = [], [], [], []
    for b, per_scene in enumerate(questions):
        for j, qa in enumerate(per_scene):
            start = packed.image_slice.stop + j * packed.block_width
            if qa.anchors:
                # The block is the question's words, "ASSISTANT", ":" and the answer.
                answer_rows.append(b)
                answer_cols.append(start + len(question_words(qa.question)) + 1)
                first_word.append(start + qa.anchors[0][0])
                last_word.append(start + qa.anchors[-1][0])
            for word, boxes in qa.anchors:
                mask = torch.zeros(GRID * GRID, dtype=torch.bool)
                for box in boxes:
                    mask[box.patches()] = True
                rows.append(b)
                cols.append(start + word)
                masks.append(mask)
    if not masks:
        empty = torch.zeros(0, dtype=torch.long)
        return Anchors(empty, empty, torch.zeros(0, GRID * GRID, dtype=torch.bool), empty, empty, empty, empty)
    rows_t, focus = torch.tensor(rows), torch.stack(masks)
    if packed.visual_index is not None:  # only some visual tokens are in the sequence
        focus = focus.gather(1, packed.visual_index[rows_t])
    return Anchors(rows_t, torch.tensor(cols), focus, torch.tensor(answer_rows), torch.tensor(answer_cols),
                   torch.tensor(first_word), torch.tensor(last_word))
