"""Seeded splits of the synthetic visual-QA task.

Example ``i`` of a split is a pure function of (split, i): ``make_split("test", 600)``
starts with the 300 examples of ``make_split("test", 300)``, and ``seed_offset``
selects a later window of the same stream. Families take turns (example ``i`` asks
family ``FAMILIES[i % 6]``), so any window of 6k examples has k of each, and each
family's answers are uniform over its answer words (exactly so, in turn, for the
families with at most five answers: half of all existence answers are "no").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .corruptions import CORRUPTIONS, corrupt
from .questions import CANDIDATES, FAMILIES, PLANNERS, QA, balanced_choice
from .render import render
from .scenes import Box, Scene, sample_scene

SPLITS: dict[str, int] = {"train": 0, "validation": 1, "test": 2}
# Further random streams per example, so that corrupting an image or asking it more
# questions never shifts the scene.
_CORRUPTION_STREAM, _QUESTIONS_STREAM = 1, 2


@dataclass(frozen=True)
class Example:
    """One visual question: the image, the question, its one-word answer.

    ``scene`` describes every object and tile with its box; ``focus`` holds the boxes
    the question is about (see :class:`~.questions.QA`).
    """

    image: Image.Image
    question: str
    answer: str
    family: str
    scene: Scene
    focus: tuple[Box, ...]
    split: str
    index: int
    corruption: str | None = None


def _rng(split: str, index: int, stream: int = 0) -> np.random.Generator:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}; got {split!r}")
    if index < 0:
        raise ValueError(f"example index must be >= 0; got {index}")
    return np.random.default_rng([SPLITS[split], index, stream])


def planned_scene(split: str, index: int) -> tuple[Scene, QA]:
    """The scene and the balanced question of example ``index`` of ``split``."""
    rng = _rng(split, index)
    family = FAMILIES[index % len(FAMILIES)]
    plan, ask = PLANNERS[family](rng, index // len(FAMILIES))
    scene = sample_scene(rng, plan)
    return scene, ask(scene)


def make_example(split: str, index: int, corruption: str | None = None) -> Example:
    """Example ``index`` of ``split``, optionally corrupted (the answer never changes)."""
    if corruption is not None and corruption not in CORRUPTIONS:
        raise ValueError(f"corruption must be one of {CORRUPTIONS} or None; got {corruption!r}")
    scene, qa = planned_scene(split, index)
    image = render(scene)
    if corruption is not None:
        image = corrupt(image, corruption, _rng(split, index, _CORRUPTION_STREAM), qa.focus)
    return Example(image, qa.question, qa.answer, qa.family, scene, qa.focus, split, index, corruption)


def make_split(split: str, size: int, seed_offset: int = 0, corruption: str | None = None) -> list[Example]:
    """Examples ``seed_offset`` .. ``seed_offset + size - 1`` of ``split``.

    split:      "train", "validation" or "test" (disjoint random streams).
    size:       number of examples; families take turns, so a multiple of 6 is balanced.
    corruption: None, or "noise", "blur", "occlusion" for a corrupted copy of the
                same examples (same scenes, questions and answers).
    """
    if size < 0 or seed_offset < 0:
        raise ValueError(f"size and seed_offset must be >= 0; got {size}, {seed_offset}")
    return [make_example(split, seed_offset + i, corruption) for i in range(size)]


def scene_questions(split: str, index: int, per_family: int = 1) -> tuple[Scene, list[QA]]:
    """Scene ``index`` of ``split`` with up to ``per_family`` questions of every family.

    The planned question (that of :func:`make_example`) comes first; the others are
    distinct questions drawn from what the scene supports, answer first, so they are
    roughly balanced too. Training asks all of them of one image (see
    ``training.packing``).
    """
    scene, planned = planned_scene(split, index)
    rng = _rng(split, index, _QUESTIONS_STREAM)
    questions = [planned]
    for family in FAMILIES:
        options = [qa for qa in CANDIDATES[family](scene) if qa.question != planned.question]
        wanted = per_family - 1 if family == planned.family else per_family
        for _ in range(wanted):
            qa = balanced_choice(rng, options)
            if qa is None:
                break
            questions.append(qa)
            options.remove(qa)
    return scene, questions
