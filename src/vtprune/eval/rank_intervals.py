"""How sure a proving-ground ranking is: a bootstrap over the questions.

A retention measured on a few hundred questions moves by a point or more when other
questions are drawn, and the published LLaVA-1.5-7B figures of five of the seven
methods at 128 tokens lie within 0.7 points of each other, so a Spearman coefficient
alone says little. :func:`bootstrap` draws the questions again with replacement, the
same draw for the unpruned run and for every method (they answered the same
questions, so their differences are measured on paired answers), recomputes each
retention and the coefficients, and reports the central share of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping

import torch

from .ranking import row_spearman

UNPRUNED = "unpruned"


def _answers(path: Path) -> dict[int, bool]:
    answers = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by an interrupted run
            continue
        answers[int(record["index"])] = bool(record["correct"])
    return answers


def read_correct(results_path: Path, labels: Iterable[str]) -> dict[str, torch.Tensor] | None:
    """``{label: (Q,) bool}`` from the ``predictions/<label>.jsonl`` files beside a
    ``results.json``, in question order; None when a file is missing or the runs did
    not answer the same questions."""
    folder = Path(results_path).parent / "predictions"
    answers = {}
    for label in labels:
        path = folder / f"{label}.jsonl"
        if not path.is_file():
            return None
        answers[label] = _answers(path)
    questions = {tuple(sorted(a)) for a in answers.values()}
    if len(questions) != 1:
        return None
    order = sorted(next(iter(answers.values())))
    return {label: torch.tensor([a[i] for i in order]) for label, a in answers.items()}


def bootstrap(
    report: Mapping,
    correct: Mapping[str, torch.Tensor],
    labels: Mapping[tuple[int, str], str],
    rounds: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """``{budget: {low, median, high}, "pooled": {...}}``: the central ``level`` of
    Spearman's rho over ``rounds`` redraws of the questions.

    report:  :func:`.ranking.compare`'s report (the methods and published figures used).
    correct: per run label, whether each question was answered right; ``"unpruned"``
             included.
    labels:  ``(budget, method)`` -> that run's label.
    """
    if rounds < 1 or not 0 < level < 1:
        raise ValueError(f"rounds must be >= 1 and level in (0, 1); got {rounds}, {level}")
    questions = len(correct[UNPRUNED])
    draw = torch.randint(questions, (rounds, questions), generator=torch.Generator().manual_seed(seed))
    base = correct[UNPRUNED][draw].double().mean(1, keepdim=True)
    tails = torch.tensor([(1 - level) / 2, 0.5, (1 + level) / 2], dtype=torch.float64)

    def central(rho: torch.Tensor) -> dict[str, float]:
        low, median, high = torch.nanquantile(rho, tails).tolist()
        return {"low": low, "median": median, "high": high}

    out: dict = {"rounds": rounds, "level": level}
    pooled, pooled_published = [], []
    for budget, part in report["budgets"].items():
        if len(part["methods"]) < 2:
            continue
        accuracy = torch.stack([correct[labels[(int(budget), m)]][draw].double().mean(1) for m in part["methods"]], 1)
        retention = accuracy / base
        out[budget] = central(row_spearman(retention, part["published"]))
        pooled.append(retention)
        pooled_published += part["published"]
    if len(pooled_published) >= 2:
        out["pooled"] = central(row_spearman(torch.cat(pooled, 1), pooled_published))
    return out
