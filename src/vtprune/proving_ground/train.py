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


def _options() -> list:
    """The settings on the command line: every field with help text not marked ``cli=False``."""
    return [f for f in fields(TrainSettings) if f.metadata.get("cli")]


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainSettings()
    types = {f.name: f.type for f in fields(TrainSettings)}
    parser = argparse.ArgumentParser(prog="python -m vtprune.proving_ground.train", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("proving-ground-checkpoint"),
                        help="folder for the checkpoint (default: ./proving-ground-checkpoint)")
    for f in _options():
        default = getattr(defaults, f.name)
        flag, text = "--" + f.name.replace("_", "-"), f.metadata["help"]
        if isinstance(default, tuple):
            parser.add_argument(flag, nargs="*", default=default, help=f"{text} (default {' '.join(default)})")
        else:
            kind = float if types[f.name] in (float, "float") else int
            parser.add_argument(flag, type=kind, default=default, help=f"{text} (default {default})")
    return parser


def _value(value):
    return tuple(value) if isinstance(value, list) else value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = TrainSettings(**{f.name: _value(getattr(args, f.name)) for f in _options()})
    model, processor, record = train(settings)
    save_checkpoint(model, processor, record, args.output)
    print(f"saved to {args.output} after {record['wall_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
