"""The LLaVA-NeXT and LLaVA-OneVision families' names (torch-free; see models/listing.py)."""

from ...signal_names import FAMILY_SIGNALS, VISION_SIGNALS
from ..listing import FamilyNames

NEXT = FamilyNames(
    "llava_next", ("LlavaNextForConditionalGeneration", "LlavaNextModel"), ("llava_next",),
    FAMILY_SIGNALS | VISION_SIGNALS,
)  # fmt: skip
ONEVISION = FamilyNames(
    "llava_onevision", ("LlavaOnevisionForConditionalGeneration", "LlavaOnevisionModel"), ("llava_onevision",),
    FAMILY_SIGNALS | VISION_SIGNALS,
)  # fmt: skip
FAMILIES = (NEXT, ONEVISION)
