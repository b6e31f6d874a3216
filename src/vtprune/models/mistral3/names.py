"""The Mistral 3 family's names (torch-free; see models/listing.py)."""

from ...signal_names import FAMILY_SIGNALS, VISION_SIGNALS
from ..listing import FamilyNames

MISTRAL3 = FamilyNames(
    "mistral3",
    ("Mistral3ForConditionalGeneration", "Mistral3Model"),
    ("mistral3",),
    FAMILY_SIGNALS | VISION_SIGNALS,
    ("mistral-small-3.1-24b", "tiny-mistral3"),
)
FAMILIES = (MISTRAL3,)
