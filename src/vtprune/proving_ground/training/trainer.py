"""The training loop of the proving-ground model.

From scratch, with AdamW, linear warm-up and cosine decay. Scene ``i`` of the train
split is used exactly once (step s reads scenes ``s*batch .. s*batch + batch - 1``),
so the data a run sees is fixed; ``seed`` sets the initial weights.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import LlavaForConditionalGeneration, LlavaProcessor

from ..model import ModelSize, build_model, build_processor
from ..questions import FAMILIES
from .batches import make_batch
from .objective import AuxiliaryHeads, LossWeights, answer_hits, packed_losses
from .packing import Packer


@dataclass
class TrainSettings:
    steps: int = 4000
    batch: int = 16  # images per step; each brings one question per family
    lr: float = 1.5e-3
    warmup: int = 200
    final_lr_ratio: float = 0.05
    weight_decay: float = 0.05
    clip_norm: float = 1.0
    scene_weight: float = 0.5  # weight of the CLS scene loss
    patch_weight: float = 0.5  # weight of the per-token patch loss
    grounding_weight: float = 1.0  # initial weight of the grounding loss (see training.grounding)
    grounding_fade: tuple[float, float] = (0.3, 0.6)  # ...fading linearly to 0 between these shares of the run
    grounding_layer: int = 2
    grounding_head: int = 0
    seed: int = 0
    threads: int = 2
    eval_every: int = 250
    val_images: int = 96
    size: ModelSize = field(default_factory=ModelSize)


def grounding_weight(settings: TrainSettings, step: int) -> float:
    start, end = (share * settings.steps for share in settings.grounding_fade)
    if step <= start:
        return settings.grounding_weight
    return settings.grounding_weight * max(0.0, 1.0 - (step - start) / max(1.0, end - start))


def learning_rate(settings: TrainSettings, step: int) -> float:
    if step < settings.warmup:
        return settings.lr * (step + 1) / settings.warmup
    progress = (step - settings.warmup) / max(1, settings.steps - settings.warmup)
    floor = settings.final_lr_ratio
    return settings.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def validate(model: LlavaForConditionalGeneration, packer: Packer, images: int, batch: int = 16) -> dict[str, float]:
    """Answer-word accuracy per family on validation scenes (one forward, no generation)."""
    model.eval()
    hits: dict[str, list[bool]] = defaultdict(list)
    for start in range(0, images, batch):
        b = make_batch(packer, "validation", range(start, min(images, start + batch)))
        for family, hit in zip(b.families, answer_hits(model, b.pixel_values, b.packed).tolist()):
            hits[family].append(hit)
    model.train()
    result = {f: sum(hits[f]) / len(hits[f]) for f in FAMILIES if hits[f]}
    result["overall"] = sum(sum(h) for h in hits.values()) / sum(len(h) for h in hits.values())
    return result


def train(settings: TrainSettings) -> tuple[LlavaForConditionalGeneration, LlavaProcessor, dict]:
    """Train a model; returns it (float32), its processor, and a record of the run."""
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    processor = build_processor()
    model = build_model(settings.size, processor)
    heads = AuxiliaryHeads(model.config.vision_config.hidden_size)
    packer = Packer(processor.tokenizer)

    decay, no_decay = [], []
    for module in (model, heads):
        for name, param in module.named_parameters():
            (decay if param.dim() >= 2 and "embed" not in name else no_decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.lr, betas=(0.9, 0.98),
    )

    history: list[dict] = []
    model.train()
    start = time.perf_counter()
    bar = tqdm(range(settings.steps), desc="training", unit="step", dynamic_ncols=True)
    running = None
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(settings, step)
        batch = make_batch(packer, "train", range(step * settings.batch, (step + 1) * settings.batch))
        weights = LossWeights(
            settings.scene_weight, settings.patch_weight, grounding_weight(settings, step),
            settings.grounding_layer, settings.grounding_head,
        )
        losses = packed_losses(
            model, heads, batch.pixel_values, batch.packed, batch.scene_targets, batch.patch_targets,
            batch.focus, weights,
        )
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(heads.parameters()), settings.clip_norm)
        optimizer.step()

        current = (losses.answer.item(), losses.scene.item(), losses.patch.item(), losses.grounding.item(),
                   losses.answer_accuracy)
        running = current if running is None else tuple(0.95 * r + 0.05 * c for r, c in zip(running, current))
        bar.set_postfix(loss=f"{running[0]:.3f}", scene=f"{running[1]:.3f}", patch=f"{running[2]:.3f}",
                        ground=f"{running[3]:.2f}", acc=f"{running[4]:.2f}")
        last = step + 1 == settings.steps
        if (step + 1) % settings.eval_every == 0 or last:
            accuracy = validate(model, packer, settings.val_images)
            elapsed = time.perf_counter() - start
            history.append({"step": step + 1, "seconds": round(elapsed, 1), "validation": accuracy,
                            "train_loss": round(running[0], 4)})
            tqdm.write(f"step {step + 1} ({elapsed / 60:.1f} min): " + " ".join(f"{k} {v:.2f}" for k, v in accuracy.items()))

    model.eval()
    record = {
        "settings": {**asdict(settings), "size": settings.size.to_dict()},
        "wall_seconds": round(time.perf_counter() - start, 1),
        "torch_threads": settings.threads,
        "torch_version": torch.__version__,
        "history": history,
    }
    return model, processor, record


def save_checkpoint(model: LlavaForConditionalGeneration, processor: LlavaProcessor, record: dict, path: Path) -> None:
    """Weights in float16 safetensors, the processor, and the training record."""
    path.mkdir(parents=True, exist_ok=True)
    model.to(torch.float16).save_pretrained(path, safe_serialization=True)
    model.to(torch.float32)
    processor.save_pretrained(path)
    (path / "training.json").write_text(json.dumps(record, indent=2) + "\n")
