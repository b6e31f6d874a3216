"""Where the time of one unpruned prefill goes at batch 1, and the least a pruned one
can take: the language model alone at 1, 64, 128, 192 and the full number of tokens,
against the whole prefill (vision tower and projector included).

    python benchmarks/forward_floor.py [--arch llava-1.5-7b qwen2.5-vl-7b] [--layers N] [--repeats 10]

Random weights, bf16 on a GPU (fp32 on a CPU), SDPA, inputs as ``vtprune bench`` builds
them. The language model at 1 token is the cost of running its layers at all (on a GPU
at batch 1, mostly the host launching kernels): no pruned prefill goes below it plus
the vision tower, whatever it keeps. Medians over ``--repeats`` after two warm-ups, in
milliseconds, with half their spread (as ``vtprune bench`` reports them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vtprune.bench.figures import Figure  # noqa: E402
from vtprune.bench.inputs import load_target  # noqa: E402
from vtprune.bench.measure import timed  # noqa: E402
from vtprune.loading import default_device, default_dtype  # noqa: E402


def milliseconds(fn, device: torch.device, repeats: int) -> str:
    for _ in range(2):
        fn()
    figure = Figure.of([1000 * timed(fn, device) for _ in range(repeats)])
    return f"{figure.median:.1f}±{figure.spread:.1f}"


def floors(arch: str, layers: int | None, repeats: int, device: torch.device, dtype: torch.dtype) -> dict:
    target = load_target(model_id=None, arch=arch, layers=layers, batch_size=1, text_tokens=64, grid=(24, 24),
                         dtype=dtype, device=device)
    model, batch = target.model, target.batch
    language_model = model.model.language_model
    total = batch["input_ids"].shape[1]
    result = {"arch": target.name, "prompt_tokens": total}
    with torch.inference_mode():
        result["prefill_ms"] = milliseconds(lambda: model(**batch), device, repeats)
        width = model.config.get_text_config().hidden_size
        for n in sorted({1, 64, 128, 192, total}):
            embeds = torch.randn(1, n, width, device=device, dtype=dtype)
            result[f"language_model_{n}_ms"] = milliseconds(lambda: language_model(inputs_embeds=embeds), device, repeats)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", default=["llava-1.5-7b", "qwen2.5-vl-7b"])
    parser.add_argument("--layers", type=int, default=None, help="truncate the language model (default: full depth)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = default_device(args.device)
    dtype = default_dtype(None, device)
    for arch in args.arch:
        row = floors(arch, args.layers, args.repeats, device, dtype)
        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
