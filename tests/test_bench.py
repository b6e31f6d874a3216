"""The benchmark: the MAC formula by hand, and a run's schema and ratios (tiny models;
timings are only checked for shape, never for speed)."""

from __future__ import annotations

import json
from statistics import median

import pytest
import torch

import vtprune
from vtprune.bench.flops import LayerShape, language_layer, prefill_macs, vision_macs
from vtprune.bench.inputs import Target, synthetic_batch
from vtprune.bench.report import format_table, plot, write_json
from vtprune.bench.runner import run_bench
from vtprune.testing import tiny_llava
from vtprune.variants import Variant


def test_llava_7b_reference_figures():
    """The figures papers quote for LLaVA-1.5-7B (visual tokens only, 32 layers)."""
    layer = LayerShape(hidden=4096, kv_width=4096, mlp=11008, mlp_matrices=3)
    for tokens, expected in ((576, 3.817), (128, 0.833), (64, 0.416)):
        assert prefill_macs(layer, [tokens] * 32) / 1e12 == pytest.approx(expected, abs=5e-4)


def test_layer_formula_by_hand():
    # d=8, d_kv=4 (GQA), m=16, gated; n=3: 2*3*64 + 2*3*8*4 + 2*9*8 + 3*3*8*16
    assert LayerShape(8, 4, 16, 3).macs(3) == 384 + 192 + 144 + 1152
    config = tiny_llava().config.text_config  # hidden 64, 4 heads, 2 kv heads, mlp 128
    assert language_layer(config) == LayerShape(64, 32, 128, 3)


def test_vision_macs_of_a_clip_tower_by_hand():
    model = tiny_llava()  # CLIP: 2 layers, d=32, m=64; 64 patches + CLS; projector 32->64->64
    layer = LayerShape(32, 32, 64, 2)
    expected = 2 * layer.macs(65) + 64 * (32 * 64 + 64 * 64)
    assert vision_macs(model, [64, 64]) == 2 * expected


def test_run_schema_and_ratios_within_one_run(tmp_path):
    model = tiny_llava(layers=4)
    target = Target("tiny", model, synthetic_batch(model, 2, 12, (8, 8)))
    result = run_bench(target, [Variant("uniform", 0.25), Variant("fastv", 0.25), Variant("pdrop", 0.1)],
                       repeats=2, warmup=1, decode_tokens=3)
    labels = [row.label for row in result.rows]
    assert labels == ["unpruned", "uniform@0.25", "fastv@0.25"]
    assert "pdrop@0.1" in result.skipped and "cannot be met" in result.skipped["pdrop@0.1"]
    base, uniform, fastv = result.rows
    for row in result.rows:
        assert len(row.prefill_s) == len(row.ttft_s) == len(row.decode_s) == len(row.generate_s) == 2
        assert row.new_tokens == 2 * 2  # batch of 2, 3 new tokens of which 2 after the first
        assert all(t > 0 for t in row.prefill_s)
        # Decoding is timed inside the generate call, between its first and last token.
        for ttft, decode, whole in zip(row.ttft_s, row.decode_s, row.generate_s):
            assert 0 < ttft and 0 < decode and ttft + decode <= whole
        assert row.decode_tokens_per_s == pytest.approx(4 / median(row.decode_s))
    assert (base.visual_before, base.visual_llm_input) == (128, 128)
    assert (uniform.visual_llm_input, uniform.visual_layer_avg) == (32, 32.0)
    assert fastv.visual_llm_input == 128 and fastv.visual_layer_avg == (2 * 128 + 2 * 32) / 4
    # Ratios are taken against this run's unpruned row.
    ratios = result.ratios(uniform)
    per_repetition = [u / b for u, b in zip(uniform.prefill_s, base.prefill_s)]
    assert ratios["prefill_time"] == pytest.approx(median(per_repetition))
    speedup = result.speedups(uniform)["prefill"]
    assert speedup.median == pytest.approx(median([1 / r for r in per_repetition]))
    assert speedup.spread == pytest.approx(min(per_repetition) ** -1 - max(per_repetition) ** -1)
    assert ratios["ideal_llm_time"] == pytest.approx(uniform.llm_macs / base.llm_macs)
    assert ratios["ideal_prefill_time"] > ratios["ideal_llm_time"]  # the vision tower is not pruned
    assert uniform.vision_macs == base.vision_macs
    # The KV cache shrinks with the tokens: 2 layers x (k + v) x 32 wide x tokens x 4 bytes.
    prompt = target.batch["input_ids"].shape[1]
    assert base.kv_cache_bytes == 4 * 2 * 2 * 32 * prompt * 4
    assert uniform.kv_cache_bytes == 4 * 2 * 2 * 32 * (prompt - 64 + 16) * 4
    assert fastv.kv_cache_bytes == 2 * 2 * 2 * 32 * (2 * prompt - 64 + 16) * 4
    assert uniform.config["method"] == "uniform" and base.config is None
    # On a CPU the memory figure is the KV cache, said so; peak memory is not made up.
    assert base.peak_memory_bytes is None and base.memory_bytes == base.kv_cache_bytes
    assert ratios["memory"] == ratios["kv_cache"] and "KV cache" in result.settings["memory"]

    write_json(result, tmp_path / "bench.json")
    data = json.loads((tmp_path / "bench.json").read_text())
    assert [r["label"] for r in data["rows"]] == labels
    assert set(data["rows"][1]["ratios"]) >= {"prefill_time", "ideal_prefill_time", "ttft", "decode_throughput", "memory", "selection_share"}
    assert "decode_tokens_per_s" in data["rows"][0]
    assert set(data["rows"][1]["speedups"]["prefill"]) == {"median", "spread", "repetitions", "readable"}
    assert data["settings"]["attention"] == "sdpa" and "transformers" in data["settings"]
    plot(result, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = format_table(result)
    assert "uniform@0.25" in table and "not run" in table
    assert vtprune.active_handle(model) is None


def test_cli_bench_end_to_end(tmp_path, capsys):
    from vtprune.cli import main

    assert main(["bench", "--arch", "tiny-llava", "--method", "uniform", "--keep", "0.25", "--repeats", "1",
                 "--warmup", "0", "--decode-tokens", "2", "--out", str(tmp_path)]) == 0
    assert "uniform@0.25" in capsys.readouterr().out
    assert json.loads((tmp_path / "bench.json").read_text())["rows"][1]["visual_llm_input"] == 16


def test_one_decoded_token_reports_no_throughput_and_strict_json(tmp_path):
    # With one new token there is no decoding to time: no throughput (null in JSON, not
    # NaN), and the table and the other ratios still come out.
    model = tiny_llava(layers=2)
    target = Target("tiny", model, synthetic_batch(model, 1, 8, (8, 8)))
    result = run_bench(target, [Variant("uniform", 0.5)], repeats=1, warmup=0, decode_tokens=1)
    base, uniform = result.rows
    assert base.new_tokens == 0 and base.decode_s == [] and base.decode_tokens_per_s is None
    ratios = result.ratios(uniform)
    assert ratios["decode_throughput"] is None and result.speedups(uniform)["decode"].median is None
    assert ratios["ideal_llm_time"] < 1
    assert "uniform@0.5" in format_table(result)
    write_json(result, tmp_path / "bench.json")
    text = (tmp_path / "bench.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    assert data["rows"][0]["decode_tokens_per_s"] is None


def test_a_figure_carries_its_spread_and_a_wide_one_is_unclear():
    from vtprune.bench.figures import READABLE_SPREAD, Figure

    steady = Figure.ratio([10.0, 10.2, 9.8], [5.0, 5.0, 5.0])
    assert steady.median == 2.0 and steady.spread == pytest.approx(0.08) and steady.readable
    assert steady.text() == "2.00x ±2%"
    noisy = Figure.ratio([10.0, 4.0, 20.0], [5.0, 5.0, 5.0])  # sts 0.49x, random 2.07x from such runs
    assert noisy.relative_spread > READABLE_SPREAD and not noisy.readable
    assert noisy.text().startswith("unclear (2.00x ±")
    assert Figure.of([]).text() == "-" and Figure.of([float("nan")]).median is None


@pytest.mark.parametrize("option, value", [("repeats", 0), ("warmup", -1), ("decode_tokens", 0)])
def test_bad_bench_settings_name_the_setting(option, value):
    model = tiny_llava(layers=2)
    target = Target("tiny", model, synthetic_batch(model, 1, 8, (8, 8)))
    with pytest.raises(ValueError, match=option):
        run_bench(target, [], **{option: value})


def test_cli_refuses_bad_settings_before_building_a_model(capsys):
    from vtprune.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "--arch", "llava-1.5-7b", "--repeats", "0"])
    assert "--repeats: must be an integer >= 1; got '0'" in capsys.readouterr().err
