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


def row_ranks(x: torch.Tensor) -> torch.Tensor:
    """(R, M) -> the ranks from 1 within each row, ties sharing their mean rank."""
    ordinal = torch.empty_like(x, dtype=torch.float64)
    ordinal.scatter_(1, x.argsort(dim=1), torch.arange(1, x.shape[1] + 1, dtype=torch.float64).expand(x.shape))
    same = (x[:, :, None] == x[:, None, :]).double()
    return (same @ ordinal[..., None]).squeeze(-1) / same.sum(-1)


def ranks(values: Sequence[float]) -> torch.Tensor:
    """Ranks from 1, ties sharing their mean rank."""
    return row_ranks(torch.tensor(values, dtype=torch.float64)[None])[0]


def row_spearman(a: torch.Tensor, b: Sequence[float]) -> torch.Tensor:
    """(R, M) measured rows against one (M,) reference -> (R,) Spearman's rho (NaN for a
    row of equal values)."""
    ra = row_ranks(a.double())
    rb = ranks(b)
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean()
    denominator = ra.norm(dim=1) * rb.norm()
    return torch.where(denominator > 0, (ra @ rb) / denominator, torch.tensor(float("nan"), dtype=torch.float64))


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of the (tie-averaged) ranks."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"spearman needs two sequences of equal length >= 2; got {len(a)} and {len(b)}")
    return row_spearman(torch.tensor(a, dtype=torch.float64)[None], b)[0].item()


def compared_rows(results: Mapping) -> list[Mapping]:
    """The rows of a ``vtprune eval`` results dict that the ranking compares."""
    return [row for row in results["rows"] if row.get("method") in METHODS and row.get("keep") in BUDGETS]


def retention_table(results: Mapping) -> dict[int, dict[str, float]]:
    """``{budget: {method: retention %}}`` from a ``vtprune eval`` results dict."""
    out: dict[int, dict[str, float]] = {}
    for row in compared_rows(results):
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


def _interval(report: Mapping, key) -> str:
    part = report.get("intervals", {}).get(key)
    if part is None:
        return ""
    share = round(100 * report["intervals"]["level"])
    return (f" ({share}% of {report['intervals']['rounds']} redraws of the questions: "
            f"{part['low']:.2f} to {part['high']:.2f})")


def format_report(report: Mapping) -> str:
    lines = []
    for budget, part in report["budgets"].items():
        lines.append(f"keep {budget} of 576: Spearman {part['spearman']:.3f}{_interval(report, budget)}")
        rows = sorted(zip(part["methods"], part["measured"], part["published"]), key=lambda r: -r[2])
        lines += [f"  {m:<10} proving ground {v:5.1f}%   LLaVA-1.5-7B {p:5.1f}%" for m, v, p in rows]
        if report["missing"][budget]:
            lines.append(f"  not compared: {', '.join(report['missing'][budget])}")
    if "intervals_missing" in report:
        lines.append(f"(no intervals: {report['intervals_missing']})")
    lines.append(f"pooled over both budgets: Spearman {report['pooled_spearman']:.3f}{_interval(report, 'pooled')}")
    return "\n".join(lines)


def add_intervals(report: dict, results: Mapping, results_path: Path, rounds: int) -> None:
    """Put the bootstrap intervals (:mod:`.rank_intervals`) in ``report`` when the run's
    answers are beside its ``results.json``; otherwise say why not."""
    from .rank_intervals import UNPRUNED, bootstrap, read_correct

    labels = {(int(row["keep"]), row["method"]): row.get("label") for row in compared_rows(results)}
    unpruned = [row.get("label") for row in results["rows"] if row.get("method") is None]
    named = unpruned and None not in (*unpruned, *labels.values())
    correct = read_correct(results_path, [*unpruned[:1], *labels.values()]) if named else None
    if correct is None:
        report["intervals_missing"] = f"no complete predictions/ folder beside {results_path}"
        return
    correct[UNPRUNED] = correct.pop(unpruned[0])
    report["intervals"] = bootstrap(report, correct, labels, rounds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vtprune.eval.ranking", description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="results.json of a `vtprune eval` run at --keep 64 128")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--bootstrap", type=int, default=2000, metavar="ROUNDS",
                        help="redraws of the questions for the 95%% intervals, read from the run's "
                             "predictions/ folder (default 2000; 0: none)")
    args = parser.parse_args(argv)
    if args.bootstrap < 0:
        parser.error(f"--bootstrap: expected a number of redraws >= 0; got {args.bootstrap}")
    if not args.results.is_file():
        parser.error(f"results: no file {args.results}; give the results.json of a `vtprune eval` run")
    results = json.loads(args.results.read_text())
    report = compare(retention_table(results))
    if args.bootstrap:
        add_intervals(report, results, args.results, args.bootstrap)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
