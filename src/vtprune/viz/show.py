"""``vtprune show``: which visual tokens each method keeps for one image and prompt.

Loads a model and its processor (by default the bundled proving-ground model), runs
one forward per (method, budget) with that method pruning, and draws the kept tokens
on the image: one panel per (method, budget), methods down and budgets across, each
captioned "method keep=...". With ``stages=True`` each method gets one row with a
panel per stage (the LLM input, then each in-LLM pruning layer). Under the panels: the
original image, the prompt, and a legend of what the shading means.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image, ImageOps

from ..loading import load_model
from ..variants import Variant, pruned
from .draw import overlay, overlay_stages, panel_grid, with_key
from .geometry import TokenGeometry
from .processor_geometry import geometry_for

LLAVA_PROMPT = "USER: {image}\n{prompt} ASSISTANT:"


class ShowError(ValueError):
    """A request ``vtprune show`` cannot serve, with a message for the user."""


@dataclass(frozen=True)
class KeptTokens:
    """What one pruned forward kept of the image's tokens."""

    method: str
    keep: int | float
    kept: torch.Tensor  # the final kept indices
    by_stage: dict[str, torch.Tensor]  # stage -> kept indices after it
    merge: torch.Tensor | None  # per token, the kept token it was merged into (-1: none)
    tokens: int  # the image's visual tokens before pruning

    @property
    def caption(self) -> str:
        return f"{self.method} keep={self.keep}: {len(self.kept)}/{self.tokens}"


def load(model: str | None, device: str | None, dtype: str | None) -> tuple[Any, Any]:
    """``(model, processor)`` by :func:`vtprune.loading.load_model`, its failures worded
    for the command line."""
    try:
        return load_model(model, device=device, dtype=dtype)
    except ImportError as error:
        if model is not None:
            raise
        raise ShowError(
            "the bundled proving-ground model is not part of this installation; pass --model ID_OR_PATH"
        ) from error
    except (OSError, ValueError) as error:
        if model is None:
            raise
        raise ShowError(f"--model {model!r} could not be loaded: {error}") from error


def build_prompt(processor: Any, prompt: str) -> str:
    """The prompt text with one image: the processor's chat template if it has one,
    else LLaVA-1.5's "USER: <image>\\n... ASSISTANT:"."""
    if getattr(processor, "chat_template", None):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return LLAVA_PROMPT.format(image=getattr(processor, "image_token", None) or "<image>", prompt=prompt)


def model_inputs(processor: Any, image: Image.Image, prompt: str, model: Any) -> dict[str, Any]:
    """The processor's tensors for one image and prompt, on the model's device and dtype."""
    batch = processor(images=[image], text=[build_prompt(processor, prompt)], return_tensors="pt")
    parameter = next(model.parameters())
    return {
        name: value.to(parameter.device, parameter.dtype if value.is_floating_point() else value.dtype)
        for name, value in batch.items()
        if isinstance(value, torch.Tensor)
    }


def select(model: Any, inputs: dict[str, Any], method: str, keep: int | float) -> KeptTokens:
    """Prune ``model`` with ``method`` at budget ``keep``, run one forward, record what
    was kept of the (only) image, and restore the model."""
    with contextlib.ExitStack() as stack:
        try:
            handle = stack.enter_context(pruned(model, Variant(method, keep)))
        except (TypeError, ValueError) as error:  # budgets a method cannot meet on this model
            raise ShowError(str(error)) from error
        with torch.no_grad():
            model(**inputs)
        if handle.last_keep is None:
            raise ShowError("the model saw no image tokens; does the prompt carry the image?")
        return KeptTokens(
            method=method,
            keep=keep,
            kept=handle.last_keep[0][0].cpu(),
            by_stage={name: kept[0][0].cpu() for name, kept in handle.keep_by_stage.items()},
            merge=None if handle.last_merge[0][0] is None else handle.last_merge[0][0].cpu(),
            tokens=handle.stats.before[0],
        )


def image_geometry(processor: Any, model: Any, image: Image.Image) -> TokenGeometry:
    """Where the model's tokens of ``image`` lie (the vision tower's patch size from the
    processor, else from the model's config)."""
    patch_size = getattr(processor, "patch_size", None)
    if patch_size is None:
        patch_size = getattr(getattr(model.config, "vision_config", None), "patch_size", None)
    return geometry_for(processor, image, patch_size=patch_size)


def draw(
    image: Image.Image,
    geometry: TokenGeometry,
    selections: Sequence[KeptTokens],
    keeps: Sequence[int | float],
    *,
    stages: bool = False,
    side: int | None = None,
) -> Image.Image:
    """The picture: methods down, budgets across (or, with ``stages``, one row per
    (method, budget) with a panel per stage)."""
    for selection in selections:
        if selection.tokens != geometry.num_tokens:
            raise ShowError(
                f"the processor's geometry gives {geometry.num_tokens} tokens for this image but the model saw "
                f"{selection.tokens}; this processor configuration is not supported by vtprune.viz"
            )
    if stages:
        rows = [
            [overlay_stages(image, s.by_stage, geometry, merge=s.merge, side=side, title=f"{s.method} keep={s.keep}")]
            for s in selections
        ]
    else:
        panels = [overlay(image, s.kept, geometry, merge=s.merge, caption=s.caption, side=side) for s in selections]
        rows = [panels[i : i + len(keeps)] for i in range(0, len(panels), len(keeps))]
    return panel_grid(rows)


def show(
    image_path: str | Path,
    prompt: str,
    methods: Sequence[str],
    keeps: Sequence[int | float],
    *,
    model_id: str | None = None,
    out: str | Path = "vtprune-show.png",
    stages: bool = False,
    device: str | None = None,
    dtype: str | None = None,
    side: int | None = 448,
) -> tuple[Path, list[KeptTokens]]:
    """Write the PNG for ``methods`` x ``keeps`` on one image and prompt; returns its path
    and the selections drawn."""
    import vtprune

    try:  # unknown names and bad budgets fail here, before anything is loaded
        for name in methods:
            spec = vtprune.get_method(name)
            for keep in keeps:
                spec.config(keep=keep)
    except (TypeError, ValueError) as error:
        raise ShowError(str(error)) from error
    if side is not None and side < 1:
        raise ShowError(f"panel size must be >= 1 pixel; got {side}")
    try:
        image = ImageOps.exif_transpose(Image.open(image_path)).convert("RGB")
    except OSError as error:
        raise ShowError(f"IMAGE {str(image_path)!r} could not be read: {error}") from error
    model, processor = load(model_id, device, dtype)
    try:
        geometry = image_geometry(processor, model, image)
    except (TypeError, ValueError, NotImplementedError) as error:
        raise ShowError(f"cannot place this model's tokens on the image: {error}") from error
    inputs = model_inputs(processor, image, prompt, model)
    selections = [select(model, inputs, method, keep) for method in methods for keep in keeps]
    picture = draw(image, geometry, selections, keeps, stages=stages, side=side)
    original = image if side is None else image.resize(
        (max(1, round(image.width * side / max(image.size))), max(1, round(image.height * side / max(image.size)))),
        Image.Resampling.BILINEAR)
    picture = with_key(picture, prompt=prompt, original=original, merged=any(s.merge is not None for s in selections))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, format="PNG")
    return path, selections


def run_show(args: Any) -> int:
    """The command: arguments from ``vtprune show``'s parser, a summary on stdout."""
    try:
        path, selections = show(
            args.image,
            args.prompt,
            args.method,
            args.keep,
            model_id=args.model,
            out=args.out,
            stages=args.stages,
            device=args.device,
            dtype=args.dtype,
            side=args.panel_size,
        )
    except ShowError as error:
        print(f"vtprune show: error: {error}", file=sys.stderr)
        return 2
    for selection in selections:
        stages = ", ".join(f"{name} {len(kept)}" for name, kept in selection.by_stage.items())
        print(f"{selection.caption} tokens (stages: {stages})")
    print(f"wrote {path}")
    return 0
