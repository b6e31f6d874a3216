"""The ``vtprune`` command line."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import Sequence


def _cmd_methods(args: argparse.Namespace) -> int:
    from . import methods
    from .models import supported_families
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
    print("\nmodel families: " + "; ".join(f"{f} ({', '.join(c)})" for f, c in supported_families().items()))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(keep=args.keep, tokens=args.tokens)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vtprune", description="Visual token pruning for Hugging Face VLMs.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("methods", help="list the pruning methods, their stages, needs and papers")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-v", "--verbose", action="store_true", help="also list every config field")
    p.set_defaults(func=_cmd_methods)

    p = sub.add_parser("demo", help="offline demonstration on bundled tiny models")
    p.add_argument("--keep", type=float, default=0.25, help="kept ratio of visual tokens (default 0.25)")
    p.add_argument("--tokens", type=int, default=16, help="tokens to generate (default 16)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
