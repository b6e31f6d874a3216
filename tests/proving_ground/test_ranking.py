"""The ranking check against published LLaVA-1.5-7B figures."""

import json

import pytest

from vtprune.eval import ranking
from vtprune.eval.published import TEN_BENCHMARKS, VSCAN, merged


def test_ranks_share_ties():
    assert ranking.ranks([10.0, 20.0, 20.0, 30.0]).tolist() == [1.0, 2.5, 2.5, 4.0]


def test_spearman_values():
    assert ranking.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert ranking.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    # with a tie: Pearson of ranks [1, 2.5, 2.5, 4] and [1, 2, 3, 4]
    assert ranking.spearman([5, 7, 7, 9], [1, 2, 3, 4]) == pytest.approx(4.5 / (4.5 * 5) ** 0.5)
    with pytest.raises(ValueError, match="equal length"):
        ranking.spearman([1, 2], [1])


def test_merged_figures_keep_each_tables_order():
    table = merged()
    assert table[128]["fastv"] == 85.4 and table[64]["visionzip"] == 92.7  # as published
    assert table[128]["dart"] == pytest.approx(96.2 - 0.7)
    assert table[64]["cdpruner"] == pytest.approx(92.7 + 1.1)
    for budget in (64, 128):
        extra = sorted(TEN_BENCHMARKS[budget], key=TEN_BENCHMARKS[budget].get)
        assert sorted(extra, key=table[budget].get) == extra
        assert all(table[budget][m] == v for m, v in VSCAN[budget].items())


def test_compare_reads_results_and_reports_missing(tmp_path, capsys):
    published = merged()
    rows = [{"method": None, "keep": None, "retention": 1.0}]
    for budget in (64, 128):
        for method, value in published[budget].items():
            if method != "pdrop":  # not runnable: left out
                rows.append({"method": method, "keep": budget, "retention": value / 100})
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"rows": rows}))
    assert ranking.main([str(path), "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["budgets"]["64"]["spearman"] == pytest.approx(1.0)
    assert report["missing"]["128"] == ["pdrop"]
    assert report["pooled_spearman"] == pytest.approx(1.0)
    assert "not compared: pdrop" in capsys.readouterr().out
