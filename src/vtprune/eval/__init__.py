"""Measuring what pruning costs in accuracy.

* ``proving``: the bundled proving-ground model and its synthetic visual-QA task
  (:func:`~vtprune.eval.proving.evaluate`, :func:`~vtprune.eval.proving.compare_methods`);
* ``campaign``: resumable, shardable runs of many methods and budgets (``vtprune eval``);
* ``runner_hf`` and ``lmms_model``: any checkpoint with its processor, and the lmms-eval
  model ``vtprune`` for real benchmarks.
"""

from .proving import Comparison, Run, compare_methods, default_examples, evaluate

__all__ = ["Comparison", "Run", "compare_methods", "default_examples", "evaluate"]
