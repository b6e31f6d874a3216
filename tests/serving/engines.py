"""Engines and reference answers shared by the serving tests."""

from __future__ import annotations

import gc
from typing import Any

import torch

import vtprune
from vtprune import proving_ground as pg
from vtprune.eval.proving import evaluate

ENGINE = dict(
    enforce_eager=True,
    dtype="float32",
    max_model_len=1024,
    max_num_seqs=8,
    gpu_memory_utilization=0.3,  # the CPU backend reserves this share of the node's memory
    seed=0,
)


def engine(model: str | None = None, **kwargs: Any):
    from vllm import LLM

    return LLM(model=model or str(pg.checkpoint_path()), **{**ENGINE, **kwargs})


def close(llm: Any) -> None:
    del llm
    gc.collect()


def served_model(llm: Any) -> torch.nn.Module:
    """The model an in-process engine runs (to read what it kept)."""
    return llm.llm_engine.model_executor.driver_worker.worker.model_runner.model


def answers(llm: Any, examples: list, max_tokens: int = 4) -> list[str]:
    from vllm import SamplingParams

    from vtprune.eval.proving import first_word

    requests = [{"prompt": pg.prompt(e.question), "multi_modal_data": {"image": e.image}} for e in examples]
    outputs = llm.generate(requests, SamplingParams(temperature=0, max_tokens=max_tokens), use_tqdm=False)
    return [first_word(o.outputs[0].text) for o in outputs]


_HF: dict[str, Any] = {}


def hf_model():
    if "model" not in _HF:
        model, processor = pg.load()
        _HF["model"], _HF["processor"] = model.float(), processor
    return _HF["model"], _HF["processor"]


def hf_answers(examples: list, method: str | None = None, **options: Any) -> list[str]:
    model, processor = hf_model()
    handle = vtprune.prune(model, method, **options) if method else None
    try:
        return evaluate(model, processor, examples, batch_size=8, max_new_tokens=4)["predictions"]
    finally:
        if handle is not None:
            handle.remove()


def hf_kept(example, method: str, **options: Any) -> torch.Tensor:
    """Kept indices of the HF path for one example's image."""
    model, processor = hf_model()
    with vtprune.prune(model, method, **options) as handle:
        evaluate(model, processor, [example], batch_size=1, max_new_tokens=1)
        return handle.last_keep[0][0]
