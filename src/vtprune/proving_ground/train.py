"""Train the proving-ground model: ``python -m vtprune.proving_ground.train``.

With the defaults this reproduces the bundled checkpoint (``--output`` defaults to a
new folder, so the bundled one is only replaced when asked for explicitly).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from .training.trainer import TrainSettings, save_checkpoint, train


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainSettings()
    parser = argparse.ArgumentParser(prog="python -m vtprune.proving_ground.train", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("proving-ground-checkpoint"),
                        help="folder for the checkpoint (default: ./proving-ground-checkpoint)")
    parser.add_argument("--steps", type=int, default=defaults.steps, help=f"optimiser steps (default {defaults.steps})")
    parser.add_argument("--batch", type=int, default=defaults.batch,
                        help=f"images per step, each with one question per family (default {defaults.batch})")
    parser.add_argument("--lr", type=float, default=defaults.lr, help=f"peak learning rate (default {defaults.lr})")
    parser.add_argument("--warmup", type=int, default=defaults.warmup, help=f"warm-up steps (default {defaults.warmup})")
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"initialisation seed (default {defaults.seed})")
    parser.add_argument("--threads", type=int, default=defaults.threads, help=f"torch CPU threads (default {defaults.threads})")
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every,
                        help=f"steps between validation passes (default {defaults.eval_every})")
    parser.add_argument("--val-images", type=int, default=defaults.val_images,
                        help=f"validation scenes per pass (default {defaults.val_images})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = TrainSettings(
        steps=args.steps, batch=args.batch, lr=args.lr, warmup=args.warmup, seed=args.seed,
        threads=args.threads, eval_every=args.eval_every, val_images=args.val_images,
    )
    model, processor, record = train(settings)
    save_checkpoint(model, processor, record, args.output)
    print(f"saved to {args.output} after {record['wall_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
