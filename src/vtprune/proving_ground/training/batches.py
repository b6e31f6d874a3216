"""Training and validation batches: scenes rendered on the fly, questions packed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..dataset import planned_scene, scene_questions
from ..questions import QA, question_words
from ..render import render
from ..scenes import GRID, Box
from .curriculum import choose_visual_tokens
from .locating import box_centre
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
    """Where the grounding losses act in a packed batch (see ``training.grounding``).

    look: each anchor word that names something, and the visual tokens it names;
    read: each question with anchors, its answer position and its anchor words;
    count: each counting question's counted word, and the keys its count head shares
    evenly (``<s>`` and the middle token of each counted object);
    where / offset: the targets of the locating losses (``training.locating``).
    """

    rows: torch.Tensor  # (n,) image of the batch
    cols: torch.Tensor  # (n,) position of the word in the sequence
    focus: torch.Tensor  # (n, visual tokens in the sequence) bool
    answer_rows: torch.Tensor  # (m,) image of the batch
    answer_cols: torch.Tensor  # (m,) position of the token that predicts the answer
    first_word: torch.Tensor  # (m,) position of that question's first anchor word
    last_word: torch.Tensor  # (m,) ...and of its last (the same word when it has one)
    count_rows: torch.Tensor  # (c,) image of the batch
    count_cols: torch.Tensor  # (c,) position of the counted word
    count_targets: torch.Tensor  # (c, sequence length) bool
    where_rows: torch.Tensor  # (w,) image of the batch
    where_cols: torch.Tensor  # (w,) an anchor word that names one object...
    where_xy: torch.Tensor  # (w, 2) ...and that object's centre (see training.locating)
    offset_rows: torch.Tensor  # (r,) image of the batch
    offset_cols: torch.Tensor  # (r,) the token that predicts a relation answer...
    offset_xy: torch.Tensor  # (r, 2) ...and the first object's centre minus the second's


def _long(values: list[int]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


def _points(values: list[tuple[float, float]]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(len(values), 2)


def _patch_mask(boxes: Sequence[Box], middles_only: bool = False) -> torch.Tensor:
    """(576,) bool: the patches of ``boxes``, or only each box's middle patch."""
    mask = torch.zeros(GRID * GRID, dtype=torch.bool)
    for box in boxes:
        mask[[box.middle_patch()] if middles_only else box.patches()] = True
    return mask


def anchors(packed: PackedBatch, questions: Sequence[Sequence[QA]]) -> Anchors:
    rows, cols, masks = [], [], []
    answer_rows, answer_cols, first_word, last_word = [], [], [], []
    count_rows, count_cols, middles = [], [], []
    where_rows, where_cols, where_xy, offset_rows, offset_cols, offset_xy = [], [], [], [], [], []
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
                if boxes:  # a zero count names nothing to look at
                    rows.append(b)
                    cols.append(start + word)
                    masks.append(_patch_mask(boxes))
                if len(boxes) == 1:
                    where_rows.append(b)
                    where_cols.append(start + word)
                    where_xy.append(box_centre(boxes[0]))
            if qa.family == "relation":
                (_, (first,)), (_, (second,)) = qa.anchors
                offset_rows.append(b)
                offset_cols.append(answer_cols[-1])
                offset_xy.append(tuple(p - q for p, q in zip(box_centre(first), box_centre(second))))
            if qa.family == "counting":
                word, boxes = qa.anchors[0]
                count_rows.append(b)
                count_cols.append(start + word)
                middles.append(_patch_mask(boxes, middles_only=True))

    def visible(row_list: list[int], mask_list: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, masks over the visual tokens present in the sequence)."""
        width = packed.image_slice.stop - packed.image_slice.start
        if not mask_list:
            return _long([]), torch.zeros(0, width, dtype=torch.bool)
        index, stacked = _long(row_list), torch.stack(mask_list)
        if packed.visual_index is not None:  # only some visual tokens are in the sequence
            stacked = stacked.gather(1, packed.visual_index[index])
        return index, stacked

    rows_t, focus = visible(rows, masks)
    count_rows_t, on_image = visible(count_rows, middles)
    count_targets = torch.zeros(len(count_rows), packed.input_ids.shape[1], dtype=torch.bool)
    count_targets[:, 0] = True  # <s>
    count_targets[:, packed.image_slice] = on_image
    return Anchors(rows_t, _long(cols), focus, _long(answer_rows), _long(answer_cols), _long(first_word),
                   _long(last_word), count_rows_t, _long(count_cols), count_targets,
                   _long(where_rows), _long(where_cols), _points(where_xy),
                   _long(offset_rows), _long(offset_cols), _points(offset_xy))
