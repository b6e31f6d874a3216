"""``vtprune eval`` argument handling that needs no model."""

from __future__ import annotations

import pytest

from vtprune.cli import main
from vtprune.eval import lmms_plugin


def test_without_lmms_eval_the_message_says_how_to_get_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(lmms_plugin, "lmms_eval_available", lambda: False)
    assert main(["eval", "--model", "some/model", "--task", "pope", "--out", str(tmp_path)]) == 2
    assert "pip install 'vtprune[lmms]'" in capsys.readouterr().err


def test_task_needs_a_model(tmp_path, capsys):
    assert main(["eval", "--task", "pope", "--out", str(tmp_path)]) == 2
    assert "--task needs --model" in capsys.readouterr().err
