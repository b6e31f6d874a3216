"""Train the proving-ground model: ``python -m vtprune.proving_ground.train``.

With the defaults this reproduces the bundled checkpoint (``--output`` defaults to a
new folder, so the bundled one is only replaced when asked for explicitly).
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Sequence

from .training.trainer import TrainSettings, save_checkpoint, train

_OPTIONS = {  # settings exposed on the command line, with their help
    "vision_steps": "stage 1 steps: the vision tower alone",
    "vision_batch": "images per stage 1 step",
    "vision_lr": "stage 1 peak learning rate",
    "steps": "stage 2 steps: the whole model",
    "batch": "images per stage 2 step",
    "questions_per_family": "questions asked of each image per family in stage 2",
    "lr": "stage 2 peak learning rate",
    "warmup": "warm-up steps of each stage",
    "subset_tokens": "visual tokens per image at the start of stage 2",
    "subset_hold": "stage 2 steps on that subset",
    "subset_ramp": "stage 2 steps over which the subset grows to all 576 tokens",
    "position_weight": "stage 1 weight of the object-token position loss (0: off)",
    "position_norm": "length of the 2-D sin/cos start of the position embeddings (0: random start)",
    "grounding_weight": "weight of the grounding loss (0: off)",
    "seed": "initialisation seed",
    "threads": "torch CPU threads",
    "eval_every": "stage 2 steps between validation passes",
    "val_images": "validation scenes per pass",
}


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainSettings()
    types = {f.name: f.type for f in fields(TrainSettings)}
    parser = argparse.ArgumentParser(prog="python -m vtprune.proving_ground.train", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("proving-ground-checkpoint"),
                        help="folder for the checkpoint (default: ./proving-ground-checkpoint)")
    for name, text in _OPTIONS.items():
        kind = float if types[name] in (float, "float") else int
        default = getattr(defaults, name)
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=default, help=f"{text} (default {default})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = TrainSettings(**{name: getattr(args, name) for name in _OPTIONS})
    model, processor, record = train(settings)
    save_checkpoint(model, processor, record, args.output)
    print(f"saved to {args.output} after {record['wall_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
