"""Batch throughput: requests per second and KV memory of pruned vs unpruned at given
batch sizes.

A request is one prompt with one image, answered with ``decode_tokens`` tokens; a
batch of B requests is one ``generate`` call, so requests per second is B over that
call's time. Repetitions interleave the unpruned model and each variant, and each
variant's figure is the median of its per-repetition ratio to the unpruned call run
just before it. Memory: the KV cache when the call ends (prompt and answers, exact),
and on CUDA the peak allocation of the call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..compat import cache_of
from ..variants import Variant, pruned, runnable
from .figures import Figure
from .inputs import Target, synthetic_batch
from .measure import cache_bytes, peak_memory, timed


@dataclass
class ThroughputRow:
    label: str
    batch: int
    seconds: list[float] = field(default_factory=list)  # one generate call of the whole batch
    kv_cache_bytes: int = 0  # after the call
    peak_memory_bytes: int | None = None  # CUDA only

    def requests_per_s(self) -> Figure:
        return Figure.of([self.batch / s for s in self.seconds])


@dataclass
class ThroughputResult:
    target: str
    settings: dict
    rows: dict[int, list[ThroughputRow]]  # batch size -> rows, the unpruned one first
    skipped: dict[str, str] = field(default_factory=dict)

    def ratios(self, row: ThroughputRow) -> dict[str, Any]:
        """Requests per second (median of per-repetition ratios) and memory, over the
        unpruned row of the same batch size."""
        base = self.rows[row.batch][0]
        peak = None
        if row.peak_memory_bytes is not None and base.peak_memory_bytes:
            peak = row.peak_memory_bytes / base.peak_memory_bytes
        return {
            "requests_per_s": Figure.ratio(base.seconds, row.seconds),
            "kv_cache": row.kv_cache_bytes / base.kv_cache_bytes if base.kv_cache_bytes else None,
            "peak_memory": peak,
        }

    def to_dict(self) -> dict[str, Any]:
        out = []
        for batch, rows in self.rows.items():
            for row in rows:
                r = self.ratios(row)
                out.append({
                    "label": row.label, "batch": batch,
                    "requests_per_s": row.requests_per_s().to_dict(),
                    "seconds": row.seconds,
                    "kv_cache_bytes": row.kv_cache_bytes, "peak_memory_bytes": row.peak_memory_bytes,
                    "ratios": {"requests_per_s": r["requests_per_s"].to_dict(), "kv_cache": r["kv_cache"],
                               "peak_memory": r["peak_memory"]},
                })
        return {"target": self.target, "settings": self.settings, "rows": out, "skipped": self.skipped}


def run_throughput(
    target: Target,
    variants: list[Variant],
    batches: Sequence[int],
    *,
    text_tokens: int,
    grid: tuple[int, int],
    repeats: int = 2,
    warmup: int = 0,
    decode_tokens: int = 4,
    progress: Any = None,
) -> ThroughputResult:
    """Requests per second and KV memory of ``variants`` (and the unpruned model, added
    first) on ``target``'s model, at each batch size of synthetic prompts, after
    ``warmup`` untimed rounds of every variant at that size (a GPU's first call at a new
    batch shape pays for allocation and kernel choice: 2-3x the time of the next ones on an H200)."""
    model = target.model
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    usable, skipped = runnable(model, [v for v in variants if v.method is not None])
    usable = [Variant(None), *usable]
    pad = getattr(model.generation_config, "pad_token_id", None)
    args = dict(do_sample=False, max_new_tokens=decode_tokens, min_new_tokens=decode_tokens,
                suppress_tokens=[model.config.image_token_id], pad_token_id=0 if pad is None else pad,
                return_dict_in_generate=True)
    results: dict[int, list[ThroughputRow]] = {}
    with torch.inference_mode():
        for size in batches:
            batch = synthetic_batch(model, size, text_tokens, grid)
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            if "pixel_values" in batch:
                batch["pixel_values"] = batch["pixel_values"].to(dtype)
            rows = [ThroughputRow(v.label, size) for v in usable]
            for round_ in range(warmup + repeats):
                for variant, row in zip(usable, rows):
                    out = {}
                    with pruned(model, variant, quiet=True), peak_memory(device) as memory:
                        seconds = timed(lambda: out.update(g=model.generate(**batch, **args)), device)
                    if round_ >= warmup:
                        row.seconds.append(seconds)
                        row.kv_cache_bytes = cache_bytes(cache_of(out["g"]))
                        row.peak_memory_bytes = memory.get("bytes")
                    del out
                    if progress is not None:
                        progress.update(1)
            results[size] = rows
    settings = {"batches": list(batches), "repeats": repeats, "warmup": warmup, "decode_tokens": decode_tokens,
                "prompt_tokens": text_tokens, "device": str(device), "dtype": str(dtype)}
    return ThroughputResult(target.name, settings, results, skipped)
