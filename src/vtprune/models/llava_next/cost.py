"""LLaVA-NeXT / OneVision's vision cost: every tile goes through the tower alone."""

from __future__ import annotations

from ..llava.cost import clip_tower_macs

# A tile is one image to the tower and the projector, as in LLaVA-1.5 (counted with a
# CLS token, also for SigLIP towers, to keep one formula for the LLaVA line).
vision_macs = clip_tower_macs
