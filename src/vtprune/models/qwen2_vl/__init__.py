"""Qwen2-VL and Qwen2.5-VL: merged patch grids of any size, M-RoPE positions."""
