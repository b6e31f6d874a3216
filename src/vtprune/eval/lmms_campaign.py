"""Real benchmarks through lmms-eval: a checkpoint unpruned and pruned by each (method,
budget), on the same tasks, in one process (the model is loaded once; pruning is put on
and taken off between variants).

Needs lmms-eval (``pip install vtprune[lmms]``); tasks come from lmms-eval's registry,
or from ``include_path`` for local task definitions.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..variants import Variant, pruned
from . import lmms_plugin

INSTALL_HINT = "lmms-eval is not installed: pip install 'vtprune[lmms]' (or pip install lmms-eval)"


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """A task's metric values, without aliases, standard errors and non-numbers."""
    return {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and "_stderr" not in key
    }


def run_lmms(
    model_id: str,
    tasks: Sequence[str],
    variants: Sequence[Variant],
    *,
    batch_size: int = 1,
    limit: int | float | None = None,
    include_path: str | None = None,
    device: str | None = None,
    dtype: str = "auto",
) -> list[dict]:
    """One row per variant (the unpruned model first): each task's metrics and their
    retention (pruned / unpruned)."""
    # Looked up on the module at call time, so the check sees the environment as it is now.
    if not lmms_plugin.lmms_eval_available():
        raise RuntimeError(INSTALL_HINT)
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    from .lmms_model import VtpruneLMM

    lmm = VtpruneLMM(pretrained=model_id, device=device, dtype=dtype, batch_size=batch_size)
    manager = TaskManager(include_path=include_path) if include_path else TaskManager()
    rows = []
    for variant in [Variant(None), *[v for v in variants if v.method is not None]]:
        with pruned(lmm.vlm.model, variant):
            out = simple_evaluate(model=lmm, tasks=list(tasks), batch_size=batch_size, limit=limit,
                                  task_manager=manager, log_samples=False)
        results = {task: _numbers(metrics) for task, metrics in (out or {}).get("results", {}).items()}
        rows.append({"label": variant.label, "method": variant.method, "keep": variant.keep, "tasks": results})
    base = rows[0]["tasks"]
    for row in rows:
        row["retention"] = {
            task: {k: v / base[task][k] for k, v in metrics.items() if base.get(task, {}).get(k)}
            for task, metrics in row["tasks"].items()
        }
    return rows


def markdown(rows: list[dict], model_id: str) -> str:
    metrics = sorted({(t, m) for row in rows for t, ms in row["tasks"].items() for m in ms})
    head = "| method | keep | " + " | ".join(f"{t} {m}" for t, m in metrics) + " |"
    lines = [f"# {model_id} through lmms-eval", "", head, "|" + "---|" * (2 + len(metrics))]
    for row in rows:
        cells = []
        for task, metric in metrics:
            value = row["tasks"].get(task, {}).get(metric)
            retention = row["retention"].get(task, {}).get(metric)
            text = "-" if value is None else f"{value:.4g}"
            if row["method"] is not None and retention is not None:
                text += f" ({100 * retention:.0f}%)"
            cells.append(text)
        keep = "-" if row["keep"] is None else f"{row['keep']:g}"
        lines.append(f"| {row['method'] or 'unpruned'} | {keep} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nRetention (pruned / unpruned) in brackets.\n"
