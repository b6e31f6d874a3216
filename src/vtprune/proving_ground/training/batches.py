"""Training and validation batches: scenes rendered on the fly, questions packed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..dataset import scene_questions
from ..render import render
from ..scenes import GRID
from .objective import patch_targets, scene_targets
from .packing import PackedBatch, Packer
from .pixels import pixel_values


@dataclass
class Batch:
    pixel_values: torch.Tensor
    packed: PackedBatch
    scene_targets: torch.Tensor
    patch_targets: torch.Tensor
    focus: torch.Tensor  # (questions, 576) bool: each question's evidence tokens
    families: list[str]  # per question block, in (image, block) order


def make_batch(packer: Packer, split: str, indices: range | list[int]) -> Batch:
    """Scenes ``indices`` of ``split``, each with one question per family it supports."""
    scenes, questions = zip(*(scene_questions(split, i) for i in indices))
    packed = packer.pack([[(qa.question, qa.answer) for qa in per_scene] for per_scene in questions])
    flat = [qa for per_scene in questions for qa in per_scene]
    focus = torch.zeros(len(flat), GRID * GRID, dtype=torch.bool)
    for n, qa in enumerate(flat):
        for box in qa.focus:
            focus[n, box.patches()] = True
    return Batch(
        pixel_values([render(s) for s in scenes]), packed,
        scene_targets(list(scenes)), patch_targets(list(scenes)), focus, [qa.family for qa in flat],
    )
