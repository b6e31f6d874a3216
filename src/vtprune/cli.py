"""The ``vtprune`` command line.

Building the parser, checking the arguments, listing the methods and refusing an
unknown method import neither torch nor transformers, so they answer at once; each
command imports what it needs.
Every (method, budget) a command is asked for is checked against the model's config
before the model is loaded (see :mod:`vtprune.preflight`).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import Sequence

from . import __version__
from .arguments import at_least, budget
from .bench.architectures import ARCHITECTURES
from .bench.suite import PRESETS as SUITE_PRESETS


def _cmd_methods(args: argparse.Namespace) -> int:
    from .config import PruneConfig
    from .models.listing import family_support
    from .registry import get_method, list_methods

    rows = list_methods()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    indent = " " * (width + 2)
    shared = PruneConfig.field_help()
    for row in rows:
        print(f"{row['name']:<{width}}  {row['stage']:<16} {row['summary']}")
        print(f"{indent}needs: {', '.join(row['needs']) or '-'}")
        print(f"{indent}paper: {row['paper']}")
        if args.verbose:
            _print_options(get_method(row["name"]).config, indent + "  ", skip=shared)
    if args.verbose:
        print("\nevery method also takes (unless listed above with its own default):")
        _print_options(PruneConfig, "  ")
    print("\nmodel families (every method runs on every family):")
    for family, classes, provided in family_support():
        print(f"  {family:<16} {', '.join(classes)}")
        print(f"  {'':<16} signals: {', '.join(provided)}")
    return 0


def _print_options(config: type, indent: str, skip: dict[str, str] | None = None) -> None:
    """Each option as ``name = default`` with its help wrapped under it; an option with
    the same help as in ``skip`` only when its default differs from the shared one."""
    import dataclasses

    from .config import PruneConfig

    shared = {f.name: f.default for f in dataclasses.fields(PruneConfig)}
    for field in dataclasses.fields(config):
        text = field.metadata.get("help", "")
        if skip and skip.get(field.name) == text:
            if field.default != shared[field.name]:
                print(f"{indent}{field.name} = {field.default!r}")
            continue
        print(f"{indent}{field.name} = {field.default!r}")
        print(textwrap.fill(text, 96, initial_indent=indent + "    ", subsequent_indent=indent + "    "))


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    from .preflight import check, proving_ground_config

    check(None, [args.keep], proving_ground_config)
    return run_demo(keep=args.keep, questions=args.questions, out=args.out, device=args.device)


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.suite:
        from .bench.suite_command import run_suite_command

        return run_suite_command(args)
    args.keep = args.keep or [0.222]
    args.grid = args.grid or [32, 32]
    args.repeats = 5 if args.repeats is None else args.repeats
    args.warmup = 1 if args.warmup is None else args.warmup
    args.decode_tokens = args.decode_tokens or 4
    if args.throughput:
        raise SystemExit("vtprune bench: error: --throughput: only with --suite (cpu, full, tiny)")
    if args.engine == "vllm":
        return _bench_vllm(args)
    if args.llm:
        raise SystemExit("vtprune bench: error: --llm: only with --engine vllm")
    args.batch = args.batch or 1
    from .preflight import check, checkpoint_config, proving_ground_config

    def model_config():
        if args.arch:
            from .bench.architectures import config_of

            return config_of(args.arch, layers=args.layers)
        return checkpoint_config(args.model) if args.model else proving_ground_config()

    # Every variant is checked against the model's config before the model is built or loaded.
    check(args.method, args.keep, model_config)

    from pathlib import Path

    from .bench.inputs import load_target
    from .bench.report import format_table, plot, write_json
    from .bench.runner import run_bench
    from .loading import default_device, default_dtype
    from .progress import progress_bar
    from .variants import Variant

    device = default_device(args.device)
    dtype = default_dtype(args.dtype, device)
    from .registry import method_names

    names = args.method or method_names()
    target = load_target(
        model_id=args.model, arch=args.arch, layers=args.layers, batch_size=args.batch,
        text_tokens=args.prompt_tokens, grid=tuple(args.grid), dtype=dtype, device=device,
    )
    variants = [Variant(name, keep) for name in names for keep in args.keep]
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


def _bench_vllm(args: argparse.Namespace) -> int:
    """The same request set served by vLLM, stock and pruned (:mod:`vtprune.vllm.bench`)."""
    if args.arch:
        raise SystemExit("vtprune bench: error: --arch: not with --engine vllm (use --model, or --llm WIDTHxLAYERS)")
    if len(args.keep) != 1:
        raise SystemExit("vtprune bench: error: --keep: one budget with --engine vllm")
    from .vllm.bench import main

    argv = ["--keep", str(args.keep[0]), "--requests", str(args.batch or 16), "--repeats", str(args.repeats),
            "--warmup", str(args.warmup), "--max-tokens", str(args.decode_tokens), "--out", args.out]
    argv += ["--methods", ",".join(args.method)] if args.method else []
    argv += ["--model", args.model] if args.model else []
    argv += ["--llm", args.llm] if args.llm else []
    argv += ["--dtype", args.dtype] if args.dtype else []
    return main(argv, prog="vtprune bench --engine vllm")


def _cmd_show(args: argparse.Namespace) -> int:
    from .preflight import check, checkpoint_config, proving_ground_config
    from .viz.show import run_show

    check(args.method, args.keep, lambda: checkpoint_config(args.model) if args.model else proving_ground_config())
    return run_show(args)


KEEP_HELP = "counts (128) or ratios (0.222)"


class _Parser(argparse.ArgumentParser):
    """An argument error is one line (the usage is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vtprune", description="Visual token pruning for Hugging Face VLMs.")
    parser.add_argument("--version", action="version", version=f"vtprune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("methods", help="list the pruning methods, their stages, needs and papers")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-v", "--verbose", action="store_true", help="also list every option, its default and its help")
    p.set_defaults(func=_cmd_methods)

    p = sub.add_parser("demo", help="every method on the bundled proving-ground model: accuracy, speed, a picture")
    p.add_argument("--keep", type=budget, default=0.222, help=f"the budget of every method: {KEEP_HELP}; default 0.222")
    p.add_argument("--questions", type=at_least(1), default=120, help="proving-ground questions (default 120)")
    p.add_argument("-o", "--out", default="vtprune-demo", help="folder for demo.md, demo.json, demo.png")
    p.add_argument("--device", help="default: cuda if available, else cpu")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "bench", help="prefill / TTFT / decode speed, memory and MACs of methods vs unpruned",
        description="Speed of methods against the unpruned model, interleaved in one run. The defaults take a few "
        "minutes on a CPU; for figures with a narrower spread raise --repeats (and --decode-tokens for decoding), "
        "or measure a real-scale architecture (--arch llava-1.5-7b --layers 4) or checkpoint (--model).",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model", help="Hugging Face id or path of a checkpoint (with its processor)")
    source.add_argument("--arch", choices=ARCHITECTURES, help="build this architecture with random weights")
    p.add_argument("--layers", type=at_least(1), help="truncate the language model to this many layers (--arch)")
    p.add_argument("--method", nargs="+", help="methods to measure (default: all)")
    p.add_argument("--keep", nargs="+", type=budget, help=f"budgets: {KEEP_HELP}; default 0.222")
    p.add_argument("--suite", choices=SUITE_PRESETS,
                   help="every method (or --method) at 64/128/192 of 576 tokens on llava-1.5-7b and 0.111/0.222/0.333 "
                   "on qwen2.5-vl-7b, random weights, one interleaved run per shape, plus batch throughput: cpu "
                   "(language models truncated to 4 layers, ~20 min on 2 cores), full (full depth, a GPU), tiny "
                   "(the tiny test architectures); writes suite.md, suite.json, suite.png")
    p.add_argument("--throughput", type=at_least(0), nargs="+", metavar="BATCH",
                   help="--suite: batch sizes of the throughput section (default 8 32; 0: none)")
    p.add_argument("--engine", choices=["hf", "vllm"], default="hf",
                   help="hf: transformers, every method; vllm: served by vLLM (pre-LLM methods; default methods "
                   "divprune, visionzip, uniform)")
    p.add_argument("--llm", metavar="WIDTHxLAYERS",
                   help="--engine vllm: the bundled model with a random-weight language model of this shape (768x6)")
    p.add_argument("--batch", type=at_least(1), help="prompts per batch (default 1; with --engine vllm, 16 requests)")
    p.add_argument("--prompt-tokens", type=at_least(2), default=64,
                   help="text tokens per synthetic prompt (--arch, --suite)")
    p.add_argument("--grid", type=at_least(1), nargs=2, metavar=("ROWS", "COLS"),
                   help="Qwen image token grid for synthetic prompts (default 32 32)")
    p.add_argument("--repeats", type=at_least(1), help="timed repetitions (default 5; --suite: its preset's)")
    p.add_argument("--warmup", type=at_least(0), help="untimed repetitions first, also before the --suite throughput rounds (default 1; --suite: its preset's)")
    p.add_argument("--decode-tokens", type=at_least(1),
                   help="tokens generated per repetition; 1 times the first token only (default 4; --suite: its "
                   "preset's)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--device", help="default: cuda if available, else cpu")
    p.add_argument("-o", "--out", default="vtprune-bench",
                   help="folder for bench.json and bench.png (--suite: suite.md, suite.json, suite.png)")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("show", help="PNG of the visual tokens methods keep for one image and prompt")
    p.add_argument("image", help="the image file")
    p.add_argument("--prompt", required=True, help="the question or instruction about the image")
    p.add_argument("--method", nargs="+", action="extend", required=True,
                   help="methods to draw, one row each (repeatable)")
    p.add_argument("--keep", nargs="+", type=budget, default=[0.222],
                   help=f"budgets, one column each: {KEEP_HELP}; default 0.222")
    p.add_argument("--model", help="Hugging Face id or path of a checkpoint (default: the proving-ground model)")
    p.add_argument("--stages", action="store_true", help="one panel per stage (in-LLM methods prune at several layers)")
    p.add_argument("-o", "--out", default="vtprune-show.png", help="the PNG to write (default vtprune-show.png)")
    p.add_argument("--panel-size", type=at_least(1), default=448,
                   help="longest side of each panel in pixels (default 448)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--device", help="default: cuda if available, else cpu")
    p.set_defaults(func=_cmd_show)

    from .eval.command import add_parser as add_eval_parser

    add_eval_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .preflight import RequestError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RequestError as error:
        print(f"vtprune {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
