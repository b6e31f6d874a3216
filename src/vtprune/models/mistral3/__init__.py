"""Mistral 3 (Mistral Small 3.1 / 3.2): Pixtral patch grids of any size with 2-D RoPE,
merged 2x2, each grid row of image tokens closed by a text break token."""
