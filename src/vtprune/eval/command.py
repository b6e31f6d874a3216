"""``vtprune eval``: accuracy of methods and budgets against the unpruned model.

Without ``--task`` it evaluates on the bundled proving ground (offline, minutes on a
CPU); with ``--model ID --task T1,T2`` it runs real benchmarks through lmms-eval.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..arguments import at_least, budget

if TYPE_CHECKING:
    from ..variants import Variant

DEFAULT_KEEPS = [0.111, 0.222, 0.333]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="accuracy of methods and budgets vs the unpruned model")
    p.add_argument("--method", nargs="+", help="methods to evaluate (default: all)")
    p.add_argument("--keep", nargs="+", type=budget, default=DEFAULT_KEEPS,
                   help="budgets: counts (128) or ratios (0.222); default 0.111 0.222 0.333")
    p.add_argument("--model", help="with --task: a Hugging Face id or path, run through lmms-eval; without: a "
                   "proving-ground checkpoint folder (default: the bundled model)")
    p.add_argument("--task", help="comma-separated lmms-eval tasks, e.g. pope,gqa (needs vtprune[lmms])")
    p.add_argument("--include-path", help="folder of extra lmms-eval task definitions")
    p.add_argument("--limit", type=at_least(1), help="questions (proving ground) or documents per task (lmms-eval)")
    p.add_argument("--corruption", choices=["noise", "blur", "occlusion"], help="corrupt the proving ground's images")
    p.add_argument("--batch-size", type=at_least(1), default=32, help="prompts per batch (default 32)")
    p.add_argument("-o", "--out", default="vtprune-eval", help="folder for results.json, results.md, accuracy.png")
    p.add_argument("--resume", action="store_true", help="keep the answers already in --out and go on")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--device", help="default: cuda if available, else cpu")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..preflight import RequestError, check, checkpoint_config, proving_ground_config
    from ..registry import method_names

    if args.task and not args.model:
        raise RequestError("--task needs --model (a Hugging Face id or path)")
    if args.model and not args.task and not (Path(args.model) / "config.json").is_file():
        # Without --task, --model names a proving-ground checkpoint (one retrained with
        # `python -m vtprune.proving_ground.train`); real checkpoints need a task.
        raise RequestError(f"--model {args.model} without --task must be a folder holding a proving-ground "
                           "checkpoint; for real benchmarks through lmms-eval add --task")
    if args.task:
        from . import lmms_plugin
        from .lmms_campaign import INSTALL_HINT

        if not lmms_plugin.lmms_eval_available():
            raise RequestError(INSTALL_HINT)
    # Every variant is checked against the model's config before the model is loaded.
    refused = check(args.method, args.keep,
                    lambda: checkpoint_config(args.model) if args.task else proving_ground_config(args.model))
    from ..variants import Variant

    names = args.method or method_names()
    variants = [Variant(name, k) for name in names for k in args.keep]
    out = Path(args.out)
    try:
        if args.task:
            skipped = {Variant(*key).label: why for key, why in refused.items()}
            return _run_lmms(args, [v for v in variants if (v.method, v.keep) not in refused], skipped, out)
        return _run_proving_ground(args, variants, out)
    except KeyboardInterrupt:
        print(f"\ninterrupted: what was answered is in {out}; run again with --resume to go on", file=sys.stderr)
        return 130


def _run_proving_ground(args: argparse.Namespace, variants: list[Variant], out: Path) -> int:
    from .. import active_handle
    from ..loading import load_model
    from ..progress import progress_bar
    from ..variants import Variant, runnable
    from .campaign import Campaign, markdown, plot, summarize, versions, with_retention
    from .proving import DEFAULT_EXAMPLES, default_examples, evaluate

    model, processor = load_model(args.model, device=args.device, dtype=args.dtype)
    examples = default_examples(args.limit or DEFAULT_EXAMPLES, corruption=args.corruption)

    def answer(batch: list) -> tuple[list[str], object]:
        result = evaluate(model, processor, batch, batch_size=len(batch))
        handle = active_handle(model)
        return result["predictions"], None if handle is None else handle.stats

    variants, skipped = runnable(model, variants)
    all_variants = [Variant(None), *variants]
    rows = []
    with progress_bar(total=len(examples) * len(all_variants), desc="eval") as bar:
        campaign = Campaign(model, examples, answer, out, batch_size=args.batch_size, resume=args.resume,
                            progress=bar.update)
        for variant in all_variants:
            records, config = campaign.run_variant(variant)
            rows.append(summarize(variant, records, config))
    if campaign.rank != 0:
        return 0
    rows = with_retention(rows)
    title = f"proving ground, {len(examples)} questions" + (f", {args.corruption}" if args.corruption else "")
    report = {"target": f"proving ground ({args.model or 'bundled model'})", "questions": len(examples), "corruption": args.corruption,
              "rows": rows, "skipped": skipped, "versions": versions()}
    text = markdown(rows, title) + "".join(f"\nnot run: {label}: {why}\n" for label, why in skipped.items())
    _write(out, report, text)
    plot(rows, out / "accuracy.png", title)
    print(text)
    print(f"wrote {out / 'results.json'}, {out / 'results.md'} and {out / 'accuracy.png'}")
    return 0


def _run_lmms(args: argparse.Namespace, variants: list[Variant], skipped: dict[str, str], out: Path) -> int:
    from ..loading import default_device, default_dtype
    from .campaign import versions
    from .lmms_campaign import markdown as lmms_markdown
    from .lmms_campaign import run_lmms

    device = default_device(args.device)
    dtype = str(default_dtype(args.dtype, device)).removeprefix("torch.")
    rows = run_lmms(args.model, [t for t in args.task.split(",") if t], variants, batch_size=args.batch_size,
                    limit=args.limit, include_path=args.include_path, device=str(device), dtype=dtype)
    text = lmms_markdown(rows, args.model) + "".join(f"\nnot run: {label}: {why}\n" for label, why in skipped.items())
    _write(out, {"target": args.model, "tasks": args.task, "rows": rows, "skipped": skipped, "versions": versions()},
           text)
    print(text)
    return 0


def _write(out: Path, report: dict, text: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "results.md").write_text(text)
