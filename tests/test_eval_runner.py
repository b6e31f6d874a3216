"""The evaluation runner over a saved checkpoint and its processor: answers and
continuation scores, unpruned and pruned."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vtprune.eval.runner_hf import PrunedVLM
from vtprune.loading import load_model
from viz.checkpoints import save_tiny_llava


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_llava(tmp_path_factory.mktemp("ckpt"))


def loaded(checkpoint, **pruning) -> PrunedVLM:
    return PrunedVLM(*load_model(str(checkpoint), device="cpu", dtype=torch.float32), **pruning)


def image(seed: int) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(32, 32, 3) * 255).astype("uint8"))


def test_loglikelihood_equals_the_models_own_loss(checkpoint):
    vlm = loaded(checkpoint)
    question, answer = "w10 w11", " w40 w41 w42"
    score = vlm.loglikelihood(question, answer, [image(0)])
    prompt = vlm.prompt(question)
    full = vlm._inputs([prompt + answer], [[image(0)]])
    context = vlm._inputs([prompt], [[image(0)]])["input_ids"].shape[1]
    labels = full["input_ids"].clone()
    labels[:, :context] = -100
    with torch.no_grad():
        loss = vlm.model(**full, labels=labels).loss
    assert score.tokens == 3
    assert score.mean_loss == pytest.approx(float(loss), rel=1e-5)


def test_text_aware_methods_select_on_the_prompt_alone(checkpoint):
    """Scoring a continuation must not let the continuation steer the selection."""
    vlm = loaded(checkpoint, method="zspaprune", keep=0.25)
    question = "w14 w15 w16"
    with torch.no_grad():
        vlm.model(**vlm._inputs([vlm.prompt(question)], [[image(4)]]))
    on_prompt = vlm.handle.last_keep[0][0].tolist()
    for answer in (" w60 w61 w62 w63", " w90"):
        vlm.loglikelihood(question, answer, [image(4)])
        assert vlm.handle.last_keep[0][0].tolist() == on_prompt


def test_pruned_scores_and_answers(checkpoint):
    unpruned = loaded(checkpoint)
    same = loaded(checkpoint, method="uniform", keep=1.0)
    pruned = loaded(checkpoint, method="fastv", keep=0.25)
    args = ("w12 w13", " w50", [image(1)])
    assert same.loglikelihood(*args).logprob == pytest.approx(unpruned.loglikelihood(*args).logprob, abs=1e-5)
    assert pruned.loglikelihood(*args).logprob != pytest.approx(unpruned.loglikelihood(*args).logprob, abs=1e-5)
    assert pruned.handle.stats.total_layer_avg < pruned.handle.stats.total_before

    questions, images = ["w1 w2", "w3 w4 w5 w6"], [[image(2)], [image(3)]]
    answers = pruned.generate(questions, images, max_new_tokens=3)
    singles = [pruned.generate([q], [i], max_new_tokens=3)[0] for q, i in zip(questions, images)]
    assert answers == singles and all(len(a.split()) >= 1 for a in answers)
    # Stop strings cut the answer.
    first = answers[0].split()[0]
    assert pruned.generate(questions[:1], images[:1], max_new_tokens=3, until=[first])[0] == ""
