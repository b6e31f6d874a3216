"""``vtprune demo`` end to end on the bundled proving-ground model (a few questions)."""

from __future__ import annotations

import json

import pytest

from PIL import Image

import vtprune
from vtprune.cli import main


def test_demo_reports_every_method_with_accuracy_speed_and_a_picture(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--questions", "12", "--keep", "0.222", "--out", str(out)]) == 0

    text = (out / "demo.json").read_text()
    report = json.loads(text, parse_constant=lambda name: pytest.fail(f"demo.json is not strict JSON: {name}"))
    names = {m["name"] for m in vtprune.methods()}
    ran = {row["method"] for row in report["rows"]}
    assert ran | set(report["skipped"]) == names and not ran & set(report["skipped"])
    baseline = report["accuracy"]["baseline"]
    assert baseline["method"] == "none" and 0.0 <= baseline["accuracy"] <= 1.0
    for row in report["rows"]:
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["prefill_speedup"]["median"] > 0 and row["ideal_speedup"] > 0
        # Every speed figure carries its spread; the table marks the unreadable ones.
        assert row["prefill_speedup"]["spread"] >= 0 and row["prefill_speedup"]["repetitions"] == 7
        assert row["prefill_speedup_text"].endswith("%" if row["prefill_speedup"]["readable"] else "%)")
        # keep=0.222 of 576 tokens: 128 per image at the LLM input for one-stage
        # pre-LLM methods, more for two-stage ones, all 576 for in-LLM ones.
        assert 128 <= row["visual_tokens"] <= 576, row

    table = (out / "demo.md").read_text()
    assert "| uniform |" in table and "retention" in table and "prefill speedup" in table
    with Image.open(out / "demo.png") as picture:
        picture.verify()
    assert "demo.md" in capsys.readouterr().out
