"""The lmms-eval wrapper end to end: lmms-eval's own command line finds ``--model
vtprune`` through the entry point and evaluates a local task (no hub access)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("lmms_eval")

from viz.checkpoints import save_tiny_llava  # noqa: E402

TASK = """task: vtprune_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: {output_type}
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: {target}
{extra}
metric_list:
  - metric: {metric}
    aggregation: mean
    higher_is_better: true
"""

UTILS = '''from PIL import Image


def doc_to_visual(doc):
    return [Image.open(doc["image"]).convert("RGB")]


def doc_to_text(doc):
    return doc["question"]
'''


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmms")
    save_tiny_llava(root / "model")
    rows = []
    for i in range(6):
        path = root / f"image{i}.png"
        Image.fromarray((np.random.RandomState(i).rand(32, 32, 3) * 255).astype("uint8")).save(path)
        rows.append({"question": f"w{10 + i} w{20 + i}", "answer": f"w{30 + i}", "image": str(path)})
    (root / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def run_lmms_eval(root: Path, model_args: str, output_type: str, metric: str, extra: str) -> dict:
    task = root / f"task_{output_type}"
    task.mkdir(exist_ok=True)
    (task / "utils.py").write_text(UTILS)
    (task / "local.yaml").write_text(
        TASK.format(data=root / "data.jsonl", output_type=output_type, metric=metric, extra=extra,
                    target="answer" if output_type == "generate_until" else 0)
    )
    out = root / f"out_{output_type}_{abs(hash(model_args))}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "lmms_eval", "eval", "--model", "vtprune", "--model_args", model_args,
         "--tasks", "vtprune_local", "--include_path", str(task), "--batch_size", "2",
         "--output_path", str(out), "--log_samples"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    (results,) = out.rglob("*_results.json")
    (samples,) = out.rglob("*_samples_vtprune_local.jsonl")
    return {"results": json.loads(results.read_text()), "samples": [json.loads(l) for l in samples.read_text().splitlines()]}


def test_generate_until_through_lmms_eval(workspace):
    pruned = run_lmms_eval(workspace, f"pretrained={workspace / 'model'},method=uniform,keep=0.25",
                           "generate_until", "exact_match", 'generation_kwargs:\n  max_new_tokens: 3\n  until: ["\\n"]')
    assert "exact_match,none" in pruned["results"]["results"]["vtprune_local"]
    assert len(pruned["samples"]) == 6 and all(s["filtered_resps"].strip() for s in pruned["samples"])
    assert "method=uniform" in json.dumps(pruned["results"]["config"])


def test_multiple_choice_loglikelihood_through_lmms_eval(workspace):
    """Multiple choice scores each choice by its log-likelihood (``loglikelihood``)."""
    scores = {}
    choices = "doc_to_choice: ['w30', 'w31', 'w32']"
    for args in ("", ",method=fastv,keep=0.25"):
        out = run_lmms_eval(workspace, f"pretrained={workspace / 'model'}{args}", "multiple_choice", "acc", choices)
        assert "acc,none" in out["results"]["results"]["vtprune_local"]
        scores[args] = [[float(pair[0]) for pair in s["filtered_resps"]] for s in out["samples"]]
        # lmms-eval picks the choice of least loss: check its accuracy against ours.
        picks = [min(range(3), key=row.__getitem__) for row in scores[args]]
        assert out["results"]["results"]["vtprune_local"]["acc,none"] == pytest.approx(picks.count(0) / 6)
    assert all(len(row) == 3 and all(v > 0 for v in row) for row in scores[""])  # mean losses
    # Pruning changes the model's scores of the same continuations (here: FastV after layer 2).
    assert scores[""] != scores[",method=fastv,keep=0.25"]


def test_vtprune_eval_runs_lmms_tasks(workspace, tmp_path):
    """``vtprune eval --model --task``: the unpruned model and each variant on the same
    task in one process, with retention."""
    from vtprune.cli import main

    task = workspace / "task_generate_until"
    if not task.exists():
        run_lmms_eval(workspace, f"pretrained={workspace / 'model'}", "generate_until", "exact_match",
                      'generation_kwargs:\n  max_new_tokens: 3\n  until: ["\\n"]')
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(workspace / "model"), "--task", "vtprune_local", "--include-path", str(task),
                 "--method", "uniform", "fastv", "--keep", "0.25", "--batch-size", "2", "--out", str(out),
                 "--dtype", "float32"]) == 0
    report = json.loads((out / "results.json").read_text())
    labels = [row["label"] for row in report["rows"]]
    assert labels == ["unpruned", "uniform@0.25", "fastv@0.25"]
    for row in report["rows"]:
        assert "exact_match,none" in row["tasks"]["vtprune_local"]
    assert "vtprune_local exact_match,none" in (out / "results.md").read_text()
    assert report["versions"]["transformers"]
