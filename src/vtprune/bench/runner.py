"""Measure methods against the unpruned model, in one run, interleaved.

Every repetition runs the unpruned model and each method in turn on the same batch,
so slow drifts of the machine (clocks, other load) affect them alike; medians and
spreads are over the repetitions after warm-up. Speed is reported as ratios to the
unpruned model of the same run, with the ideal ratio from the MAC formula beside it
(see :mod:`vtprune.bench.flops`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessorList

from ..compat import cache_of
from ..runtime.last_forward import PruneStats
from ..variants import Variant, pruned, runnable
from .figures import Figure
from .flops import language_layer, patches_per_image, prefill_macs, vision_macs
from .inputs import Target
from .measure import HookTimer, StepClock, cache_bytes, peak_memory, synchronize, timed


@dataclass
class Row:
    """Everything measured for one variant (times per repetition, in seconds)."""

    label: str
    method: str | None
    keep: float | int | None
    prefill_s: list[float] = field(default_factory=list)  # one forward over the prompt
    ttft_s: list[float] = field(default_factory=list)  # generate, up to its first token
    decode_s: list[float] = field(default_factory=list)  # generate, from its first token to its last
    generate_s: list[float] = field(default_factory=list)  # the whole generate
    peak_memory_bytes: int | None = None  # where the device measures it (CUDA)
    memory_kind: str = ""
    kv_cache_bytes: int = 0  # the KV cache after the prefill
    selection_s: float = 0.0
    visual_before: int = 0
    visual_llm_input: int = 0
    visual_layer_avg: float = 0.0
    llm_macs: int = 0
    vision_macs: int = 0
    config: dict | None = None
    new_tokens: int = 0  # tokens decoded after the first, summed over the batch

    @staticmethod
    def _median(values: list[float]) -> float | None:
        return Figure.of(values).median

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Decoding throughput: the tokens after the first over the time generate took
        from its first token to its last (median over repetitions); ``None`` when only
        one token was generated."""
        seconds = Figure.of(self.decode_s).median
        return self.new_tokens / seconds if self.new_tokens and seconds else None

    @property
    def memory_bytes(self) -> int | None:
        """The memory figure: peak memory where the device measures it, else (CPU) the
        exact bytes of the KV cache after the prefill."""
        return self.peak_memory_bytes if self.peak_memory_bytes is not None else self.kv_cache_bytes

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if not isinstance(v, list)}
        out["decode_tokens_per_s"] = self.decode_tokens_per_s
        out["memory_bytes"] = self.memory_bytes
        for name in ("prefill_s", "ttft_s", "decode_s", "generate_s"):
            values = getattr(self, name)
            figure = Figure.of(values)
            out[name] = {"median": figure.median, "spread": figure.spread, "values": values}
        return out


def _ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, or ``None`` where either is missing or the reference is 0."""
    if value is None or reference is None or not reference or math.isnan(reference):
        return None
    return value / reference


@dataclass
class BenchResult:
    """The rows of one run, the unpruned one first, and how they were measured."""

    target: str
    settings: dict
    rows: list[Row]
    skipped: dict[str, str] = field(default_factory=dict)  # label -> why it cannot run here

    @property
    def baseline(self) -> Row:
        return self.rows[0]

    def speedups(self, row: Row) -> dict[str, Figure]:
        """Measured speed-ups of ``row`` over the unpruned model (> 1 is faster), each
        the median of the per-repetition ratios (repetition i of both ran back to back)
        with its spread: prefill, time to first token, decode throughput."""
        base = self.baseline
        return {
            "prefill": Figure.ratio(base.prefill_s, row.prefill_s),
            "ttft": Figure.ratio(base.ttft_s, row.ttft_s),
            "decode": Figure.ratio(base.decode_s, row.decode_s),  # same tokens: time ratio = throughput ratio
        }

    def ratios(self, row: Row) -> dict[str, float | None]:
        """Measured and ideal ratios of ``row`` to the unpruned model (time: < 1 is
        faster; measured ones are medians of per-repetition ratios)."""
        base = self.baseline
        return {
            "prefill_time": Figure.ratio(row.prefill_s, base.prefill_s).median,
            "ttft": Figure.ratio(row.ttft_s, base.ttft_s).median,
            "decode_throughput": Figure.ratio(base.decode_s, row.decode_s).median,
            "ideal_prefill_time": _ratio(row.llm_macs + row.vision_macs, base.llm_macs + base.vision_macs),
            "ideal_llm_time": _ratio(row.llm_macs, base.llm_macs),
            "memory": _ratio(row.memory_bytes, base.memory_bytes),
            "kv_cache": _ratio(row.kv_cache_bytes, base.kv_cache_bytes),
            "selection_share": _ratio(row.selection_s, Row._median(base.prefill_s)),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "settings": self.settings,
            "rows": [
                {**row.summary(), "ratios": self.ratios(row),
                 "speedups": {k: f.to_dict() for k, f in self.speedups(row).items()}}
                for row in self.rows
            ],
            "skipped": self.skipped,
        }


def _macs(target: Target, stats: PruneStats | None) -> tuple[int, int, int, int, float]:
    """(LLM MACs, vision MACs, visual before, at the LLM input, averaged over layers),
    summed over the batch."""
    model, batch = target.model, target.batch
    text_config = model.config.text_config
    layer = language_layer(text_config)
    num_layers = text_config.num_hidden_layers
    real = batch["attention_mask"].sum(1).tolist()
    image_token = model.config.image_token_id
    visual = (batch["input_ids"] == image_token).sum(1).tolist()
    llm = 0
    for sample, (length, count) in enumerate(zip(real, visual)):
        text = length - count
        per_layer = [count] * num_layers if stats is None else stats.per_layer(sample)
        llm += prefill_macs(layer, [text + v for v in per_layer])
    patches = patches_per_image(model, batch)
    if stats is None:
        return llm, vision_macs(model, patches), sum(visual), sum(visual), float(sum(visual))
    return llm, vision_macs(model, patches), stats.total_before, stats.total_llm_input, stats.total_layer_avg


def run_bench(
    target: Target,
    variants: list[Variant],
    *,
    repeats: int = 5,
    warmup: int = 1,
    decode_tokens: int = 16,
    generate: bool = True,
    progress: Any = None,
) -> BenchResult:
    """Measure ``variants`` (:class:`vtprune.variants.Variant`; the unpruned model is
    added first) on ``target``: the prefill and, with ``generate``, a ``generate`` call
    of ``decode_tokens`` tokens (time to the first token and decoding)."""
    for name, value, least in (("repeats", repeats, 1), ("warmup", warmup, 0), ("decode_tokens", decode_tokens, 1)):
        if not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    model, batch = target.model, target.batch
    device = next(model.parameters()).device
    suppress = [model.config.image_token_id]
    generate_args = dict(do_sample=False, suppress_tokens=suppress, pad_token_id=_pad_id(model))

    # A variant this model cannot run (a layer it lacks, a budget a schedule cannot
    # meet) is reported, not measured.
    variants, skipped = runnable(model, [v for v in variants if v.method is not None])
    variants = [Variant(None), *variants]
    rows = [Row(v.label, v.method, v.keep) for v in variants]
    if progress is not None:
        progress.total = (warmup + repeats) * len(variants)

    with torch.inference_mode():
        for rep in range(warmup + repeats):
            for variant, row in zip(variants, rows):
                with pruned(model, variant, quiet=True):
                    times = _timings(model, batch, device, decode_tokens if generate else 0, generate_args)
                if rep >= warmup:
                    for name, seconds in times.items():
                        getattr(row, name).append(seconds)
                    row.new_tokens = batch["input_ids"].shape[0] * (decode_tokens - 1) if generate else 0
                if progress is not None:
                    progress.update(1)

        # One more pass each, not timed for latency: memory, selection time, counts.
        for variant, row in zip(variants, rows):
            with pruned(model, variant, quiet=True) as handle:
                _measure_once(target, handle, row, decode_tokens, generate_args)

    settings = {
        "repeats": repeats,
        "warmup": warmup,
        "decode_tokens": decode_tokens if generate else 0,
        "batch_size": int(batch["input_ids"].shape[0]),
        "prompt_tokens": int(batch["input_ids"].shape[1]),
        "device": str(device),
        "dtype": str(next(model.parameters()).dtype),
        "attention": model.config._attn_implementation,
        "memory": "peak CUDA allocation" if device.type == "cuda" else
                  f"KV cache after the prefill (exact; peak memory is not measured on {device.type})",
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
    }
    return BenchResult(target.name, settings, rows, skipped)


def _measure_once(target: Target, handle, row: Row, decode_tokens: int, generate_args: dict) -> None:
    """The figures of ``row`` that one pass gives: peak memory of a generate call (where
    the device measures it), the KV cache of a prefill, the time in vtprune's hooks,
    the config, and the token counts and MACs."""
    model, batch = target.model, target.batch
    device = next(model.parameters()).device
    with peak_memory(device) as memory:
        if device.type == "cuda":
            model.generate(**batch, max_new_tokens=decode_tokens, min_new_tokens=decode_tokens, **generate_args)
    row.peak_memory_bytes, row.memory_kind = memory.get("bytes"), memory.get("kind", "")
    # One prefill gives both the KV cache and, for a method, the time in its hooks (the
    # timer's hooks only read the clock, so the cache is that of an untimed prefill).
    timer = HookTimer(_hooked_modules(handle), device) if handle is not None else None
    try:
        output = model(**batch, use_cache=True, logits_to_keep=1)
    finally:
        if timer is not None:
            timer.remove()
    row.kv_cache_bytes = cache_bytes(cache_of(output))
    del output
    if handle is not None:
        row.selection_s = timer.seconds
        row.config = handle.config.to_dict()
    stats = None if handle is None else handle.stats
    row.llm_macs, row.vision_macs, row.visual_before, row.visual_llm_input, row.visual_layer_avg = _macs(target, stats)


def _timings(model, batch, device, decode_tokens: int, generate_args: dict) -> dict[str, float]:
    """One repetition: the prefill and, unless ``decode_tokens`` is 0, one generate call
    timed up to its first token and from there to its last (a clock stamps every
    step's logits)."""
    times = {"prefill_s": timed(lambda: model(**batch, use_cache=True, logits_to_keep=1), device)}
    if not decode_tokens:
        return times
    clock = StepClock(device)
    synchronize(device)
    start = time.perf_counter()
    model.generate(**batch, max_new_tokens=decode_tokens, min_new_tokens=decode_tokens,
                   logits_processor=LogitsProcessorList([clock]), **generate_args)
    synchronize(device)
    times["generate_s"] = time.perf_counter() - start
    times["ttft_s"] = clock.stamps[0] - start
    if decode_tokens > 1:
        times["decode_s"] = clock.stamps[-1] - clock.stamps[0]
    return times


def _hooked_modules(handle) -> list[torch.nn.Module]:
    """Every module vtprune hooks for this method."""
    adapter = handle._session.adapter
    modules = [adapter.vision_module, adapter.core, adapter.language_model]
    return modules + list(adapter.decoder_layers)


def _pad_id(model) -> int:
    pad = getattr(model.generation_config, "pad_token_id", None)
    return 0 if pad is None else int(pad if not isinstance(pad, list) else pad[0])
