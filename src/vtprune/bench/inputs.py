"""Models and prompt batches to benchmark: real checkpoints, real-scale random-weight
architectures, or the bundled proving-ground model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..models import family_of
from ..models.fake_batch import make_batch
from .architectures import build


@dataclass
class Target:
    """A model with the batch to run it on."""

    name: str
    model: nn.Module
    batch: dict[str, torch.Tensor]


def synthetic_batch(model: nn.Module, batch_size: int, text_tokens: int, grid: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Random-token prompts with one image each: a third of the text before the image,
    the rest after it (the question). ``grid`` sets the image's token grid where the
    family's images vary in size."""
    image = family_of(model).fake_inputs.bench_image(model, grid)
    before = max(1, text_tokens // 3)
    return make_batch(model, [[before, image, max(1, text_tokens - before)]] * batch_size, seeds=range(batch_size))


def processor_batch(processor: Any, images: list, questions: list[str]) -> dict[str, torch.Tensor]:
    """Real inputs through a model's own processor, left-padded for generation."""
    processor.tokenizer.padding_side = "left"
    if getattr(processor, "chat_template", None):
        texts = [
            processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}],
                add_generation_prompt=True,
            )
            for q in questions
        ]
    else:
        texts = [f"USER: <image>\n{q} ASSISTANT:" for q in questions]
    return dict(processor(images=images, text=texts, padding=True, return_tensors="pt"))


def load_target(
    *,
    model_id: str | None,
    arch: str | None,
    layers: int | None,
    batch_size: int,
    text_tokens: int,
    grid: tuple[int, int],
    dtype: torch.dtype,
    device: torch.device,
) -> Target:
    """The benchmark target: ``arch`` (random weights), ``model_id`` (a checkpoint with its
    processor), or, with neither, the bundled proving-ground model."""
    if arch is not None:
        model = build(arch, layers=layers, dtype=dtype, device=str(device))
        batch = synthetic_batch(model, batch_size, text_tokens, grid)
        name = arch + (f" ({layers} layers)" if layers else "")
    else:
        from ..loading import load_model

        model, processor = load_model(model_id, device=device, dtype=dtype)
        images, questions = _scenes(batch_size)
        batch = processor_batch(processor, images, questions)
        name = model_id if model_id is not None else "proving ground"
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    if "pixel_values" in batch:
        batch["pixel_values"] = batch["pixel_values"].to(dtype)
    return Target(name, model, batch)


def _scenes(count: int) -> tuple[list, list[str]]:
    """Images and questions from the proving ground's test split (offline, deterministic)."""
    from ..proving_ground import make_split

    examples = make_split("test", count)
    return [e.image for e in examples], [e.question for e in examples]
