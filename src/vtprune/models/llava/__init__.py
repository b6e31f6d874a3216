"""LLaVA-1.5: a CLIP tower's patch grid, projected, in the prompt's image placeholders."""
