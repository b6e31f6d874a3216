"""The InternVL family's names (torch-free; see models/listing.py)."""

from ...signal_names import FAMILY_SIGNALS, VISION_SIGNALS
from ..listing import FamilyNames

INTERNVL = FamilyNames(
    "internvl",
    ("InternVLForConditionalGeneration", "InternVLModel"),
    ("internvl",),
    FAMILY_SIGNALS | VISION_SIGNALS,
    ("internvl3-8b",),
)
FAMILIES = (INTERNVL,)
