"""Measuring what pruning costs in accuracy.

* ``proving``: the bundled proving-ground model and its synthetic visual-QA task
  (:func:`~vtprune.eval.proving.evaluate`, :func:`~vtprune.eval.proving.compare_methods`);
* ``campaign``: resumable, shardable runs of many methods and budgets (``vtprune eval``);
* ``runner_hf`` and ``lmms_model``: any checkpoint with its processor, and the lmms-eval
  model ``vtprune`` for real benchmarks.

The names below are imported on first use (``vtprune eval --help`` needs none of them).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Comparison", "Run", "compare_methods", "default_examples", "evaluate"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'vtprune.eval' has no attribute {name!r}")
    from . import proving

    return getattr(proving, name)
