"""Qwen3-VL: Qwen2-VL's merged patch grids and image position ids, interleaved M-RoPE
frequencies, per-head q/k norms in the decoder, and DeepStack (features of middle ViT
blocks added to the visual tokens' hidden states after the first decoder layers)."""
