"""The ranking check against published LLaVA-1.5-7B figures."""

import json

import pytest
import torch

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


def _spearman_by_hand(a, b):
    """Pearson correlation of tie-averaged ranks, in plain Python (an independent reference)."""
    def rank(values):
        return [sum(1 for w in values if w < v) + (1 + sum(1 for w in values if w == v)) / 2 for v in values]
    ra, rb = rank(a), rank(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    return cov / (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5


def test_row_spearman_equals_a_plain_computation_row_by_row():
    rows = torch.tensor([[3.0, 1.0, 2.0, 2.0], [1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 1.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
    reference = [10.0, 20.0, 30.0, 30.0]
    got = ranking.row_spearman(rows, reference)
    for row, value in zip(rows.tolist()[:3], got.tolist()[:3]):
        assert value == pytest.approx(_spearman_by_hand(row, reference))
    assert got[1].item() == pytest.approx(4.5 / (5 * 4.5) ** 0.5)  # ranks 1..4 against 1, 2, 3.5, 3.5
    assert torch.isnan(got[3])  # a row of equal values has no ranking
    assert ranking.row_ranks(rows).tolist()[0] == [4.0, 1.0, 2.5, 2.5]


def _run_folder(tmp_path, answers: dict[str, list[bool]]):
    """A results.json and predictions/ as `vtprune eval` writes them."""
    folder = tmp_path / "predictions"
    folder.mkdir()
    rows = []
    for label, correct in answers.items():
        method, _, keep = label.partition("@")
        lines = [json.dumps({"index": i, "correct": c}) for i, c in enumerate(correct)]
        (folder / f"{label}.jsonl").write_text("\n".join(lines) + "\n")
        base = sum(answers["unpruned"])
        rows.append({"label": label, "method": method if keep else None, "keep": int(keep) if keep else None,
                     "retention": sum(correct) / base})
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"rows": rows}))
    return path


def test_bootstrap_intervals_are_tight_for_wide_gaps_and_wide_for_close_ones(tmp_path):
    from vtprune.eval.rank_intervals import bootstrap, read_correct

    questions = 400
    published = merged()
    order = {b: sorted(published[b], key=published[b].get) for b in (64, 128)}
    # Retention rising with the published order. Nested answers 10 questions apart: each
    # method answers what the one below it does and more, so no redraw reverses them.
    # Answers drawn at random 1 question apart: redraws often do.
    generator = torch.Generator().manual_seed(0)
    for gap, expect_low in ((10, 0.9), (1, None)):
        answers = {"unpruned": [True] * questions}
        for budget in (64, 128):
            for rank, method in enumerate(order[budget]):
                right = questions - 100 + gap * rank
                place = torch.arange(questions) if gap > 1 else torch.randperm(questions, generator=generator)
                answers[f"{method}@{budget}"] = (place < right).tolist()
        folder = tmp_path / f"gap{gap}"
        folder.mkdir()
        path = _run_folder(folder, answers)
        results = json.loads(path.read_text())
        report = ranking.compare(ranking.retention_table(results))
        labels = {(int(r["keep"]), r["method"]): r["label"] for r in results["rows"] if r["method"]}
        correct = read_correct(path, answers)
        assert correct["fastv@64"].sum().item() == questions - 100
        intervals = bootstrap(report, correct, labels, rounds=500)
        assert report["budgets"][64]["spearman"] > 0.95  # as ordered (ties among the published 96.2s)
        if expect_low is not None:
            assert intervals[64]["low"] > expect_low and intervals[128]["low"] > expect_low
        else:
            assert intervals[64]["low"] < 0.5  # one question apart: the order is not settled
        assert intervals[64]["low"] <= intervals[64]["median"] <= intervals[64]["high"] <= 1.0
        assert intervals["pooled"]["low"] <= intervals["pooled"]["high"]


def test_the_command_prints_intervals_when_the_answers_are_there(tmp_path, capsys):
    questions = 60
    answers = {"unpruned": [i % 2 == 0 for i in range(questions)]}
    for budget in (64, 128):
        for k, method in enumerate(("fastv", "visionzip", "divprune")):
            answers[f"{method}@{budget}"] = [i % (2 + k) == 0 for i in range(questions)]
    path = _run_folder(tmp_path, answers)
    assert ranking.main([str(path), "--bootstrap", "200", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "95% of 200 redraws of the questions" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["intervals"]) >= {"64", "128", "pooled", "rounds", "level"}
    (tmp_path / "predictions" / "fastv@64.jsonl").unlink()
    assert ranking.main([str(path)]) == 0
    assert "no intervals: no complete predictions/ folder" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        ranking.main([str(path), "--bootstrap", "-1"])
    assert "--bootstrap: expected a number of redraws >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ranking.main([str(tmp_path / "none.json")])
    assert "results: no file" in capsys.readouterr().err
