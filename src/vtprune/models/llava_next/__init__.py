"""LLaVA-NeXT and LLaVA-OneVision: a base grid plus anyres tiles per image, with row ends."""
