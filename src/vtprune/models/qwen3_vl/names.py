"""The Qwen3-VL family's names (torch-free; see models/listing.py)."""

from ...signal_names import FAMILY_SIGNALS, VISION_SIGNALS
from ..listing import FamilyNames

QWEN3_VL = FamilyNames(
    "qwen3_vl",
    ("Qwen3VLForConditionalGeneration", "Qwen3VLModel", "Qwen3VLMoeForConditionalGeneration", "Qwen3VLMoeModel"),
    ("qwen3_vl", "qwen3_vl_moe"),
    FAMILY_SIGNALS | VISION_SIGNALS,
    ("qwen3-vl-8b",),
)
FAMILIES = (QWEN3_VL,)
