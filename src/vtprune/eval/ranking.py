"""Does the proving ground rank pruning methods as LLaVA-1.5-7B does?

``python -m vtprune.eval.ranking RESULTS.json`` reads the ``results.json`` of a
``vtprune eval`` run (methods at keep 64 and 128) and prints, per budget and pooled over
both, the proving ground's retention next to the published one (:mod:`.published`) and
Spearman's rank correlation (ties get their mean rank). A method the run could not
evaluate (``skipped``, e.g. PDrop on a model too shallow for its layers) is listed and
left out of the correlation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Mapping, Sequence

import torch

from .published import BUDGETS, METHODS, merged


def ranks(values: Sequence[float]) -> torch.Tensor:
    """Ranks from 1, ties sharing their mean rank."""
    x = torch.tensor(values, dtype=torch.float64)
    order = x.argsort()
    ordinal = torch.empty_like(x)
    ordinal[order] = torch.arange(1, len(x) + 1, dtype=torch.float64)
    same = x[:, None] == x[None, :]
    return (same.double() @ ordinal) / same.sum(1)


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of the (tie-averaged) ranks."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"spearman needs two sequences of equal length >= 2; got {len(a)} and {len(b)}")
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = (ra.norm() * rb.norm()).item()
    return float("nan") if denominator == 0 else (ra @ rb).item() / denominator


def retention_table(results: Mapping) -> dict[int, dict[str, float]]:
    """``{budget: {method: retention %}}`` from a ``vtprune eval`` results dict."""
    out: dict[int, dict[str, float]] = {}
    for row in results["rows"]:
        if row.get("method") in METHODS and row.get("keep") in BUDGETS:
            out.setdefault(int(row["keep"]), {})[row["method"]] = 100 * row["retention"]
    return out


def compare(measured: Mapping[int, Mapping[str, float]],
            published: Mapping[int, Mapping[str, float]] | None = None) -> dict:
    """Per budget and pooled: the pairs compared, Spearman's rho, and the methods missing."""
    published = merged() if published is None else published
    report: dict = {"budgets": {}, "missing": {}}
    pooled_m, pooled_p = [], []
    for budget in BUDGETS:
        both = [m for m in METHODS if m in measured.get(budget, {}) and m in published.get(budget, {})]
        report["missing"][budget] = [m for m in METHODS if m not in both]
        m_vals = [measured[budget][m] for m in both]
        p_vals = [published[budget][m] for m in both]
        pooled_m += m_vals
        pooled_p += p_vals
        report["budgets"][budget] = {
            "methods": both, "measured": m_vals, "published": p_vals,
            "spearman": spearman(m_vals, p_vals) if len(both) >= 2 else float("nan"),
        }
    report["pooled_spearman"] = spearman(pooled_m, pooled_p) if len(pooled_m) >= 2 else float("nan")
    return report


def format_report(report: Mapping) -> str:
    lines = []
    for budget, part in report["budgets"].items():
        lines.append(f"keep {budget} of 576: Spearman {part['spearman']:.3f}")
        rows = sorted(zip(part["methods"], part["measured"], part["published"]), key=lambda r: -r[2])
        lines += [f"  {m:<10} proving ground {v:5.1f}%   LLaVA-1.5-7B {p:5.1f}%" for m, v, p in rows]
        if report["missing"][budget]:
            lines.append(f"  not compared: {', '.join(report['missing'][budget])}")
    lines.append(f"pooled over both budgets: Spearman {report['pooled_spearman']:.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vtprune.eval.ranking", description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="results.json of a `vtprune eval` run at --keep 64 128")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    report = compare(retention_table(json.loads(args.results.read_text())))
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
