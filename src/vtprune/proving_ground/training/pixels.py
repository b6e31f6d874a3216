"""Pixel values for training without the processor's per-image overhead.

Scene images already have the model's input size, so the processor's resize and
centre crop leave them unchanged and what remains is rescale + normalise, done here
in one vectorised step (a test checks it matches the processor).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..model import IMAGE_MEAN, IMAGE_STD

_MEAN = np.array(IMAGE_MEAN, dtype=np.float32)[:, None, None]
_STD = np.array(IMAGE_STD, dtype=np.float32)[:, None, None]


def pixel_values(images: Sequence[Image.Image]) -> torch.Tensor:
    """(N, 3, H, W) float32, CLIP-normalised, as ``CLIPImageProcessor`` gives for these images."""
    stack = np.stack([np.asarray(image.convert("RGB"), dtype=np.float32) for image in images])
    stack = stack.transpose(0, 3, 1, 2) / np.float32(255.0)
    return torch.from_numpy((stack - _MEAN) / _STD)
