"""Published LLaVA-1.5-7B retention figures that the proving ground's ranking is checked against.

Each figure is the benchmark average relative to the unpruned model (%), at 64 and 128
of 576 visual tokens, copied from one table of one paper. Two tables are used:

* ``VSCAN``: VScan (arXiv 2505.22654), Table 1, LLaVA-1.5-7B, nine benchmarks: FastV,
  SparseVLM, PDrop, VisionZip.
* ``TEN_BENCHMARKS``: the ten-benchmark LLaVA-1.5-7B table of CDPruner's protocol
  (VQAv2, GQA, VizWiz, SQA, TextVQA, POPE, MME, MMB, MMB-CN, MM-Vet) as reprinted in
  CoRePrune's Table I: DART, VisionZip, DivPrune, CDPruner.

Tables differ in benchmarks and in their own VisionZip figure, so figures from the
second are put on the first's scale by their offset from that table's VisionZip
(:func:`merged`): only the order within each table is used.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

# {budget: {method: retention %}}
VSCAN: Mapping[int, Mapping[str, float]] = MappingProxyType({
    128: {"fastv": 85.4, "sparsevlm": 93.7, "pdrop": 96.2, "visionzip": 96.2},
    64: {"fastv": 76.7, "sparsevlm": 87.2, "pdrop": 86.6, "visionzip": 92.7},
})
TEN_BENCHMARKS: Mapping[int, Mapping[str, float]] = MappingProxyType({
    128: {"dart": 97.2, "visionzip": 97.9, "divprune": 97.3, "cdpruner": 97.9},
    64: {"dart": 93.0, "visionzip": 94.9, "divprune": 94.8, "cdpruner": 96.0},
})
SOURCES = {
    "VSCAN": "VScan (arXiv 2505.22654), Table 1, LLaVA-1.5-7B",
    "TEN_BENCHMARKS": "CDPruner's ten-benchmark LLaVA-1.5-7B protocol, as reprinted in CoRePrune, Table I",
}
ANCHOR = "visionzip"
METHODS = ("fastv", "pdrop", "visionzip", "divprune", "sparsevlm", "cdpruner", "dart")
BUDGETS = (64, 128)


def merged(base: Mapping[int, Mapping[str, float]] = VSCAN,
           extra: Mapping[int, Mapping[str, float]] = TEN_BENCHMARKS,
           anchor: str = ANCHOR) -> dict[int, dict[str, float]]:
    """``{budget: {method: %}}``: ``base`` as published, plus each method only in ``extra``
    at ``base[anchor] + (extra[method] - extra[anchor])``."""
    out: dict[int, dict[str, float]] = {}
    for budget, figures in base.items():
        if anchor not in figures or anchor not in extra.get(budget, {}):
            raise ValueError(f"anchor {anchor!r} must be in both tables at budget {budget}")
        row = dict(figures)
        for method, value in extra[budget].items():
            if method not in row:
                row[method] = round(figures[anchor] + value - extra[budget][anchor], 2)
        out[budget] = row
    return out
