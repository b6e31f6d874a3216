"""The Qwen2-VL family's names, Qwen2.5-VL included (torch-free; see models/listing.py)."""

from ...signal_names import FAMILY_SIGNALS, VISION_SIGNALS
from ..listing import FamilyNames

QWEN2_VL = FamilyNames(
    "qwen2_vl",
    ("Qwen2VLForConditionalGeneration", "Qwen2VLModel", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLModel"),
    ("qwen2_vl", "qwen2_5_vl"),
    FAMILY_SIGNALS | VISION_SIGNALS,
    ("qwen2.5-vl-7b", "tiny-qwen2.5-vl"),
)
FAMILIES = (QWEN2_VL,)
