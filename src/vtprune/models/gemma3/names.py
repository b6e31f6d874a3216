"""The Gemma 3 family's names (torch-free; see models/listing.py)."""

from ...signal_names import FAMILY_SIGNALS, VISION_SIGNALS
from ..listing import FamilyNames

GEMMA3 = FamilyNames(
    "gemma3",
    ("Gemma3ForConditionalGeneration", "Gemma3Model"),
    ("gemma3",),
    FAMILY_SIGNALS | VISION_SIGNALS,
    ("gemma-3-12b", "tiny-gemma3"),
)
FAMILIES = (GEMMA3,)
