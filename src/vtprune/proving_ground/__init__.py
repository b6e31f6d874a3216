"""The proving ground: a small LLaVA trained on synthetic visual QA, bundled offline.

Nobody can judge a pruning method without measuring what it costs in accuracy, and
real checkpoints are large. This package brings a task where which visual tokens are
kept truly matters, and a model that solves it:

* Scenes: 5-9 small coloured shapes and 1-3 glyph tiles on a varied background
  (:mod:`.scenes`, :mod:`.render`), seeded and deterministic.
* Questions in six families, each answered by one word (:mod:`.questions`):
  attribute, existence, counting, relation, reading, global.
* Splits ``train`` / ``validation`` / ``test`` and corrupted test variants
  (``noise``, ``blur``, ``occlusion``): :func:`make_split`.
* The model: ``LlavaForConditionalGeneration`` (CLIP vision tower, 576 visual tokens
  per image, Llama LM) with its ``LlavaProcessor``: :func:`load`. Retrain it with
  ``python -m vtprune.proving_ground.train``.

Accuracy with and without pruning: :mod:`vtprune.eval.proving`.
"""

from .checkpoint import checkpoint_path, load
from .corruptions import CORRUPTIONS
from .dataset import SPLITS, Example, make_example, make_split, scene_questions
from .model import PROMPT, prompt
from .questions import FAMILIES, QA
from .scenes import Box, Scene, SceneObject, Tile

__all__ = [
    "CORRUPTIONS",
    "FAMILIES",
    "PROMPT",
    "QA",
    "SPLITS",
    "Box",
    "Example",
    "Scene",
    "SceneObject",
    "Tile",
    "checkpoint_path",
    "load",
    "make_example",
    "make_split",
    "prompt",
    "scene_questions",
]
