"""The evaluation runner, end to end on a tiny subset."""

import pytest
import torch

import vtprune
from vtprune import proving_ground
from vtprune.eval.proving import Comparison, compare_methods, evaluate, first_word
from vtprune.proving_ground import make_split, prompt

needs_checkpoint = pytest.mark.skipif(
    not (proving_ground.checkpoint_path() / "config.json").is_file(), reason="no bundled checkpoint"
)


def test_scoring_reads_the_first_word():
    assert first_word("  Red.</s>") == "red"
    assert first_word("yes, there is") == "yes" and first_word("no") != "yes"
    assert first_word("") == "" and first_word("") != "red"


@pytest.fixture(scope="module")
def loaded():
    return proving_ground.load()


@needs_checkpoint
def test_compare_methods_end_to_end(loaded):
    model, processor = loaded
    examples = make_split("test", 12)
    inputs = processor(images=[examples[0].image], text=[prompt(examples[0].question)], return_tensors="pt")
    with torch.inference_mode():
        before = model(**inputs).logits

    table = compare_methods(model, processor, examples, [("uniform", 0.25)], batch_size=6)

    assert isinstance(table, Comparison) and table.examples == 12
    assert table.baseline.method == "none" and table.baseline.accuracy >= 0.75
    (run,) = table.runs
    assert (run.method, run.keep) == ("uniform", 0.25)
    assert run.visual_tokens == 144  # 0.25 of 576 per image, at the LLM input
    assert 0.0 <= run.accuracy <= 1.0
    assert run.retention == pytest.approx(run.accuracy / table.baseline.accuracy)
    assert set(run.families) == set(table.baseline.families)
    rows = table.rows()
    assert len(rows) == 2 * 7 and {r["family"] for r in rows} >= {"overall", "counting"}
    assert "uniform" in table.format() and "retention" in table.format(retention=True)

    # the model is exactly as before: unpruned, same logits
    assert vtprune.active_handle(model) is None
    with torch.inference_mode():
        assert torch.equal(model(**inputs).logits, before)


@needs_checkpoint
def test_evaluate_under_pruning_records_visual_tokens(loaded):
    model, processor = loaded
    examples = make_split("test", 6)
    with vtprune.prune(model, "random", keep=64):
        result = evaluate(model, processor, examples, batch_size=3)
    assert result["visual_tokens"] == 64
    assert len(result["predictions"]) == 6 and sum(result["counts"].values()) == 6


@needs_checkpoint
def test_compare_refuses_an_already_pruned_model(loaded):
    model, processor = loaded
    with vtprune.prune(model, "uniform", keep=0.5):
        with pytest.raises(ValueError, match="already pruned"):
            compare_methods(model, processor, make_split("test", 1), [("uniform", 0.25)])
