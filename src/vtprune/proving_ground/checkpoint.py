"""The bundled checkpoint and how to load it."""

from __future__ import annotations

from pathlib import Path

import torch


def checkpoint_path() -> Path:
    """The folder of the bundled checkpoint (weights, config, processor, training record)."""
    return Path(__file__).resolve().parent / "checkpoint"


def load(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, path: str | Path | None = None):
    """``(model, processor)`` of the bundled proving-ground model (or the one at ``path``).

    Loaded through ``LlavaForConditionalGeneration.from_pretrained`` and
    ``AutoProcessor.from_pretrained``, the code path of any real LLaVA checkpoint. The
    weights are stored in float16 and cast to ``dtype``; the model is in eval mode with
    SDPA attention, and the tokenizer pads on the left, as batched generation needs.
    """
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    folder = Path(path) if path is not None else checkpoint_path()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"no checkpoint at {folder}; train one with `python -m vtprune.proving_ground.train --output {folder}`"
        )
    model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa")
    model = model.to(device).eval()
    processor = AutoProcessor.from_pretrained(folder)
    processor.tokenizer.padding_side = "left"
    return model, processor
