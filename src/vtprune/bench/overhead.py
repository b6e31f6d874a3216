"""How much a method's own work (selection and compaction) adds to a prefill.

Times vtprune's hooks directly, with timing hooks placed before and after them on the
same modules, and compares with the unpruned prefill of the same model in the same
run. On a CPU the language model is truncated to a few layers; the unpruned prefill
of the full depth is then extrapolated linearly from two truncated depths (vision
tower + per-layer cost), which the report says.

    python -m vtprune.bench.overhead --arch llava-1.5-7b --method uniform --keep 0.25
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

import torch

import vtprune
from vtprune.bench.architectures import ARCHITECTURES, build
from vtprune.testing import IMAGE, Image, make_batch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class HookTimer:
    """Seconds spent inside the hooks registered between this timer's two hooks."""

    def __init__(self, modules: list[torch.nn.Module], device: torch.device) -> None:
        self.device, self.total, self._start = device, 0.0, 0.0
        self._handles = []
        for module in modules:
            self._handles.append(module.register_forward_pre_hook(self._begin, prepend=True))
            self._handles.append(module.register_forward_pre_hook(self._end))

    def _begin(self, *_):
        _sync(self.device)
        self._start = time.perf_counter()

    def _end(self, *_):
        _sync(self.device)
        self.total += time.perf_counter() - self._start

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def measure(arch: str, method: str, keep: float, layers: list[int], repeats: int, device: str, dtype: torch.dtype) -> dict:
    dev = torch.device(device)
    prompt = [[30, IMAGE if arch.startswith("llava") else Image(24, 24), 40]]
    results = {"arch": arch, "method": method, "keep": keep, "device": device, "dtype": str(dtype), "by_depth": []}
    for depth in layers:
        model = build(arch, layers=depth, dtype=dtype, device=device)
        batch = {k: v.to(dev) for k, v in make_batch(model, prompt).items()}
        with torch.inference_mode():
            unpruned = _median_seconds(lambda: model(**batch), dev, repeats)
            handle = vtprune.prune(model, method, keep=keep)
            core = handle._session.adapter
            timer = HookTimer([core.vision_module, core.core, core.language_model], dev)
            pruned = _median_seconds(lambda: model(**batch), dev, repeats)
            timer.total = 0.0
            for _ in range(repeats):
                model(**batch)
            hooks = timer.total / repeats
            timer.remove()
            stats = handle.stats
            handle.remove()
        results["by_depth"].append(
            {"layers": depth, "unpruned_s": unpruned, "pruned_s": pruned, "hooks_s": hooks,
             "visual_before": stats.total_before, "visual_llm_input": stats.total_llm_input}
        )
        del model
    full_depth = build_depth(arch)
    if len(layers) >= 2:
        (d0, t0), (d1, t1) = [(r["layers"], r["unpruned_s"]) for r in results["by_depth"][:2]]
        per_layer = (t1 - t0) / (d1 - d0)
        results["unpruned_full_depth_s"] = t0 + per_layer * (full_depth - d0)
        results["full_depth"] = full_depth
        hooks = statistics.median(r["hooks_s"] for r in results["by_depth"])
        results["overhead_share_full_depth"] = hooks / results["unpruned_full_depth_s"]
    for r in results["by_depth"]:
        r["overhead_share"] = r["hooks_s"] / r["unpruned_s"]
    return results


def build_depth(arch: str) -> int:
    return {"llava-1.5-7b": 32, "qwen2.5-vl-7b": 28}[arch]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=ARCHITECTURES, default="llava-1.5-7b")
    parser.add_argument("--method", default="uniform")
    parser.add_argument("--keep", type=float, default=0.25)
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 4], help="truncated depths to measure")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None)
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if args.device.startswith("cuda") else torch.float32)
    result = measure(args.arch, args.method, args.keep, args.layers, args.repeats, args.device, dtype)
    for r in result["by_depth"]:
        print(
            f"{r['layers']:>2} layers: unpruned prefill {r['unpruned_s'] * 1e3:8.1f} ms, pruned {r['pruned_s'] * 1e3:8.1f} ms, "
            f"selection+compaction {r['hooks_s'] * 1e3:6.2f} ms = {r['overhead_share']:.2%} of unpruned"
        )
    if "overhead_share_full_depth" in result:
        print(
            f"full depth ({result['full_depth']} layers, extrapolated): unpruned prefill "
            f"{result['unpruned_full_depth_s'] * 1e3:.0f} ms; selection+compaction = {result['overhead_share_full_depth']:.2%}"
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
