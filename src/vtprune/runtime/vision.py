"""What the vision tower computed, recorded as it runs.

The vision tower may run inside the model's forward (``model(**inputs)``) or before the
prefill (``generate`` encodes the images first). Each call is recorded with whatever
the adapter captures inside the tower (a layer's input, its keys) for the signals a
method declared; the prefill then takes the call that produced its images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class VisionCall:
    """One call of the vision tower.

    info:     what the adapter reads from the call's arguments (image count, grids)
    captures: tensors the adapter's hooks recorded inside the tower during the call
    cache:    signals computed from the captures, per call (shared by all image groups)
    """

    info: Any
    captures: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, torch.Tensor] = field(default_factory=dict)
