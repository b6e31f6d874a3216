"""Qwen2-VL and Qwen2.5-VL: merged patch grids of any size, M-RoPE positions."""

from .adapter import Qwen2VLAdapter, attention_received

__all__ = ["Qwen2VLAdapter", "attention_received"]
