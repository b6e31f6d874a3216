"""The ``vtprune`` command line."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import Sequence


def _cmd_methods(args: argparse.Namespace) -> int:
    from . import methods
    from .models import family_support
    from .registry import get_method

    rows = methods()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for row in rows:
        print(f"{row['name']:<{width}}  {row['stage']:<16} {row['summary']}")
        print(f"{'':<{width}}  needs: {', '.join(row['needs']) or '-'}")
        print(f"{'':<{width}}  paper: {row['paper']}")
        if args.verbose:
            for name, text in get_method(row["name"]).config.field_help().items():
                wrapped = textwrap.fill(text, 88, initial_indent=" " * (width + 6), subsequent_indent=" " * (width + 6))
                print(f"{'':<{width}}    {name}:\n{wrapped}")
    print("\nmodel families (every method runs on every family):")
    for family, classes, provided in family_support():
        print(f"  {family:<16} {', '.join(classes)}")
        print(f"  {'':<16} signals: {', '.join(provided)}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(keep=args.keep, questions=args.questions, out=args.out, device=args.device)


def _cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from . import methods
    from .bench.inputs import load_target
    from .bench.report import format_table, plot, write_json
    from .bench.runner import Variant, run_bench
    from .progress import progress_bar

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    names = args.method or [m["name"] for m in methods()]
    keeps = [_keep(k) for k in args.keep]
    target = load_target(
        model_id=args.model, arch=args.arch, layers=args.layers, batch_size=args.batch,
        text_tokens=args.prompt_tokens, grid=tuple(args.grid), dtype=dtype, device=device,
    )
    variants = [Variant(name, keep) for name in names for keep in keeps]
    total = (args.warmup + args.repeats) * (len(variants) + 1)
    with progress_bar(total=total, desc="bench") as bar:
        result = run_bench(target, variants, repeats=args.repeats, warmup=args.warmup,
                           decode_tokens=args.decode_tokens, progress=bar)
    print(format_table(result))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(result, out / "bench.json")
    plot(result, out / "bench.png")
    print(f"\nwrote {out / 'bench.json'} and {out / 'bench.png'}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from .viz.show import run_show

    return run_show(args)


def _at_least(least: int):
    """An argparse type: an integer >= ``least`` (checked before any model is loaded)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"must be an integer >= {least}, got {text!r}")
        return value

    return parse


def _keep(text: str) -> int | float:
    """A budget from the command line: '128' is a count, '0.222' a ratio."""
    return float(text) if any(c in text for c in ".eE") else int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vtprune", description="Visual token pruning for Hugging Face VLMs.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("methods", help="list the pruning methods, their stages, needs and papers")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-v", "--verbose", action="store_true", help="also list every config field")
    p.set_defaults(func=_cmd_methods)

    p = sub.add_parser("demo", help="every method on the bundled proving-ground model: accuracy, speed, a picture")
    p.add_argument("--keep", type=float, default=0.222, help="kept share of visual tokens (default 0.222)")
    p.add_argument("--questions", type=int, default=120, help="proving-ground questions (default 120)")
    p.add_argument("--out", default="vtprune-demo", help="folder for demo.md, demo.json, demo.png")
    p.add_argument("--device", help="default: cuda if available, else cpu")
    p.set_defaults(func=_cmd_demo)

    from .bench.architectures import ARCHITECTURES

    p = sub.add_parser("bench", help="prefill / TTFT / decode speed, memory and MACs of methods vs unpruned")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model", help="Hugging Face id or path of a checkpoint (with its processor)")
    source.add_argument("--arch", choices=ARCHITECTURES, help="build this architecture with random weights")
    p.add_argument("--layers", type=int, help="truncate the language model to this many layers (--arch)")
    p.add_argument("--method", nargs="+", help="methods to measure (default: all)")
    p.add_argument("--keep", nargs="+", default=["0.222"], help="budgets: counts (128) or ratios (0.222)")
    p.add_argument("--batch", type=int, default=1, help="prompts per batch (default 1)")
    p.add_argument("--prompt-tokens", type=int, default=64, help="text tokens per synthetic prompt (--arch)")
    p.add_argument("--grid", type=int, nargs=2, default=[32, 32], metavar=("ROWS", "COLS"),
                   help="Qwen image token grid for synthetic prompts (default 32 32)")
    p.add_argument("--repeats", type=_at_least(1), default=5)
    p.add_argument("--warmup", type=_at_least(0), default=1)
    p.add_argument("--decode-tokens", type=_at_least(1), default=16,
                   help="tokens generated per repetition; 1 times the prefill only (default 16)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--device", help="default: cuda if available, else cpu")
    p.add_argument("--out", default="vtprune-bench", help="folder for bench.json and bench.png")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("show", help="PNG of the visual tokens methods keep for one image and prompt")
    p.add_argument("image", help="the image file")
    p.add_argument("--prompt", required=True, help="the question or instruction about the image")
    p.add_argument("--method", nargs="+", action="extend", required=True,
                   help="methods to draw, one row each (repeatable)")
    p.add_argument("--keep", nargs="+", type=_keep, default=[0.222],
                   help="budgets, one column each: counts (128) or ratios (0.222); default 0.222")
    p.add_argument("--model", help="Hugging Face id or path of a checkpoint (default: the proving-ground model)")
    p.add_argument("--stages", action="store_true", help="one panel per stage (in-LLM methods prune at several layers)")
    p.add_argument("--out", default="vtprune-show.png", help="the PNG to write (default vtprune-show.png)")
    p.add_argument("--panel-size", type=int, default=448, help="longest side of each panel in pixels (default 448)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--device", help="default: cuda if available, else cpu")
    p.set_defaults(func=_cmd_show)

    from .eval.command import add_parser as add_eval_parser

    add_eval_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
