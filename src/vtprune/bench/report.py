"""Benchmark results as a table, JSON and a plot of speedup against the kept share."""

from __future__ import annotations

import json
from pathlib import Path

from .runner import BenchResult, Row


def format_table(result: BenchResult) -> str:
    """A readable table: absolute figures for the unpruned model, ratios for the rest."""
    base = result.baseline
    s = result.settings
    lines = [
        f"{result.target}: batch {s['batch_size']}, {s['prompt_tokens']} prompt tokens, {s['device']} {s['dtype']}, "
        f"{s['attention']} attention; median of {s['repeats']} interleaved repetitions after {s['warmup']} warm-up",
        f"unpruned: prefill {Row._median(base.prefill_s) * 1e3:.1f} ms (spread {Row._spread(base.prefill_s) * 1e3:.1f}), "
        f"TTFT {Row._median(base.ttft_s) * 1e3:.1f} ms, decode {base.decode_tokens_per_s:.1f} tok/s, "
        f"peak memory {_bytes(base.peak_memory_bytes)} ({base.memory_kind}), KV cache {_bytes(base.kv_cache_bytes)}, "
        f"{_macs(base.llm_macs + base.vision_macs)} ({_macs(base.llm_macs)} in the LLM)",
        "",
        f"{'method':<18}{'visual in':>10}{'avg/layer':>10}{'prefill':>9}{'ideal':>8}{'LLM ideal':>10}"
        f"{'TTFT':>7}{'decode':>8}{'memory':>8}{'KV':>7}{'select':>8}",
    ]
    for row in result.rows[1:]:
        r = result.ratios(row)
        lines.append(
            f"{row.label:<18}{row.visual_llm_input:>10}{row.visual_layer_avg:>10.1f}"
            f"{r['prefill_time']:>9.3f}{r['ideal_prefill_time']:>8.3f}{r['ideal_llm_time']:>10.3f}"
            f"{r['ttft']:>7.3f}{r['decode_throughput']:>8.3f}{r['memory']:>8.3f}{r['kv_cache']:>7.3f}{r['selection_share']:>8.2%}"
        )
    for label, why in result.skipped.items():
        lines.append(f"{label:<18}not run: {why}")
    lines += [
        "",
        "prefill / ideal / LLM ideal / TTFT / memory / KV (cache after the prefill): pruned over unpruned (lower "
        "is better); decode: throughput "
        "ratio (higher is better); select: time in vtprune's hooks as a share of the unpruned prefill. Ideal "
        "ratios count MACs: per decoder layer 4nd^2 + 2n^2d + 3ndm (k/v at their GQA width), vision tower included.",
    ]
    return "\n".join(lines)


def _macs(value: int) -> str:
    for unit, scale in (("TMACs", 1e12), ("GMACs", 1e9), ("MMACs", 1e6)):
        if value >= scale:
            return f"{value / scale:.3f} {unit}"
    return f"{value} MACs"


def _bytes(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f} MiB"


def write_json(result: BenchResult, path: Path) -> None:
    path.write_text(json.dumps(result.to_dict(), indent=2) + "\n")


def plot(result: BenchResult, path: Path) -> None:
    """PNG: prefill speedup against the share of visual tokens kept (averaged over
    layers), measured points beside each method's ideal from MACs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    methods = sorted({row.method for row in result.rows[1:]})
    colors = plt.get_cmap("tab20")(range(len(methods)))
    for color, method in zip(colors, methods):
        rows = sorted((r for r in result.rows[1:] if r.method == method), key=lambda r: r.visual_layer_avg)
        x = [r.visual_layer_avg / r.visual_before for r in rows]
        measured = [1 / result.ratios(r)["prefill_time"] for r in rows]
        ideal = [1 / result.ratios(r)["ideal_prefill_time"] for r in rows]
        ax.plot(x, measured, "o-", color=color, label=method)
        ax.plot(x, ideal, "x--", color=color, alpha=0.6)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("visual tokens kept (averaged over layers) / before")
    ax.set_ylabel("prefill speedup vs unpruned")
    ax.set_title(f"{result.target}: measured (o) and ideal from MACs (x)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
