"""``vtprune eval`` on the proving ground: reports, resuming an interrupted run, and two
processes (torchrun, gloo) giving what one process gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vtprune.cli import main
from vtprune.eval.campaign import Campaign
from vtprune.variants import Variant


def run_eval(out, *extra: str) -> dict:
    assert main(["eval", "--method", "uniform", "fastv", "--keep", "0.25", "--limit", "12", "--batch-size", "4",
                 "--out", str(out), *extra]) == 0
    return json.loads((out / "results.json").read_text())


def comparable(report: dict) -> list[dict]:
    return [{k: row[k] for k in ("label", "accuracy", "families", "visual_llm_input", "visual_layer_avg", "config")}
            for row in report["rows"]]


def test_eval_reports_every_variant_against_the_unpruned_model(tmp_path):
    report = run_eval(tmp_path / "run")
    assert [row["label"] for row in report["rows"]] == ["unpruned", "uniform@0.25", "fastv@0.25"]
    unpruned, uniform, fastv = report["rows"]
    assert unpruned["questions"] == uniform["questions"] == 12
    assert set(unpruned["families"]) == {"attribute", "existence", "counting", "relation", "reading", "global"}
    assert uniform["visual_llm_input"] == 144 and uniform["visual_layer_avg"] == 144
    assert fastv["visual_llm_input"] == 576 and fastv["visual_layer_avg"] < 576
    assert uniform["retention"] == pytest.approx(uniform["accuracy"] / unpruned["accuracy"])
    assert uniform["config"]["method"] == "uniform" and unpruned["config"] is None
    assert report["versions"]["torch"]
    for name in ("results.md", "accuracy.png"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    lines = (tmp_path / "run" / "predictions" / "uniform@0.25.jsonl").read_text().splitlines()
    assert len(lines) == 12


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path):
    complete = comparable(run_eval(tmp_path / "whole"))
    out = tmp_path / "cut"
    run_eval(out)
    # Cut the last variant's answers short, as Ctrl-C after a few batches leaves them,
    # with a line cut in the middle of writing.
    path = out / "predictions" / "fastv@0.25.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:5]) + "\n" + lines[5][:20])
    resumed = run_eval(out, "--resume")
    assert comparable(resumed) == complete
    assert len(path.read_text().splitlines()) >= 12


def test_ctrl_c_keeps_the_answers_given(tmp_path):
    from vtprune import proving_ground
    from vtprune.eval.proving import default_examples

    model, _ = proving_ground.load()
    examples = default_examples(8)
    calls = []

    def answer(batch):
        calls.append(len(batch))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return [e.answer for e in batch], None

    campaign = Campaign(model, examples, answer, tmp_path, batch_size=3)
    with pytest.raises(KeyboardInterrupt):
        campaign.run_variant(Variant(None))
    kept = (tmp_path / "predictions" / "unpruned.jsonl").read_text().splitlines()
    assert len(kept) == 3  # the first batch, written before the interruption
    resumed = Campaign(model, examples, lambda b: ([e.answer for e in b], None), tmp_path, batch_size=3, resume=True)
    records, _ = resumed.run_variant(Variant(None))
    assert [r["index"] for r in records] == list(range(8)) and all(r["correct"] for r in records)


def test_two_processes_give_what_one_gives(tmp_path):
    single = comparable(run_eval(tmp_path / "one"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
         "-m", "vtprune.cli", "eval", "--method", "uniform", "fastv", "--keep", "0.25", "--limit", "12",
         "--batch-size", "4", "--out", str(tmp_path / "two")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert comparable(json.loads((tmp_path / "two" / "results.json").read_text())) == single


def test_model_without_task_is_a_proving_ground_checkpoint(tmp_path):
    from vtprune import proving_ground

    args = ["eval", "--method", "uniform", "--keep", "0.25", "--limit", "6", "--batch-size", "6"]
    assert main([*args, "--model", str(proving_ground.checkpoint_path()), "--out", str(tmp_path / "path")]) == 0
    assert main([*args, "--out", str(tmp_path / "bundled")]) == 0
    by_path, bundled = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("path", "bundled"))
    assert comparable(by_path) == comparable(bundled)
    assert main([*args, "--model", "llava-hf/llava-1.5-7b-hf", "--out", str(tmp_path / "hub")]) == 2
    assert not (tmp_path / "hub").exists()


def test_a_variant_named_that_the_model_cannot_run_stops_before_any_answer(tmp_path, capsys):
    # The bundled model has 4 decoder layers: PDrop's stages cannot average 0.111 of the tokens.
    assert main(["eval", "--method", "pdrop", "uniform", "--keep", "0.111", "--limit", "6", "--out", str(tmp_path)]) == 2
    assert "cannot be met" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists() and not (tmp_path / "predictions").exists()


def test_the_accuracy_plot_is_against_the_budget_asked_for(tmp_path, monkeypatch):
    import matplotlib.axes

    from vtprune.eval.campaign import asked_share, plot

    rows = [
        {"method": None, "keep": None, "accuracy": 0.9, "visual_before": 576, "visual_layer_avg": 576},
        {"method": "fastv", "keep": 0.222, "accuracy": 0.8, "visual_before": 576, "visual_layer_avg": 352},
        {"method": "fastv", "keep": 64, "accuracy": 0.7, "visual_before": 576, "visual_layer_avg": 300},
    ]
    assert asked_share(rows[1]) == 0.222 and asked_share(rows[2]) == 64 / 576
    drawn, notes = [], []
    original_plot, original_note = matplotlib.axes.Axes.plot, matplotlib.axes.Axes.annotate
    monkeypatch.setattr(matplotlib.axes.Axes, "plot", lambda ax, x, *a, **k: drawn.append(list(x)) or original_plot(ax, x, *a, **k))
    monkeypatch.setattr(matplotlib.axes.Axes, "annotate", lambda ax, text, *a, **k: notes.append(text) or original_note(ax, text, *a, **k))
    plot(rows, tmp_path / "accuracy.png", "t")
    assert drawn == [[64 / 576, 0.222]]  # the asked budgets, not the layer-averaged shares
    assert notes == [f"avg {300 / 576:.2f}", f"avg {352 / 576:.2f}"]
    assert (tmp_path / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
