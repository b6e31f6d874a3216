"""Tiny random-weight models of each supported family, and batches of prompts for them.

Built from configs in code, with no download, through the same model classes as
real checkpoints: vtprune's tests use them, and so can users testing their own code.
Each family's package builds its own (``models/<family>/tiny.py``); this module
gathers them.

A prompt is a list of parts: an ``int`` n is n random text tokens, ``IMAGE`` is one
image (LLaVA: a fixed grid; Qwen2-VL: ``Image(rows, cols)`` in LLM tokens;
LLaVA-NeXT / OneVision: ``Image(size=(height, width))``), ``Video(frames, rows, cols)``
one video (Qwen2-VL, Qwen2.5-VL, Qwen3-VL). Batches are left-padded,
as for generation.
"""

from __future__ import annotations

from .models import registered_families
from .models.family import TestModel
from .models.fake_batch import IMAGE, TEXT_IDS, Image, Part, Video, make_batch
from .models.llava.tiny import tiny_llava
from .models.llava_next.tiny import ANYRES_PINPOINTS, tiny_llava_next, tiny_llava_onevision
from .models.qwen2_vl.tiny import tiny_qwen2_vl
from .models.tiny import DEFAULT_LAYERS, PAD_ID


def test_models() -> tuple[TestModel, ...]:
    """The tiny model of every registered family (and version), in registry order:
    ``name``, ``build(...)``, sample ``images``."""
    return tuple(model for family in registered_families() for model in family.test_models)


test_models.__test__ = False  # type: ignore[attr-defined]  # not a pytest test

__all__ = [
    "ANYRES_PINPOINTS",
    "DEFAULT_LAYERS",
    "IMAGE",
    "PAD_ID",
    "TEXT_IDS",
    "Image",
    "Part",
    "Video",
    "TestModel",
    "make_batch",
    "test_models",
    "tiny_llava",
    "tiny_llava_next",
    "tiny_llava_onevision",
    "tiny_qwen2_vl",
]
