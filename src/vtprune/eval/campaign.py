"""An evaluation campaign on the proving ground: the unpruned model and every (method,
budget) on the same questions, resumable and shardable.

* Each variant's answers are appended to ``predictions/<variant>.jsonl`` after every
  batch, so an interrupted run (Ctrl-C) keeps what it did and ``resume=True`` goes on
  from there.
* Under ``torchrun`` / ``accelerate launch`` every process answers its share of the
  questions (every world_size-th one); the answers are gathered once per variant and
  only the first process writes.
* Results: accuracy overall and per question family, retention (pruned / unpruned),
  visual tokens at the LLM input and averaged over layers, the exact configs and the
  versions, as ``results.json`` and ``results.md``, and ``accuracy.png`` (accuracy
  against the budget asked for, per method, with the layer-averaged share beside each point).
"""

from __future__ import annotations

import json
import platform
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..variants import Variant, pruned


def distributed() -> tuple[int, int]:
    """(rank, world size), joining the process group torchrun / accelerate set up."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    if torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _gather(records: list[dict], world: int) -> list[dict]:
    if world == 1:
        return records
    everything: list[Any] = [None] * world
    torch.distributed.all_gather_object(everything, records)
    return [r for part in everything for r in part]


class Campaign:
    """Runs variants over ``examples`` with ``answer(examples) -> (answers, stats)``.

    ``answer`` gets a list of examples and returns their answer words and the pruning
    handle's stats of that batch (``None`` unpruned).
    """

    def __init__(
        self,
        model: Any,
        examples: Sequence[Any],
        answer: Callable[[list], tuple[list[str], Any]],
        out: Path,
        *,
        batch_size: int = 32,
        resume: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.model = model
        self.examples = list(examples)
        self.answer = answer
        self.out = Path(out)
        self.batch_size = batch_size
        self.resume = resume
        self.progress = progress
        self.rank, self.world = distributed()

    def _path(self, variant: Variant) -> Path:
        return self.out / "predictions" / f"{variant.label}.jsonl"

    def _done(self, variant: Variant) -> dict[int, dict]:
        path = self._path(variant)
        if not (self.resume and path.exists()):
            return {}
        records = {}
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by an interruption
                continue
            records[record["index"]] = record
        return records

    def run_variant(self, variant: Variant) -> tuple[list[dict], dict | None]:
        """Answer every question not answered yet; returns all records of the variant
        and the config it ran with (None unpruned)."""
        done = self._done(variant)
        todo = [i for i in range(len(self.examples)) if i not in done][self.rank :: self.world]
        path = self._path(variant)
        if self.rank == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not self.resume:
                path.write_text("")
        with pruned(self.model, variant) as handle:
            config = None if handle is None else handle.config.to_dict()
            steps = -(-len([i for i in range(len(self.examples)) if i not in done]) // (self.batch_size * self.world))
            for step in range(steps):
                chunk = todo[step * self.batch_size : (step + 1) * self.batch_size]
                records = self._answer(chunk) if chunk else []
                records = _gather(records, self.world)
                if self.rank == 0 and records:
                    with path.open("a") as stream:
                        stream.write("".join(json.dumps(r) + "\n" for r in records))
                for record in records:
                    done[record["index"]] = record
                if self.progress is not None:
                    self.progress(len(records))
        return [done[i] for i in sorted(done)], config

    def _answer(self, indices: list[int]) -> list[dict]:
        batch = [self.examples[i] for i in indices]
        answers, stats = self.answer(batch)
        records = []
        for position, (i, example, predicted) in enumerate(zip(indices, batch, answers)):
            records.append({
                "index": i,
                "family": example.family,
                "answer": example.answer,
                "prediction": predicted,
                "correct": predicted.lower() == example.answer.lower(),
                "visual_before": None if stats is None else stats.before[position],
                "visual_llm_input": None if stats is None else stats.llm_input[position],
                "visual_layer_avg": None if stats is None else stats.layer_avg[position],
            })
        return records


def summarize(variant: Variant, records: list[dict], config: dict | None) -> dict:
    """Accuracy overall and per family, and visual token counts, of one variant."""
    by_family: dict[str, list[bool]] = defaultdict(list)
    for record in records:
        by_family[record["family"]].append(record["correct"])
    total = sum(len(v) for v in by_family.values())

    def mean(key: str) -> float | None:
        values = [r[key] for r in records if r[key] is not None]
        return sum(values) / len(values) if values else None

    return {
        "label": variant.label,
        "method": variant.method,
        "keep": variant.keep,
        "config": config,
        "questions": total,
        "accuracy": sum(sum(v) for v in by_family.values()) / total if total else float("nan"),
        "families": {f: sum(v) / len(v) for f, v in sorted(by_family.items())},
        "visual_before": mean("visual_before"),
        "visual_llm_input": mean("visual_llm_input"),
        "visual_layer_avg": mean("visual_layer_avg"),
    }


def with_retention(rows: list[dict]) -> list[dict]:
    """Each row with retention = accuracy / the unpruned row's (first row), overall and per family."""
    base = rows[0]
    for row in rows:
        row["retention"] = row["accuracy"] / base["accuracy"] if base["accuracy"] else None
        row["family_retention"] = {
            f: acc / base["families"][f] for f, acc in row["families"].items() if base["families"].get(f)
        }
    return rows


def versions() -> dict[str, str]:
    import transformers

    import vtprune

    return {
        "vtprune": vtprune.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def markdown(rows: list[dict], title: str) -> str:
    """Accuracy (retention) per family, a row per variant."""
    families = sorted(rows[0]["families"])
    head = "| method | keep | visual tokens (LLM input / layer avg) | overall | " + " | ".join(families) + " |"
    lines = [f"# {title}", "", head, "|" + "---|" * (4 + len(families))]
    for row in rows:
        def cell(acc: float | None, ret: float | None) -> str:
            if acc is None:
                return "-"
            return f"{100 * acc:.1f}" + ("" if row["method"] is None or ret is None else f" ({100 * ret:.0f}%)")

        tokens = "-" if row["visual_llm_input"] is None else f"{row['visual_llm_input']:.0f} / {row['visual_layer_avg']:.0f}"
        cells = [cell(row["families"].get(f), row["family_retention"].get(f)) for f in families]
        keep = "-" if row["keep"] is None else f"{row['keep']:g}"
        lines.append(f"| {row['method'] or 'unpruned'} | {keep} | {tokens} | {cell(row['accuracy'], row['retention'])} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Accuracy in %, retention (pruned / unpruned accuracy) in brackets."]
    return "\n".join(lines) + "\n"


def asked_share(row: dict) -> float | None:
    """The budget a row's user asked for, as a share of the image's tokens: a ratio as
    given, a count over the visual tokens before pruning."""
    keep = row["keep"]
    if isinstance(keep, float):
        return keep
    before = row.get("visual_before")
    return min(1.0, keep / before) if before else None


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Accuracy against the budget asked for, per method; each point is labelled with
    the share of visual tokens the language model's layers saw on average, where that
    differs from the budget (in-LLM methods see every token in their first layers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    base = rows[0]
    ax.axhline(100 * base["accuracy"], color="black", lw=1, ls="--", label="unpruned")
    methods = sorted({r["method"] for r in rows[1:]})
    colors = plt.get_cmap("tab20")(range(len(methods)))
    for color, method in zip(colors, methods):
        mine = sorted((r for r in rows[1:] if r["method"] == method and asked_share(r) is not None), key=asked_share)
        xs = [asked_share(r) for r in mine]
        ax.plot(xs, [100 * r["accuracy"] for r in mine], "o-", color=color, label=method)
        for x, row in zip(xs, mine):
            if row["visual_before"] and row["visual_layer_avg"] is not None:
                average = row["visual_layer_avg"] / row["visual_before"]
                if abs(average - x) > 0.01:
                    ax.annotate(f"avg {average:.2f}", (x, 100 * row["accuracy"]), textcoords="offset points",
                                xytext=(4, -9), fontsize=6, color=color)
    ax.set_xlabel("budget asked for (keep, as a share of each image's visual tokens)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title + "\n'avg': share of visual tokens seen per layer, averaged over the layers", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
