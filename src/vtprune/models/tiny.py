"""What the tiny random-weight models of every family share: the pad id, the decoder
depth, and weights large enough that logits separate."""

from __future__ import annotations

import torch
from torch import nn

PAD_ID = 0
# Decoder layers of the tiny models: deep enough for every method's defaults (in-LLM
# stages after layer 2; PDrop's stages averaging keep=0.222 down).
DEFAULT_LAYERS = 6


def finish(model: nn.Module, seed: int, dtype: torch.dtype, scale: float = 2.0) -> nn.Module:
    """Random matrices of ``scale / sqrt(fan_in)`` (larger than the default init, so
    greedy decoding does not tie), ``dtype``, eval mode, and a generation config that
    generates exactly ``max_new_tokens``."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                param.normal_(0.0, scale / param.shape[-1] ** 0.5)
    model = model.to(dtype).eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = PAD_ID
    return model
