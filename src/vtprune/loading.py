"""Loading a model with its processor: the default device and dtype, and where the
weights come from (a Hugging Face id or folder, or the bundled proving-ground model).

Every command that loads a model (``eval``, ``show``, ``demo``, the lmms-eval model)
goes through :func:`load_model`, so they agree on the defaults: the first GPU when
there is one, bfloat16 on it and float32 elsewhere.
"""

from __future__ import annotations

from typing import Any

import torch


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device``, or CUDA when it is available, else the CPU."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def default_dtype(dtype: str | torch.dtype | None, device: str | torch.device) -> torch.dtype | str:
    """``dtype`` (a ``torch.dtype``, its name such as ``"bfloat16"``, or ``"auto"``: the
    checkpoint's own), or bfloat16 on CUDA and float32 elsewhere (CPU kernels are slow
    or missing in half precision)."""
    if dtype is None:
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    value = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"dtype {dtype!r} is not a torch dtype (float32, bfloat16, float16, or auto)")
    return value


def load_model(
    model_id: str | None = None, *, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None
) -> tuple[Any, Any]:
    """``(model, processor)`` from a Hugging Face id or folder, or the bundled
    proving-ground model when ``model_id`` is None; on ``device`` in ``dtype`` (defaults:
    :func:`default_device`, :func:`default_dtype`), in eval mode with SDPA attention, the
    tokenizer padding on the left as batched generation needs.

    Errors are transformers' (``OSError`` for a missing or unreachable checkpoint,
    ``ValueError`` for an architecture it does not know), for callers to word."""
    device = default_device(device)
    dtype = default_dtype(dtype, device)
    if model_id is None:
        # Imported at call time: the proving ground (its checkpoint, its task) is only
        # loaded by those who ask for it.
        from .proving_ground import load

        return load(device=device, dtype=dtype)
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(model_id, dtype=dtype, attn_implementation="sdpa")
    processor = AutoProcessor.from_pretrained(model_id)
    if getattr(processor, "tokenizer", None) is not None:
        processor.tokenizer.padding_side = "left"
    return model.to(device).eval(), processor
