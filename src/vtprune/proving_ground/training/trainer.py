"""The training loop of the proving-ground model, in two stages.

1. Vision: the vision tower alone learns what is in each patch, where it is, and
   what is in the image (the patch, position and scene losses of :mod:`.objective`),
   as LLaVA starts from a pretrained CLIP. Without it, shapes are recognised too
   slowly for the language model to learn anything but answer priors within a CPU
   budget.
2. LLaVA: the projector and the language model learn to answer, with the grounding
   losses (:mod:`.grounding`) on and the vision tower frozen (``freeze_vision``).

A run can instead go on from a trained checkpoint (``init_from``), deepened first if
asked (``grow_front``, :mod:`.growth`); stage 1 is then skipped.

Both stages use AdamW with linear warm-up and cosine decay. Stage 2 step s reads
train scenes ``s*batch .. s*batch + batch - 1``; stage 1 reads scenes from
``VISION_SCENES_START`` on, so no scene is seen twice. The data a run sees is fixed;
``seed`` sets the initial weights.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable, Iterator

import torch
from tqdm.auto import tqdm
from transformers import LlavaForConditionalGeneration, LlavaProcessor

from ..model import ModelSize, build_model, build_processor, model_size_of
from ..questions import FAMILIES
from .batches import make_batch
from .curriculum import visible_tokens
from .growth import grow_front
from .objective import AuxiliaryHeads, LossWeights, answer_hits, packed_losses, vision_losses
from .packing import Packer
from .positions import start_with_grid_positions
from .prefetch import QuestionJob, VisionJob, prefetched

VISION_SCENES_START = 10_000_000


def _setting(default, text: str):
    """A settings field with its help text (and so on the command line)."""
    kind = dict(default_factory=lambda: default) if isinstance(default, tuple) else dict(default=default)
    return field(**kind, metadata={"help": text})


def setting_help(name: str) -> str:
    """The help text of the setting ``name``."""
    known = {f.name: f for f in fields(TrainSettings)}
    if name not in known:
        raise ValueError(f"name: no setting {name!r}; known: {sorted(known)}")
    return known[name].metadata.get("help", "the model's widths and depths")


@dataclass
class TrainSettings:
    """Every setting of a run, each with its help text (``help(name)``; the command line
    of ``python -m vtprune.proving_ground.train`` is built from them)."""

    vision_steps: int = _setting(600, "stage 1 steps: the vision tower alone")
    vision_batch: int = _setting(16, "images per stage 1 step")
    vision_lr: float = _setting(3e-3, "stage 1 peak learning rate")
    steps: int = _setting(7000, "stage 2 steps: the whole model")
    batch: int = _setting(16, "images per stage 2 step")
    questions_per_family: int = _setting(2, "questions asked of each image per family in stage 2")
    lr: float = _setting(2e-3, "stage 2 peak learning rate")
    warmup: int = _setting(100, "warm-up steps of each stage")
    final_lr_ratio: float = _setting(0.05, "learning rate at the end of each stage, as a share of its peak")
    weight_decay: float = _setting(0.05, "AdamW weight decay of the matrices")
    clip_norm: float = _setting(1.0, "gradient norm clip")
    scene_weight: float = _setting(0.5, "weight of the CLS scene loss")
    patch_weight: float = _setting(0.5, "weight of the per-token patch loss")
    position_weight: float = _setting(1.0, "stage 1 weight of the object-token position loss (0: off)")
    context_weight: float = _setting(
        0.0, "weight of the context loss: every visual token also names the scene's contents (0: off; "
        "see training.objective)")
    position_norm: float = _setting(
        2.0, "length of the 2-D sin/cos start of the position embeddings (0: random start; see training.positions)")
    subset_tokens: int = _setting(112, "visual tokens per image at the start of stage 2 (see training.curriculum)")
    subset_hold: int = _setting(6300, "stage 2 steps on that subset")
    subset_ramp: int = _setting(700, "stage 2 steps over which the subset grows to all 576 tokens")
    grounding_weight: float = _setting(1.0, "weight of the grounding terms in stage 2 (0: the control run without them)")
    grounding_terms: tuple[str, ...] = _setting(
        ("look", "count", "bind", "read", "locate"), "grounding terms used, by name (see training.hops)")
    bind_layer: int = _setting(0, "decoder layer of the bind hop (colour word onto its noun)")
    look_layer: int = _setting(1, "decoder layer of the look and count hops (the noun's attention on its object)")
    read_layer: int = _setting(2, "decoder layer of the read hop (the answer position's attention on the nouns)")
    vision_from: str = _setting(
        "", "checkpoint folder whose vision tower stage 2 starts from, stage 1 skipped ('bundled': the bundled "
        "checkpoint's, same vision size; '': stage 1 trains one)")
    init_from: str = _setting(
        "", "checkpoint folder the whole model starts from, stage 1 skipped ('bundled': the bundled checkpoint; "
        "its sizes replace --size; '': a new model)")
    grow_front: int = _setting(
        0, "identity copies of a trained decoder layer put in front of the language model before stage 2 "
        "(see training.growth; 0: none)")
    grow_source: int = _setting(0, "the decoder layer those copies are made of")
    freeze_vision: bool = _setting(
        True, "stage 2 keeps the stage 1 vision tower frozen (without its backward pass a step costs half)")
    seed: int = _setting(0, "initialisation seed")
    threads: int = _setting(2, "torch CPU threads")
    eval_every: int = _setting(500, "stage 2 steps between validation passes")
    val_images: int = _setting(96, "validation scenes per pass")
    size: ModelSize = field(default_factory=ModelSize)


def _question_jobs(settings: TrainSettings, steps: Iterable[int]) -> Iterator[QuestionJob]:
    """The stage 2 batch of each step: train scenes ``step * batch`` on, with the number
    of visual tokens the curriculum gives that step."""
    for step in steps:
        tokens = visible_tokens(step, settings.subset_tokens, settings.subset_hold, settings.subset_ramp)
        yield QuestionJob("train", step * settings.batch, settings.batch, settings.questions_per_family, tokens,
                          seed=settings.seed * 1_000_003 + step)


def _loss_weights(settings: TrainSettings, step: int) -> LossWeights:
    """The loss weights at stage 2 step ``step``; stage 1 uses their tower part."""
    return LossWeights(
        scene=settings.scene_weight, patch=settings.patch_weight, position=settings.position_weight,
        context=settings.context_weight,
        grounding=settings.grounding_weight, vision=not settings.freeze_vision, terms=settings.grounding_terms,
        bind_layer=settings.bind_layer, look_layer=settings.look_layer, read_layer=settings.read_layer,
    )


def cosine_schedule(peak: float, step: int, steps: int, warmup: int, floor: float) -> float:
    """Linear warm-up to ``peak``, then cosine decay to ``floor * peak`` at ``steps``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def _optimizer(modules: list[torch.nn.Module], settings: TrainSettings) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for module in modules:
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            (decay if param.dim() >= 2 and "embed" not in name else no_decay).append(param)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.lr, betas=(0.9, 0.98),
    )


def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, lr: float, clip_norm: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    torch.nn.utils.clip_grad_norm_(params, clip_norm)
    optimizer.step()


class _Running:
    """Exponential moving averages of the numbers the progress bar shows."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def update(self, **values: float) -> dict[str, str]:
        for k, v in values.items():
            self.values[k] = v if k not in self.values else 0.95 * self.values[k] + 0.05 * v
        return {k: f"{v:.3f}" for k, v in self.values.items()}


@torch.no_grad()
def validation_accuracy(
    model: LlavaForConditionalGeneration, packer: Packer, images: int, visual_tokens: int = 576, batch: int = 16
) -> dict[str, float]:
    """Answer-word accuracy per family on validation scenes (one forward, no generation),
    seeing ``visual_tokens`` tokens per image as training does at this point."""
    model.eval()
    hits: dict[str, list[bool]] = defaultdict(list)
    generator = torch.Generator().manual_seed(0)
    for start in range(0, images, batch):
        b = make_batch(packer, "validation", range(start, min(images, start + batch)), 1, visual_tokens, generator)
        for family, hit in zip(b.families, answer_hits(model, b.pixel_values, b.packed).tolist()):
            hits[family].append(hit)
    model.train()
    result = {f: sum(hits[f]) / len(hits[f]) for f in FAMILIES if hits[f]}
    result["overall"] = sum(sum(h) for h in hits.values()) / sum(len(h) for h in hits.values())
    return result


def _train_vision(model: LlavaForConditionalGeneration, heads: AuxiliaryHeads, settings: TrainSettings) -> None:
    tower = model.model.vision_tower
    optimizer = _optimizer([tower, heads], settings)
    running = _Running()
    bar = tqdm(total=settings.vision_steps, desc="stage 1: vision", unit="step", dynamic_ncols=True)
    jobs = (VisionJob(VISION_SCENES_START + step * settings.vision_batch, settings.vision_batch)
            for step in range(settings.vision_steps))
    for step, batch in enumerate(prefetched(jobs)):
        losses = vision_losses(model, heads, batch.pixel_values, batch.scene_targets, batch.patch_targets)
        lr = cosine_schedule(settings.vision_lr, step, settings.vision_steps, settings.warmup, settings.final_lr_ratio)
        _step(optimizer, _loss_weights(settings, step).tower_total(losses), lr, settings.clip_norm)
        bar.update()
        bar.set_postfix(running.update(scene=losses.scene.item(), patch=losses.patch.item(),
                                       position=losses.position.item()))
    bar.close()


def _load_trained(source: str) -> LlavaForConditionalGeneration:
    """The float32 model of the checkpoint at ``source`` ('bundled': the bundled one)."""
    from ..checkpoint import checkpoint_path, load

    return load(path=checkpoint_path() if source == "bundled" else Path(source))[0]


def _load_vision_tower(model: LlavaForConditionalGeneration, source: str) -> None:
    """Copy the vision tower of the checkpoint at ``source`` ('bundled': the bundled one)
    into ``model``; the towers must have the same widths and depths."""
    trained = _load_trained(source)
    try:
        model.model.vision_tower.load_state_dict(trained.model.vision_tower.state_dict())
    except RuntimeError as error:
        raise ValueError(f"vision_from: the vision tower at {source} does not fit this model's size ({error})") from None


def check_settings(settings: TrainSettings) -> None:
    """Settings that cannot go together, refused before any model is built or loaded."""
    if settings.init_from and settings.vision_from:
        raise ValueError("init_from and vision_from: give one; init_from already brings its vision tower")
    if settings.init_from and settings.size != ModelSize():
        raise ValueError("size: a model started from init_from has that checkpoint's sizes; leave size out")
    if settings.grow_front < 0:
        raise ValueError(f"grow_front: expected a number of layers >= 0; got {settings.grow_front}")
    if settings.grow_source < 0:
        raise ValueError(f"grow_source: expected a decoder layer >= 0; got {settings.grow_source}")


def train(settings: TrainSettings) -> tuple[LlavaForConditionalGeneration, LlavaProcessor, dict]:
    """Train a model; returns it (float32), its processor, and a record of the run."""
    check_settings(settings)
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    processor = build_processor()
    if settings.init_from:
        model = _load_trained(settings.init_from)
    else:
        model = build_model(settings.size, processor)
        if settings.position_norm > 0:
            start_with_grid_positions(model.model.vision_tower, settings.position_norm)
    heads = AuxiliaryHeads(model.config.vision_config.hidden_size, model.config.text_config.hidden_size,
                           context=settings.context_weight > 0)
    packer = Packer(processor.tokenizer)
    model.train()
    start = time.perf_counter()

    if settings.vision_from:
        _load_vision_tower(model, settings.vision_from)
    elif not settings.init_from:
        _train_vision(model, heads, settings)
    vision_seconds = time.perf_counter() - start
    grow_front(model, settings.grow_front, settings.grow_source)

    if settings.freeze_vision:
        model.model.vision_tower.requires_grad_(False)
    optimizer = _optimizer([model, heads], settings)
    history: list[dict] = []
    running = _Running()
    bar = tqdm(total=settings.steps, desc="stage 2: llava", unit="step", dynamic_ncols=True)
    for step, batch in enumerate(prefetched(_question_jobs(settings, range(settings.steps)))):
        tokens = visible_tokens(step, settings.subset_tokens, settings.subset_hold, settings.subset_ramp)
        weights = _loss_weights(settings, step)
        losses = packed_losses(
            model, heads, batch.pixel_values, batch.packed, batch.scene_targets, batch.patch_targets,
            batch.anchors, weights,
        )
        lr = cosine_schedule(settings.lr, step, settings.steps, settings.warmup, settings.final_lr_ratio)
        _step(optimizer, losses.total, lr, settings.clip_norm)
        shown = dict(tokens=tokens, loss=losses.answer.item(), acc=losses.answer_accuracy)
        if losses.tower is not None:
            shown["patch"] = losses.tower.patch.item()
            if losses.tower.context is not None:
                shown["context"] = losses.tower.context.item()
        if weights.grounding > 0:
            shown["ground"] = losses.grounding.item()
        bar.update()
        bar.set_postfix(running.update(**shown))

        if (step + 1) % settings.eval_every == 0 or step + 1 == settings.steps:
            accuracy = validation_accuracy(model, packer, settings.val_images, tokens)
            elapsed = time.perf_counter() - start
            history.append({"step": step + 1, "seconds": round(elapsed, 1), "visual_tokens": tokens,
                            "validation": accuracy,
                            "train_loss": round(running.values["loss"], 4)})
            tqdm.write(f"step {step + 1} ({elapsed / 60:.1f} min, {tokens} visual tokens): "
                       + " ".join(f"{k} {v:.2f}" for k, v in accuracy.items()))

    bar.close()
    model.requires_grad_(True)
    model.eval()
    record = {
        "settings": {**asdict(settings), "size": model_size_of(model.config).to_dict()},
        "wall_seconds": round(time.perf_counter() - start, 1),
        "vision_stage_seconds": round(vision_seconds, 1),
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
