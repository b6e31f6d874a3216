"""The Idefics3 and SmolVLM families' names (torch-free; see models/listing.py).

SmolVLM (v1, ``HuggingFaceTB/SmolVLM-Instruct``) was published with Idefics3's classes
(``model_type`` "idefics3"), so its real-scale architecture is Idefics3's; SmolVLM2 has
its own classes, which share Idefics3's structure."""

from ...signal_names import FAMILY_SIGNALS, VISION_SIGNALS
from ..listing import FamilyNames

IDEFICS3 = FamilyNames(
    "idefics3", ("Idefics3ForConditionalGeneration", "Idefics3Model"), ("idefics3",),
    FAMILY_SIGNALS | VISION_SIGNALS, ("smolvlm-2b",),
)  # fmt: skip
SMOLVLM = FamilyNames(
    "smolvlm", ("SmolVLMForConditionalGeneration", "SmolVLMModel"), ("smolvlm",),
    FAMILY_SIGNALS | VISION_SIGNALS,
)  # fmt: skip
FAMILIES = (IDEFICS3, SMOLVLM)
