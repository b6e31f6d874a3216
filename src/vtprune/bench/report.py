"""Benchmark results as a table, JSON and a plot of speedup against the kept share."""

from __future__ import annotations

from pathlib import Path

from .figures import READABLE_SPREAD, Figure
from .jsontext import dumps
from .runner import BenchResult


def format_table(result: BenchResult) -> str:
    """A readable table: absolute figures for the unpruned model, speed-ups and ratios
    for the rest, each measured speed-up with its spread (``unclear`` when too wide)."""
    base = result.baseline
    s = result.settings
    decode = base.decode_tokens_per_s
    lines = [
        f"{result.target}: batch {s['batch_size']}, {s['prompt_tokens']} prompt tokens, {s['device']} {s['dtype']}, "
        f"{s['attention']} attention; median of {s['repeats']} interleaved repetitions after {s['warmup']} warm-up",
        f"unpruned: prefill {_ms(base.prefill_s)}, "
        f"TTFT {_ms(base.ttft_s)}, decode {'-' if decode is None else f'{decode:.1f} tok/s'}, "
        f"memory {_bytes(base.memory_bytes)} ({_memory_kind(result)}), "
        f"{_macs(base.llm_macs + base.vision_macs)} ({_macs(base.llm_macs)} in the LLM)",
        "",
        f"{'method':<18}{'visual in':>10}{'avg/layer':>10}{'prefill':>21}{'ideal':>8}{'LLM ideal':>10}"
        f"{'TTFT':>21}{'decode':>21}{'memory':>8}{'KV':>7}{'select':>8}",
    ]
    for row in result.rows[1:]:
        r, up = result.ratios(row), result.speedups(row)
        lines.append(
            f"{row.label:<18}{row.visual_llm_input:>10}{row.visual_layer_avg:>10.1f}"
            f"{' ' + up['prefill'].text():>21}{_x(r['ideal_prefill_time']):>8}{_x(r['ideal_llm_time']):>10}"
            f"{' ' + up['ttft'].text():>21}{' ' + up['decode'].text():>21}{_number(r['memory']):>8}{_number(r['kv_cache']):>7}"
            f"{_share(r['selection_share']):>8}"
        )
    for label, why in result.skipped.items():
        lines.append(f"{label:<18}not run: {why}")
    lines += [
        "",
        "prefill / TTFT / decode: measured speed-up over the unpruned model (higher is faster), the median of the "
        "repetitions' ratios ± half their spread (interquartile range, or the range under 4 repetitions); "
        f"'unclear' when that ± exceeds {READABLE_SPREAD:.0%} (more --repeats narrow it). "
        "ideal / LLM ideal: the speed-up MACs promise, per decoder layer 4nd^2 + 2n^2d + 3ndm (k/v at their GQA "
        "width), vision tower included or not. memory / KV: pruned over unpruned (lower is better); memory is "
        f"{_memory_kind(result)}. select: time in vtprune's hooks as a share of the unpruned prefill.",
    ]
    return "\n".join(lines)


def _memory_kind(result: BenchResult) -> str:
    return result.settings.get("memory", result.baseline.memory_kind)


def _ms(values: list[float]) -> str:
    figure = Figure.of(values)
    if figure.median is None:
        return "-"
    return f"{figure.median * 1e3:.1f} ms (spread {figure.spread * 1e3:.1f})"


def _x(value: float | None) -> str:
    """A time ratio as the speed-up it means."""
    return "-" if not value else f"{1 / value:.2f}x"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _macs(value: int) -> str:
    for unit, scale in (("TMACs", 1e12), ("GMACs", 1e9), ("MMACs", 1e6)):
        if value >= scale:
            return f"{value / scale:.3f} {unit}"
    return f"{value} MACs"


def _bytes(value: int | None) -> str:
    if value is None:
        return "n/a"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value} B"


def write_json(result: BenchResult, path: Path) -> None:
    path.write_text(dumps(result.to_dict()))


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
        measured = [result.speedups(r)["prefill"] for r in rows]
        ideal = [1 / result.ratios(r)["ideal_prefill_time"] for r in rows]
        ax.errorbar(x, [f.median for f in measured], yerr=[(f.spread or 0) / 2 for f in measured],
                    fmt="o-", color=color, label=method, capsize=2)
        ax.plot(x, ideal, "x--", color=color, alpha=0.6)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("visual tokens kept (averaged over layers) / before")
    ax.set_ylabel("prefill speedup vs unpruned")
    ax.set_title(f"{result.target}: measured (o, ± half the spread) and ideal from MACs (x)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
