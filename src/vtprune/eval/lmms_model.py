"""The lmms-eval model ``vtprune``: any supported Hugging Face VLM, pruned by any method.

    python -m lmms_eval --model vtprune \\
        --model_args pretrained=llava-hf/llava-1.5-7b-hf,method=coast,keep=0.222 \\
        --tasks pope,gqa --batch_size 4

Every ``model_args`` key besides ``pretrained``, ``method``, ``keep``, ``device``,
``dtype`` and ``max_new_tokens`` is passed to the method as an option. Registered with
lmms-eval through the ``lmms_eval.models`` entry point (see ``lmms_plugin``).
"""

from __future__ import annotations

import ast
from typing import Any

import torch
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from tqdm import tqdm

from ..loading import load_model
from .runner_hf import PrunedVLM


def _value(text: Any) -> Any:
    """lmms-eval passes model_args as strings: read numbers as numbers."""
    if not isinstance(text, str):
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _as_response(score: tuple[float, bool]) -> Any:
    """A (loss, is-greedy) pair as lmms-eval keeps it. lmms-eval 0.7 turns any
    model output that is not text into ``str(output)`` unless it comes as a
    ``GenerationResult``, which then breaks its multiple-choice scoring; wrapped, the
    pair reaches the task as a pair."""
    try:
        from lmms_eval.api.instance import GenerationResult
    except ImportError:  # releases before GenerationResult pass tuples through
        return score
    return GenerationResult(text=score, token_counts=None)


class VtpruneLMM(lmms):
    """lmms-eval's "simple" model interface over :class:`PrunedVLM`."""

    is_simple = True

    def __init__(
        self,
        pretrained: str | None = None,
        method: str | None = None,
        keep: float | int | None = None,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int | str = 1,
        max_new_tokens: int = 64,
        **options: Any,
    ) -> None:
        super().__init__()
        # The bundled proving-ground model (no ``pretrained``) is small: always float32.
        model, processor = load_model(pretrained, device=device, dtype=dtype if pretrained is not None else torch.float32)
        options = {k: _value(v) for k, v in options.items()}
        self.vlm = PrunedVLM(model, processor, method, _value(keep), options)
        self.batch_size_per_gpu = int(batch_size)
        self.max_new_tokens = int(max_new_tokens)

    def _doc(self, task: str, split: str, doc_id: int) -> Any:
        return self.task_dict[task][split][doc_id]

    def _visuals(self, doc_to_visual, task: str, split: str, doc_id: int) -> list:
        visuals = doc_to_visual(self._doc(task, split, doc_id)) if doc_to_visual is not None else []
        return [v for v in (visuals or []) if v is not None]

    def generate_until(self, requests: list[Instance]) -> list[str]:
        answers: list[str] = [""] * len(requests)
        order = list(range(len(requests)))
        bar = tqdm(total=len(requests), disable=self.rank != 0, desc="vtprune")
        for start in range(0, len(order), self.batch_size_per_gpu):
            chunk = order[start : start + self.batch_size_per_gpu]
            args = [requests[i].args for i in chunk]
            gen_kwargs = dict(args[0][1])
            until = gen_kwargs.get("until", [])
            until = [until] if isinstance(until, str) else list(until)
            questions = [a[0].replace("<image>", "").strip() for a in args]
            images = [self._visuals(a[2], a[4], a[5], a[3]) for a in args]
            outputs = self.vlm.generate(
                questions, images, max_new_tokens=int(gen_kwargs.get("max_new_tokens", self.max_new_tokens)), until=until
            )
            for i, answer in zip(chunk, outputs):
                answers[i] = answer
            bar.update(len(chunk))
        bar.close()
        return answers

    def loglikelihood(self, requests: list[Instance]) -> list[Any]:
        results = []
        for request in tqdm(requests, disable=self.rank != 0, desc="vtprune"):
            context, target, doc_to_visual, doc_id, task, split = request.args
            continuation = target if isinstance(target, str) else target(self._doc(task, split, doc_id))
            images = self._visuals(doc_to_visual, task, split, doc_id)
            score = self.vlm.loglikelihood(context.replace("<image>", "").strip(), continuation, images)
            # lmms-eval's convention (its models return the loss, and multiple choice
            # takes the argmin): the mean negative log-likelihood of the continuation.
            results.append(_as_response((score.mean_loss, score.greedy)))
        return results

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError("vtprune answers single-round prompts")
