"""``vtprune demo``: every method on small random-weight models of each family, offline.

For each family it checks the invariant a user relies on first (keep-all gives the
unpruned model's tokens) and, per method, shows the visual tokens at the LLM input,
how many generated tokens agree with the unpruned model, and the prefill time as a
ratio against the unpruned model measured in the same run.
"""

from __future__ import annotations

import statistics
import time

import torch

from . import methods, prune
from .testing import IMAGE, Image, make_batch, tiny_llava, tiny_qwen2_vl


def _prefill_seconds(model, batch, repeats: int = 5) -> float:
    times = []
    with torch.inference_mode():
        model(**batch)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(**batch)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _generate(model, batch, tokens: int) -> torch.Tensor:
    suppress = [model.config.image_token_id]
    out = model.generate(**batch, max_new_tokens=tokens, do_sample=False, suppress_tokens=suppress)
    return out[:, batch["input_ids"].shape[1]:]


def run_demo(keep: float = 0.25, tokens: int = 16) -> int:
    torch.manual_seed(0)
    families = [
        ("llava-1.5 (24x24 grid, 576 tokens/image)", tiny_llava(grid=24, layers=4), [[6, IMAGE, 12], [4, IMAGE, 20]]),
        ("qwen2.5-vl (dynamic grids)", tiny_qwen2_vl(layers=4), [[6, Image(16, 24), 12], [4, Image(20, 14), 20]]),
    ]
    names = [m["name"] for m in methods() if m["stage"] == "pre_llm"]
    print(f"vtprune demo: random-weight models, keep={keep}, {tokens} generated tokens\n")
    for title, model, prompts in families:
        batch = make_batch(model, prompts)
        reference = _generate(model, batch, tokens)
        base = _prefill_seconds(model, batch)
        handle = prune(model, "uniform", keep=1.0)
        same = torch.equal(_generate(model, batch, tokens), reference)
        handle.remove()
        print(f"{title}: keep=1.0 reproduces the unpruned tokens: {'yes' if same else 'NO'}")
        print(f"  {'method':<10} {'visual tokens at LLM':>22} {'same tokens':>12} {'prefill time':>13}")
        for name in names:
            handle = prune(model, name, keep=keep)
            agree = (_generate(model, batch, tokens) == reference).float().mean().item()
            ratio = _prefill_seconds(model, batch) / base
            stats = handle.stats
            handle.remove()
            counts = f"{stats.total_llm_input} of {stats.total_before}"
            print(f"  {name:<10} {counts:>22} {agree:>11.0%} {ratio:>12.2f}x")
        print()
    print("Weights are random, so agreement measures nothing about accuracy; times are ratios to the unpruned model.")
    return 0
