"""``vtprune bench --suite PRESET``: the command line of :mod:`vtprune.bench.suite`.

Options the suite chooses itself (the model, the budgets, the batch, the image grid,
the engine) are refused with one line naming the option and what ``--suite``
accepts, before any model is built.
"""

from __future__ import annotations

import argparse
import sys

from .suite import PRESETS

ACCEPTED = "--method, --layers, --prompt-tokens, --repeats, --warmup, --decode-tokens, --throughput, --dtype, --device, --out"
REFUSED = (("model", "--model"), ("arch", "--arch"), ("keep", "--keep"), ("llm", "--llm"), ("batch", "--batch"),
           ("grid", "--grid"))


def refuse(args: argparse.Namespace) -> None:
    """``SystemExit`` with one line for an option the suite does not take."""
    for name, option in REFUSED:
        if getattr(args, name, None) is not None:
            raise SystemExit(f"vtprune bench: error: {option}: not with --suite (it builds llava-1.5-7b and "
                             f"qwen2.5-vl-7b at their budgets itself); --suite {'/'.join(PRESETS)} accepts {ACCEPTED}")
    if getattr(args, "engine", "hf") != "hf":
        raise SystemExit(f"vtprune bench: error: --engine: --suite runs on hf only; --suite accepts {ACCEPTED}")
    batches = args.throughput or []
    if 0 in batches and len(batches) > 1:
        raise SystemExit("vtprune bench: error: --throughput: batch sizes >= 1, or 0 alone (no throughput section)")


def run_suite_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..preflight import RequestError
    from .suite import run_suite, settings_for

    refuse(args)
    throughput = None if args.throughput is None else tuple(b for b in args.throughput if b)
    settings = settings_for(
        args.suite, methods=tuple(args.method) if args.method else None, layers=args.layers,
        repeats=args.repeats, warmup=args.warmup, decode_tokens=args.decode_tokens, prompt_tokens=args.prompt_tokens,
        throughput_batches=throughput, dtype=args.dtype, device=args.device,
    )
    try:
        from .suite import preflight

        preflight(settings)
    except ValueError as error:
        if isinstance(error, RequestError):
            raise
        raise SystemExit(f"vtprune bench: error: {error}") from None

    from ..progress import progress_bar
    from .suite_report import markdown, write

    bars = []

    def progress(description: str, total: int):
        bar = progress_bar(total=total, desc=description)
        bars.append(bar)
        return bar.__enter__()

    try:
        result = run_suite(settings, progress=progress, done=lambda partial: write(partial, Path(args.out)))
    finally:
        for bar in bars:
            bar.__exit__(None, None, None)
    print(markdown(result))
    written = write(result, Path(args.out))
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0
