"""``vtprune demo``: every method at one budget on the bundled proving-ground model, offline.

Three things a user wants to see first, in a few minutes on a CPU:

* accuracy: every method against the unpruned model on the same proving-ground
  questions, overall and per question family, with retention;
* speed: prefill time of every method as a ratio to the unpruned model, measured in
  the same run, with the ideal ratio from MACs beside it;
* a picture: which visual tokens some methods keep of one scene, for a question about
  one small object.

Writes ``demo.md``, ``demo.json`` and ``demo.png`` into the output folder.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch

from . import methods
from .bench.figures import READABLE_SPREAD
from .bench.inputs import Target, processor_batch
from .bench.jsontext import dumps
from .bench.runner import run_bench
from .variants import Variant, runnable

SPEED_REPEATS, SPEED_WARMUP = 7, 1
PICTURE_METHODS = ("uniform", "fastv", "visionzip", "zspaprune", "coast", "sts")


def run_demo(keep: int | float = 0.222, questions: int = 120, out: str = "vtprune-demo", device: str | None = None) -> int:
    from .eval.proving import compare_methods, default_examples
    from .loading import default_device, load_model
    from .progress import progress_bar

    warnings.filterwarnings("ignore", message=".*text_tower.*")
    start = time.perf_counter()
    device = default_device(device)
    # float32 on every device, so the accuracy figures do not depend on where it runs.
    model, processor = load_model(None, device=device, dtype=torch.float32)
    every = [Variant(m["name"], keep) for m in methods()]
    ok, not_run = runnable(model, every)
    names = [v.method for v in ok]
    skipped = {v.method: not_run[v.label] for v in every if v.label in not_run}
    examples = default_examples(questions)
    print(f"vtprune demo: the bundled proving-ground model, {len(examples)} questions, every method at keep={keep}\n")

    with progress_bar(total=len(names) + 1, desc="accuracy") as bar:
        comparison = compare_methods(model, processor, examples, [(n, keep) for n in names],
                                     progress=lambda _line: bar.update(1))
    speed_batch = processor_batch(processor, [e.image for e in examples[:4]], [e.question for e in examples[:4]])
    speed_batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in speed_batch.items()}
    # The prefill only, so that the time buys repetitions: the spread of 7 is the
    # interquartile range, which one slow repetition on a busy machine does not decide.
    with progress_bar(total=(SPEED_WARMUP + SPEED_REPEATS) * (len(names) + 1), desc="speed") as bar:
        speed = run_bench(Target("proving ground", model, speed_batch), [Variant(n, keep) for n in names],
                          repeats=SPEED_REPEATS, warmup=SPEED_WARMUP, generate=False, progress=bar)

    rows = _rows(comparison, speed)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    text = _markdown(rows, comparison, keep, skipped, speed)
    (folder / "demo.md").write_text(text)
    (folder / "demo.json").write_text(dumps({"keep": keep, "rows": rows, "skipped": skipped,
                                             "accuracy": comparison.to_dict(), "speed": speed.to_dict()}))
    picture = _picture(model, processor, keep, [n for n in PICTURE_METHODS if n in names], folder / "demo.png")
    print(text)
    print(f"picture of the kept tokens: {picture}")
    print(f"wrote {folder / 'demo.md'} and {folder / 'demo.json'} in {time.perf_counter() - start:.0f} s")
    return 0


def _rows(comparison, speed) -> list[dict]:
    """Per method: accuracy and retention, visual tokens per image, and the prefill
    speed-up measured against the unpruned model, with its spread (and its ideal from MACs)."""
    measured = {row.method: row for row in speed.rows[1:]}
    images = speed.settings["batch_size"]
    rows = []
    for run in comparison.runs:
        bench_row = measured.get(run.method)
        prefill = speed.speedups(bench_row)["prefill"] if bench_row is not None else None
        ideal = speed.ratios(bench_row)["ideal_prefill_time"] if bench_row is not None else None
        rows.append({
            "method": run.method,
            "visual_tokens": run.visual_tokens,
            "visual_layer_avg": None if bench_row is None else bench_row.visual_layer_avg / images,
            "accuracy": run.accuracy,
            "retention": run.retention,
            "families": run.families,
            "prefill_speedup": None if prefill is None else prefill.to_dict(),
            "prefill_speedup_text": "-" if prefill is None else prefill.text(),
            "ideal_speedup": 1 / ideal if ideal else None,
        })
    return rows


def _markdown(rows: list[dict], comparison, keep: int | float, skipped: dict[str, str], speed) -> str:
    base = comparison.baseline
    s = speed.settings
    lines = [
        f"unpruned accuracy {100 * base.accuracy:.1f}% on {comparison.examples} questions; every method at keep={keep}",
        "",
        "| method | visual tokens (LLM input / layer avg) | accuracy | retention | prefill speedup | ideal (MACs) |",
        "|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: -(r["retention"] or 0)):
        tokens = "-" if row["visual_tokens"] is None else f"{row['visual_tokens']:.0f}"
        if row["visual_layer_avg"] is not None:
            tokens += f" / {row['visual_layer_avg']:.0f}"
        ideal = "-" if row["ideal_speedup"] is None else f"{row['ideal_speedup']:.2f}x"
        lines.append(f"| {row['method']} | {tokens} | {100 * row['accuracy']:.1f}% | {100 * (row['retention'] or 0):.0f}% | "
                     f"{row['prefill_speedup_text']} | {ideal} |")
    for name, why in skipped.items():
        lines.append(f"| {name} | not run: {why} | | | | |")
    lines += [
        "",
        "visual tokens: per image; in-LLM methods see every token in their first layers, hence the average.",
        f"prefill speedup: median over {s['repeats']} interleaved repetitions (batch of {s['batch_size']}, "
        f"{s['device']}) of the unpruned prefill time over the method's, ± half the spread of those ratios; "
        f"'unclear' where that ± exceeds {READABLE_SPREAD:.0%}: the repetitions disagree too much (a busy "
        "machine) for the median to be read.",
    ]
    return "\n".join(lines) + "\n"


def _picture(model, processor, keep: int | float, names: list[str], path: Path) -> Path:
    """The kept tokens of a few methods on one scene with a question about a small object."""
    from .proving_ground import make_split
    from .viz import overlay
    from .viz.draw import panel_grid, with_key
    from .viz.show import image_geometry, model_inputs, select

    example = next(e for e in make_split("test", 12) if e.family == "attribute")
    inputs = model_inputs(processor, example.image, example.question, model)
    geometry = image_geometry(processor, model, example.image)
    panels = [
        overlay(example.image, s.kept, geometry, merge=s.merge, caption=s.caption, side=288)
        for s in (select(model, inputs, name, keep) for name in names)
    ]
    title = overlay(example.image, range(geometry.num_tokens), geometry, caption=f"Q: {example.question}", side=288)
    half = (len(panels) + 1) // 2
    picture = with_key(panel_grid([[title, *panels[:half]], [title.copy(), *panels[half:]]]))
    picture.save(path, format="PNG")
    return path
