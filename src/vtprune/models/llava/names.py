"""The LLaVA family's names (torch-free; see models/listing.py)."""

from ...signal_names import FAMILY_SIGNALS, VISION_SIGNALS
from ..listing import FamilyNames

LLAVA = FamilyNames(
    "llava",
    ("LlavaForConditionalGeneration", "LlavaModel"),
    ("llava",),
    FAMILY_SIGNALS | VISION_SIGNALS | {"clip_relevance"},  # a CLIP tower: relevance in CLIP space
    ("llava-1.5-7b", "tiny-llava"),
)
FAMILIES = (LLAVA,)
