"""The speed suite's outputs on the tiny architectures (one repetition; the schema only,
never a timing), its refusals before any model is built, and the GPU script's path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vtprune.bench.suite import SHAPES, run_suite, settings_for
from vtprune.bench.suite_report import HEADER, markdown, throughput_markdown, write

ROOT = Path(__file__).resolve().parents[1]
SUITE_ROW = {"label", "method", "keep", "visual_llm_input", "visual_layer_avg", "prefill_speedup", "ttft_speedup",
             "decode_throughput", "ideal_speedup", "ideal_llm_speedup", "prefill_vs_ideal", "ttft_vs_ideal",
             "kv_cache", "selection_share"}
FIGURE = {"median", "spread", "repetitions", "readable"}


@pytest.fixture(scope="module")
def tiny_suite():
    settings = settings_for("tiny", methods=("uniform", "fastv", "pdrop"), throughput_batches=(2,))
    return run_suite(settings)


def test_suite_schema_on_the_tiny_shapes(tiny_suite, tmp_path):
    result = tiny_suite
    assert list(result.shapes) == list(SHAPES)
    for name, bench in result.shapes.items():
        budgets = SHAPES[name].budgets_for("tiny")
        assert budgets == (0.111, 0.222, 0.333)
        ran = [r.label for r in bench.rows]
        assert ran[0] == "unpruned"
        assert {f"uniform@{k}" for k in budgets} | {f"fastv@{k}" for k in budgets} <= set(ran)
        # pdrop's default layers do not fit 4 layers at these budgets: reported, not run
        assert any(label.startswith("pdrop@") for label in bench.skipped)
        assert all(len(row.prefill_s) == 1 for row in bench.rows)

    written = write(result, tmp_path)
    assert [p.name for p in written] == ["suite.md", "suite.json", "suite.png"]
    assert (tmp_path / "suite.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "suite.json").read_text()
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    assert set(data) == {"settings", "shapes", "worst", "throughput"}
    assert data["settings"]["preset"] == "tiny" and data["settings"]["repeats"] == 1
    for name, shape in data["shapes"].items():
        assert set(shape) == {"suite", "bench"}
        for row in shape["suite"]:
            assert set(row) == SUITE_ROW
            for key in ("prefill_speedup", "ttft_speedup", "decode_throughput"):
                assert set(row[key]) == FIGURE and row[key]["repetitions"] == 1
            assert row["ideal_speedup"] > 1 and 0 < row["kv_cache"] < 1
            assert row["prefill_vs_ideal"] == pytest.approx(row["prefill_speedup"]["median"] / row["ideal_speedup"])
        assert shape["bench"]["rows"][0]["label"] == "unpruned"
        assert shape["bench"]["settings"]["attention"] == "sdpa"
    assert set(data["worst"]) == {"shape", "label", "prefill_vs_ideal"}

    throughput = data["throughput"]
    assert throughput["settings"]["batches"] == [2]
    labels = [row["label"] for row in throughput["rows"]]
    assert labels == ["unpruned", "uniform@0.222", "fastv@0.222"]
    for row in throughput["rows"]:
        assert row["batch"] == 2 and set(row["requests_per_s"]) == FIGURE
        assert set(row["ratios"]) == {"requests_per_s", "kv_cache", "peak_memory"}
    assert throughput["rows"][1]["ratios"]["kv_cache"] < 1  # fewer tokens cached

    table = markdown(result)
    assert "| " + " | ".join(HEADER) + " |" in table
    assert "not run:" in table and "Batch throughput" in table and "Lowest measured / ideal" in table


def test_throughput_warm_up_rounds_are_run_and_not_timed():
    """Every variant runs ``warmup`` untimed rounds at each batch size before the timed
    ones: the generate calls are counted on the real tiny model."""
    import torch

    from vtprune.bench.inputs import load_target
    from vtprune.bench.throughput import run_throughput
    from vtprune.variants import Variant

    target = load_target(model_id=None, arch="tiny-llava", layers=4, batch_size=1, text_tokens=8, grid=(8, 8),
                         dtype=torch.float32, device=torch.device("cpu"))
    generate, calls = target.model.generate, []
    target.model.generate = lambda **kwargs: calls.append(1) or generate(**kwargs)
    result = run_throughput(target, [Variant("uniform", 0.5)], [2], text_tokens=8, grid=(8, 8),
                            repeats=2, warmup=1, decode_tokens=1)
    assert len(calls) == 2 * 3  # (unpruned, uniform) x (1 untimed + 2 timed rounds)
    assert [len(row.seconds) for row in result.rows[2]] == [2, 2]
    assert result.settings["warmup"] == 1
    assert "after 1 untimed round." in "\n".join(throughput_markdown(result))


def _refused(capsys, argv: list[str]) -> str:
    from vtprune.cli import main

    with pytest.raises(SystemExit) as stop:
        main(argv)
    return str(stop.value.code) + capsys.readouterr().err


ACCEPTS = "accepts --method, --layers"


@pytest.mark.parametrize("argv, option, accepted", [
    (["--suite", "cpu", "--arch", "llava-1.5-7b"], "--arch", ACCEPTS),
    (["--suite", "cpu", "--model", "x/y"], "--model", ACCEPTS),
    (["--suite", "full", "--keep", "64"], "--keep", ACCEPTS),
    (["--suite", "cpu", "--batch", "8"], "--batch", ACCEPTS),
    (["--suite", "cpu", "--engine", "vllm"], "--engine", ACCEPTS),
    (["--suite", "cpu", "--throughput", "0", "8"], "--throughput", "batch sizes >= 1, or 0 alone"),
    (["--throughput", "8"], "--throughput", "only with --suite (cpu, full, tiny)"),
    (["--suite", "fast"], "--suite", "'cpu', 'full', 'tiny'"),
])
def test_bad_suite_options_are_one_line_before_any_model(argv, option, accepted, capsys, monkeypatch):
    import vtprune.bench.inputs as inputs

    monkeypatch.setattr(inputs, "load_target", lambda **_: pytest.fail("a model was built"))
    message = _refused(capsys, ["bench", *argv])
    assert option in message and len(message.strip().splitlines()) == 1
    assert accepted in message


def test_an_unknown_suite_method_is_refused_before_any_model(capsys, monkeypatch):
    import vtprune.bench.inputs as inputs
    from vtprune.cli import main

    monkeypatch.setattr(inputs, "load_target", lambda **_: pytest.fail("a model was built"))
    assert main(["bench", "--suite", "cpu", "--method", "nosuch"]) == 2
    assert "--method" in capsys.readouterr().err


def test_gpu_script_runs_the_tiny_shapes(tmp_path):
    """scripts/bench-gpu's path, on the tiny architectures (the full run needs a GPU)."""
    env = {**os.environ, "PYTHON": sys.executable, "VTPRUNE_WHEELS": str(tmp_path / "none")}
    env.pop("OUT", None)
    done = subprocess.run([str(ROOT / "scripts" / "bench-gpu"), "--tiny", "--method", "uniform", "--throughput", "2",
                           "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "uniform@0.111" in done.stdout
    data = json.loads((tmp_path / "out" / "suite.json").read_text())
    assert data["settings"]["preset"] == "tiny" and set(data["shapes"]) == set(SHAPES)
    assert (tmp_path / "out" / "suite.md").is_file()
