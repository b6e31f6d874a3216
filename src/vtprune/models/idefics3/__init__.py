"""Idefics3 and SmolVLM: an image split into square sub-images plus a global image, each
encoded alone by a SigLIP-like tower, pixel-shuffled and projected, between text markers."""
