"""The suite's outputs: a Markdown table, strict JSON and one plot of measured against
ideal prefill speed-up per method.

Every figure is a ratio to the unpruned model of the same run. Speed is written as a
speed-up (higher is faster) with ± half the spread of the repetitions; ``ideal`` is
the speed-up the MACs promise (vision tower included); ``measured / ideal`` is the
measured prefill (or TTFT) speed-up over that ideal, 1 when the saving in MACs is all
realised. KV is the cache's bytes after the prefill, pruned over unpruned (lower is
smaller); ``select`` is the time in vtprune's hooks as a share of the unpruned prefill.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .figures import Figure
from .jsontext import dumps
from .runner import BenchResult, Row
from .suite import SuiteResult

HEADER = ("method", "visual in", "avg/layer", "prefill", "ideal", "measured / ideal", "TTFT", "TTFT / ideal",
          "decode tok/s", "KV", "select")


def row_figures(result: BenchResult, row: Row) -> dict[str, Any]:
    """The suite's figures of one row: measured speed-ups (:class:`Figure`), the ideal
    speed-up, measured over ideal, KV and selection share."""
    ratios, speedups = result.ratios(row), result.speedups(row)
    ideal_time = ratios["ideal_prefill_time"]
    ideal = 1 / ideal_time if ideal_time else None

    def over_ideal(figure: Figure) -> float | None:
        return figure.median * ideal_time if figure.median is not None and ideal_time else None

    return {
        "label": row.label, "method": row.method, "keep": row.keep,
        "visual_llm_input": row.visual_llm_input, "visual_layer_avg": row.visual_layer_avg,
        "prefill_speedup": speedups["prefill"], "ttft_speedup": speedups["ttft"],
        "decode_throughput": speedups["decode"], "ideal_speedup": ideal,
        "ideal_llm_speedup": 1 / ratios["ideal_llm_time"] if ratios["ideal_llm_time"] else None,
        "prefill_vs_ideal": over_ideal(speedups["prefill"]), "ttft_vs_ideal": over_ideal(speedups["ttft"]),
        "kv_cache": ratios["kv_cache"], "selection_share": ratios["selection_share"],
    }


def worst(result: SuiteResult) -> tuple[str, str, float] | None:
    """(shape, label, prefill measured / ideal) of the lowest measured / ideal."""
    found = [(name, f["label"], f["prefill_vs_ideal"])
             for name, bench in result.shapes.items() for f in map(lambda r: row_figures(bench, r), bench.rows[1:])
             if f["prefill_vs_ideal"] is not None]
    return min(found, key=lambda item: item[2]) if found else None


def markdown(result: SuiteResult) -> str:
    lines = []
    for name, bench in result.shapes.items():
        s, base = bench.settings, bench.baseline
        lines += [
            f"### {bench.target}",
            "",
            f"batch {s['batch_size']}, {s['prompt_tokens']} prompt tokens ({base.visual_before} visual), "
            f"{s['device']} {s['dtype']}, {s['attention']} attention, median of {s['repeats']} interleaved "
            f"repetitions after {s['warmup']} warm-up, {s['decode_tokens']} decoded tokens. Unpruned: prefill "
            f"{_ms(base.prefill_s)}, TTFT {_ms(base.ttft_s)}, decode {_rate(base.decode_tokens_per_s)}, "
            f"KV {_bytes(base.kv_cache_bytes)}, {_macs(base.llm_macs + base.vision_macs)} "
            f"({_macs(base.vision_macs)} in the vision tower).",
            "",
            "| " + " | ".join(HEADER) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(HEADER) - 1)) + "|",
        ]
        for row in bench.rows[1:]:
            f = row_figures(bench, row)
            cells = [f["label"], str(f["visual_llm_input"]), f"{f['visual_layer_avg']:.1f}",
                     _figure(f["prefill_speedup"]), _x(f["ideal_speedup"]), _number(f["prefill_vs_ideal"]),
                     _figure(f["ttft_speedup"]), _number(f["ttft_vs_ideal"]), _figure(f["decode_throughput"]),
                     _number(f["kv_cache"]), _share(f["selection_share"])]
            lines.append("| " + " | ".join(cells) + " |")
        for label, why in bench.skipped.items():
            lines.append(f"| {label} | not run: {why.replace('|', '/')} |" + " |" * (len(HEADER) - 2))
        lines.append("")
    found = worst(result)
    if found:
        lines += [f"Lowest measured / ideal: {found[1]} on {found[0]}, {found[2]:.2f}.", ""]
    if result.throughput is not None:
        lines += throughput_markdown(result.throughput)
    lines += [
        "prefill, TTFT, decode tok/s: measured speed-up over the unpruned model (higher is faster), the median of "
        "the repetitions' ratios ± half their spread ('unclear' above ±15%; no ± from one repetition). ideal: the prefill speed-up from MACs, "
        "vision tower included. measured / ideal: 1 when the MAC saving is all realised. KV: KV-cache bytes after "
        "the prefill over unpruned. select: time in vtprune's hooks over the unpruned prefill.",
    ]
    return "\n".join(lines) + "\n"


def _after_warmup(rounds: int) -> str:
    return f" after {rounds} untimed round{'s' if rounds > 1 else ''}" if rounds else ""


def throughput_markdown(throughput) -> list[str]:
    s = throughput.settings
    lines = [f"### Batch throughput, {throughput.target}", "",
             f"one generate call per batch ({s['decode_tokens']} tokens per request), {s['device']} {s['dtype']}, "
             f"median of {s['repeats']} interleaved repetitions"
             f"{_after_warmup(s.get('warmup', 0))}.", "",
             "| method | batch | requests/s | vs unpruned | KV after the call | KV vs unpruned | peak memory vs unpruned |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for batch, rows in throughput.rows.items():
        for row in rows:
            r = throughput.ratios(row)
            rate = row.requests_per_s().median
            lines.append(f"| {row.label} | {batch} | {'-' if rate is None else f'{rate:.3f}'} | "
                         f"{_figure(r['requests_per_s']) if row is not rows[0] else '1'} | {_bytes(row.kv_cache_bytes)} | "
                         f"{_number(r['kv_cache'])} | {_number(r['peak_memory']) if r['peak_memory'] else 'n/a'} |")
    for label, why in throughput.skipped.items():
        lines.append(f"| {label} | not run: {why.replace('|', '/')} | | | | | |")
    return lines + [""]


def to_dict(result: SuiteResult) -> dict[str, Any]:
    from dataclasses import asdict

    shapes = {}
    for name, bench in result.shapes.items():
        rows = []
        for row in bench.rows[1:]:
            f = row_figures(bench, row)
            rows.append({k: v.to_dict() if isinstance(v, Figure) else v for k, v in f.items()})
        shapes[name] = {"suite": rows, "bench": bench.to_dict()}
    found = worst(result)
    return {
        "settings": asdict(result.settings),
        "shapes": shapes,
        "worst": None if found is None else {"shape": found[0], "label": found[1], "prefill_vs_ideal": found[2]},
        "throughput": None if result.throughput is None else result.throughput.to_dict(),
    }


def write(result: SuiteResult, folder: Path) -> list[Path]:
    """``suite.md``, ``suite.json`` and ``suite.png`` (the plot only where matplotlib
    imports) in ``folder``; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "suite.md", folder / "suite.json"]
    written[0].write_text(markdown(result))
    written[1].write_text(dumps(to_dict(result)))
    try:
        plot(result, folder / "suite.png")
        written.append(folder / "suite.png")
    except ImportError:
        pass
    return written


def plot(result: SuiteResult, path: Path) -> None:
    """Measured against ideal prefill speed-up, one colour per method, one panel per
    shape; points on the diagonal realise all the MACs promise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result.shapes)
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(6 * max(1, len(names)), 4.8), dpi=110, squeeze=False)
    methods = sorted({r.method for b in result.shapes.values() for r in b.rows[1:]})
    colors = dict(zip(methods, plt.get_cmap("tab20")(range(len(methods)))))
    for ax, name in zip(axes[0], names):
        bench = result.shapes[name]
        top = 1.0
        for method in methods:
            figs = [row_figures(bench, r) for r in bench.rows[1:] if r.method == method]
            figs = [f for f in figs if f["ideal_speedup"] and f["prefill_speedup"].median is not None]
            if not figs:
                continue
            x = [f["ideal_speedup"] for f in figs]
            y = [f["prefill_speedup"].median for f in figs]
            err = [(f["prefill_speedup"].spread or 0) / 2 for f in figs]
            ax.errorbar(x, y, yerr=err, fmt="o-", color=colors[method], label=method, capsize=2, ms=4)
            top = max(top, *x, *y)
        ax.plot([0, top * 1.05], [0, top * 1.05], color="grey", lw=0.8, ls="--")
        ax.set_xlim(0.9, top * 1.05)
        ax.set_ylim(0, top * 1.1)
        ax.set_xlabel("ideal prefill speed-up (MACs)")
        ax.set_ylabel("measured prefill speed-up")
        ax.set_title(bench.target, fontsize=9)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _figure(figure: Figure) -> str:
    """``Figure.text``, without a ± where one repetition gives no spread."""
    if figure.median is not None and figure.count < 2:
        return f"{figure.median:.2f}x"
    return figure.text()


def _ms(values: list[float]) -> str:
    figure = Figure.of(values)
    return "-" if figure.median is None else f"{figure.median * 1e3:.1f} ms"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} tok/s"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


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
