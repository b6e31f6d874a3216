"""Accuracy on the proving ground: unpruned, and per pruning method and budget.

``evaluate`` runs batched greedy generation over proving-ground examples and scores
the first word of each answer (:func:`first_word`) by exact match.
``compare_methods`` runs it once unpruned and once per ``(method, keep)`` pair, each
pruned run inside :func:`vtprune.variants.pruned`, and returns a :class:`Comparison`
(method x budget x family, accuracy and retention = pruned accuracy / unpruned
accuracy). Any registered method name works; options beyond ``keep`` go in ``options``.

Typical use (the bundled model, offline, a few minutes on a CPU)::

    from vtprune import proving_ground
    from vtprune.eval.proving import compare_methods, default_examples

    model, processor = proving_ground.load()
    table = compare_methods(model, processor, default_examples(),
                            [("random", 0.111), ("uniform", 0.111), ("uniform", 0.222)])
    print(table.format())
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from ..proving_ground import FAMILIES, Example, make_split, prompt

DEFAULT_EXAMPLES = 300  # 50 questions per family
DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_NEW_TOKENS = 3  # one answer word (one token for the bundled model) and EOS


def default_examples(size: int = DEFAULT_EXAMPLES, corruption: str | None = None) -> list[Example]:
    """The default evaluation subset: the first ``size`` examples of the test split."""
    return make_split("test", size, corruption=corruption)


def first_word(text: str) -> str:
    """The answer word of a generated text: its first run of letters and digits, lower-cased
    (so punctuation and a trailing special token such as ``</s>`` never count)."""
    match = re.search(r"[^\W_]+", text)
    return match.group(0).lower() if match else ""


def _batches(items: Sequence[Example], size: int) -> Iterable[Sequence[Example]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    processor: Any,
    examples: Sequence[Example],
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> dict[str, Any]:
    """Accuracy of ``model`` on ``examples`` with greedy decoding, overall and per family.

    Prompts are LLaVA-1.5's (``"USER: <image>\\n{question} ASSISTANT:"``), batched with
    left padding (the processor's tokenizer is switched to left padding). If
    ``model`` is pruned (``vtprune.prune``), the visual tokens the language model
    saw are recorded as well.

    Returns a dict:
        accuracy:       share of examples answered right
        families:       {family: accuracy} for the families present, in FAMILIES order
        counts:         {family: number of examples}
        visual_tokens:  mean visual tokens per example at the LLM input (None unpruned)
        predictions:    the answer word read from each generation, in example order
        seconds:        wall time of the evaluation
    """
    from .. import active_handle

    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"batch_size and max_new_tokens must be >= 1; got {batch_size}, {max_new_tokens}")
    processor.tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    eos = processor.tokenizer.eos_token_id
    pad = processor.tokenizer.pad_token_id if processor.tokenizer.pad_token_id is not None else eos

    start = time.perf_counter()
    predictions: list[str] = []
    visual_tokens: list[int] = []
    for batch in _batches(list(examples), batch_size):
        inputs = processor(
            images=[e.image for e in batch], text=[prompt(e.question) for e in batch],
            return_tensors="pt", padding=True,
        ).to(device)
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
        out = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos, pad_token_id=pad,
        )
        texts = processor.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        predictions.extend(first_word(t) for t in texts)
        handle = active_handle(model)
        if handle is not None and handle.stats is not None:
            visual_tokens.extend(handle.stats.llm_input)

    hits: dict[str, list[bool]] = defaultdict(list)
    for example, predicted in zip(examples, predictions):
        hits[example.family].append(predicted == example.answer.lower())
    total = sum(len(h) for h in hits.values())
    families = [f for f in FAMILIES if f in hits] + sorted(set(hits) - set(FAMILIES))
    return {
        "accuracy": sum(sum(h) for h in hits.values()) / total if total else float("nan"),
        "families": {f: sum(hits[f]) / len(hits[f]) for f in families},
        "counts": {f: len(hits[f]) for f in families},
        "visual_tokens": sum(visual_tokens) / len(visual_tokens) if visual_tokens else None,
        "predictions": predictions,
        "seconds": time.perf_counter() - start,
    }


@dataclass
class Run:
    """One evaluation: a method at a budget (``method="none"`` is the unpruned model)."""

    method: str
    keep: int | float | None
    accuracy: float
    families: dict[str, float]
    visual_tokens: float | None
    seconds: float
    retention: float | None = None  # accuracy / unpruned accuracy
    family_retention: dict[str, float] = field(default_factory=dict)


@dataclass
class Comparison:
    """Results of :func:`compare_methods`: the unpruned run and one run per (method, keep)."""

    baseline: Run
    runs: list[Run]
    examples: int

    def rows(self) -> list[dict[str, Any]]:
        """Long format: one row per (method, keep, family), ``family="overall"`` included."""
        out = []
        for run in [self.baseline, *self.runs]:
            scores = {"overall": run.accuracy, **run.families}
            for family, accuracy in scores.items():
                retention = run.retention if family == "overall" else run.family_retention.get(family)
                out.append({
                    "method": run.method, "keep": run.keep, "family": family, "accuracy": accuracy,
                    "retention": retention, "visual_tokens": run.visual_tokens,
                })
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"examples": self.examples, "baseline": asdict(self.baseline), "runs": [asdict(r) for r in self.runs]}

    def format(self, retention: bool = False) -> str:
        """A text table: a row per run, a column per family; accuracy or retention."""
        families = list(self.baseline.families)
        head = f"{'method':<14}{'keep':>7}{'tokens':>8}  {'overall':>8}" + "".join(f"{f[:9]:>10}" for f in families)
        lines = [head, "-" * len(head)]
        for run in [self.baseline, *self.runs]:
            if retention and run is not self.baseline:
                overall, per = run.retention, run.family_retention
            else:
                overall, per = run.accuracy, run.families
            keep = "-" if run.keep is None else f"{run.keep:g}"
            tokens = "-" if run.visual_tokens is None else f"{run.visual_tokens:.0f}"
            cells = "".join(f"{_pct(per.get(f)):>10}" for f in families)
            lines.append(f"{run.method:<14}{keep:>7}{tokens:>8}  {_pct(overall):>8}{cells}")
        what = "retention (pruned / unpruned accuracy)" if retention else "accuracy"
        lines.append(f"{what} on {self.examples} questions; tokens = visual tokens per image at the LLM input")
        return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _ratio(pruned: float, unpruned: float) -> float | None:
    return pruned / unpruned if unpruned > 0 else None


def compare_methods(
    model: nn.Module,
    processor: Any,
    examples: Sequence[Example],
    methods: Sequence[tuple[str, int | float]],
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    options: dict[str, dict[str, Any]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Comparison:
    """Evaluate ``model`` unpruned, then pruned with each ``(method_name, keep)``.

    methods:  pairs of a registered method name (see ``vtprune.methods()``) and a
              budget ``keep`` (int tokens per image or float share, as in ``prune``).
    options:  extra config fields per method name, e.g. ``{"random": {"seed": 1}}``.
    progress: called with a one-line summary after each run (``print`` works).

    The model is left unpruned afterwards, also when a run fails. Pruning that is
    already active on ``model`` is an error, so the baseline is really unpruned.
    """
    from .. import active_handle
    from ..variants import Variant, pruned

    if active_handle(model) is not None:
        raise ValueError("model is already pruned; call handle.remove() before compare_methods")
    options = options or {}
    examples = list(examples)
    base = evaluate(model, processor, examples, batch_size, max_new_tokens)
    baseline = Run("none", None, base["accuracy"], base["families"], None, base["seconds"])
    if progress:
        progress(f"unpruned: {100 * base['accuracy']:.1f}% ({base['seconds']:.1f} s)")

    runs = []
    for name, keep in methods:
        with pruned(model, Variant(name, keep, options.get(name, {}))):
            result = evaluate(model, processor, examples, batch_size, max_new_tokens)
        run = Run(
            name, keep, result["accuracy"], result["families"], result["visual_tokens"], result["seconds"],
            retention=_ratio(result["accuracy"], base["accuracy"]),
            family_retention={
                f: r for f, acc in result["families"].items()
                if (r := _ratio(acc, base["families"].get(f, 0.0))) is not None
            },
        )
        runs.append(run)
        if progress:
            progress(f"{name} keep={keep:g}: {100 * run.accuracy:.1f}% ({run.seconds:.1f} s)")
    return Comparison(baseline, runs, len(examples))
