"""Train the proving-ground model: ``python -m vtprune.proving_ground.train``.

With the defaults this reproduces the bundled checkpoint (``--output`` defaults to a
new folder, so the bundled one is only replaced when asked for explicitly).
"""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path
from typing import Sequence

from .model import ModelSize
from .training.trainer import TrainSettings, save_checkpoint, train


def _options() -> list:
    """The settings on the command line: every field with help text (all but ``size``)."""
    return [f for f in fields(TrainSettings) if f.metadata.get("help")]


def _yes_no(text: str) -> bool:
    """A boolean setting on the command line: yes/no, true/false, 1/0."""
    known = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}
    if text.lower() not in known:
        raise argparse.ArgumentTypeError(f"expected one of {sorted(known)}; got {text!r}")
    return known[text.lower()]


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
            kind = {"float": float, "str": str, "bool": _yes_no}.get(
                getattr(types[f.name], "__name__", types[f.name]), int)
            parser.add_argument(flag, type=kind, default=default, help=f"{text} (default {default})")
    sizes = ", ".join(f"{f.name}={getattr(ModelSize(), f.name)}" for f in fields(ModelSize))
    parser.add_argument("--size", nargs="*", default=[], metavar="FIELD=VALUE",
                        help=f"widths and depths of the two towers that differ from the defaults ({sizes})")
    return parser


def model_size(pairs: Sequence[str]) -> ModelSize:
    """``["text_layers=6", ...]`` -> the default :class:`ModelSize` with those fields changed."""
    known = {f.name for f in fields(ModelSize)}
    changes = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in known or not value.isdigit():
            raise SystemExit(f"--size: expected FIELD=INTEGER with FIELD one of {sorted(known)}; got {pair!r}")
        changes[name] = int(value)
    return replace(ModelSize(), **changes)


def _value(value):
    return tuple(value) if isinstance(value, list) else value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = TrainSettings(**{f.name: _value(getattr(args, f.name)) for f in _options()}, size=model_size(args.size))
    model, processor, record = train(settings)
    save_checkpoint(model, processor, record, args.output)
    print(f"saved to {args.output} after {record['wall_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
