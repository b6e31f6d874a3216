"""Where the selection time of methods goes, as shares of the unpruned prefill.

    python benchmarks/selection_share.py --method coast sts --keep 64 128 192 \
        [--arch llava-1.5-7b --layers 4 --repeats 3] [--profile coast@128]

One process, the unpruned prefill and each variant's pruned prefill interleaved in
every repetition, so a slow spell of a shared machine affects both sides of a ratio.
For each variant it prints, as medians (with the range) over the repetitions of the
time divided by that repetition's unpruned prefill:

* ``hooks``: everything inside vtprune's hooks (what ``vtprune bench`` reports as the
  selection share);
* ``select``: the stages' own work (``run_stages``: signals and the selection code);
* ``signals``: of which computing the declared signals (attention rows, ...);
* ``rest``: the hooks' other work (compaction, masks, RoPE tables, bookkeeping).

``--profile VARIANT`` adds a torch.profiler table of the operators inside the hooks of
one extra pruned prefill of that variant, and the number of host-device sync points
(``item``, ``tolist``, ``bool``/``int`` of a tensor, ``nonzero``) the hooks reach.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vtprune.bench.inputs import load_target  # noqa: E402
from vtprune.bench.measure import HookTimer  # noqa: E402
from vtprune.bench.runner import _hooked_modules  # noqa: E402
from vtprune.runtime import layer_stages, prefill, signal_source  # noqa: E402
from vtprune.variants import Variant, pruned, runnable  # noqa: E402

SECONDS: dict[str, float] = defaultdict(float)


def _timed(name: str, fn, label=lambda args: ""):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            with torch.autograd.profiler.record_function(f"{name}{label(args)}"):
                return fn(*args, **kwargs)
        finally:
            SECONDS[name] += time.perf_counter() - start

    return wrapper


def instrument() -> None:
    """Time the stages' work and the signals inside them (the hooks' own calls)."""
    layer_stages.run_stages = _timed("select", layer_stages.run_stages)
    prefill.run_stages = _timed("select", prefill.run_stages)
    signal_source.SignalSource.__call__ = _timed(
        "signals", signal_source.SignalSource.__call__, lambda args: f" {args[1]}"
    )


class SyncCounter(torch.overrides.TorchFunctionMode):
    """Counts the calls that make the host wait for a tensor's values."""

    NAMES = {"item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero", "unique", "masked_select"}

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = defaultdict(int)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if name in self.NAMES:
            frames = [f for f in traceback.extract_stack()[:-1] if "vtprune" in f.filename and "benchmarks" not in f.filename]
            where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
            self.counts[f"{name} ({where})"] += 1
        return func(*args, **(kwargs or {}))


@contextmanager
def hooks_only(modules, counter: "SyncCounter | None" = None):
    """A profiler range (and, with ``counter``, the sync counter) around each hook's work."""
    ranges = []

    def begin(*_):
        ranges.append(torch.autograd.profiler.record_function("vtprune hooks"))
        ranges[-1].__enter__()
        if counter is not None:
            counter.__enter__()

    def end(*_):
        if counter is not None:
            counter.__exit__(None, None, None)
        ranges.pop().__exit__(None, None, None)

    handles = []
    for module in modules:
        handles += [
            module.register_forward_pre_hook(begin, prepend=True),
            module.register_forward_pre_hook(end),
            module.register_forward_hook(lambda *a: begin(), prepend=True),
            module.register_forward_hook(lambda *a: end()),
        ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def breakdown(events, label: str, rows: int = 30) -> str:
    """Self CPU time inside the hooks by the innermost range (a signal, the stages'
    selection, or the hooks' other work) and operator, largest first."""
    self_us: dict[tuple[str, str], float] = defaultdict(float)
    calls: dict[tuple[str, str], int] = defaultdict(int)
    per_range: dict[str, float] = defaultdict(float)
    total = 0.0
    for event in events:
        if event.name == "vtprune hooks":
            total += event.cpu_time_total
            continue
        parent, where = event.cpu_parent, None
        while parent is not None and parent.name != "vtprune hooks":
            if where is None and parent.name.startswith(("signals", "select")):
                where = parent.name
            parent = parent.cpu_parent
        if parent is None or event.name.startswith(("signals", "select")):
            continue
        key = (where or "other hook work", event.name)
        self_us[key] += event.self_cpu_time_total
        calls[key] += 1
        per_range[key[0]] += event.self_cpu_time_total
    lines = [f"{label}: {total / 1e3:.1f} ms inside the hooks (profiled); operators' self time by range:"]
    for where, us in sorted(per_range.items(), key=lambda item: -item[1]):
        lines.append(f"  {us / 1e3:9.2f} ms  {where}")
    lines.append("  largest:")
    for (where, name), us in sorted(self_us.items(), key=lambda item: -item[1])[:rows]:
        lines.append(f"  {us / 1e3:9.2f} ms  {calls[where, name]:5d} x {name:<28} in {where}")
    return "\n".join(lines)


def figure(values: list[float]) -> str:
    return f"{100 * statistics.median(values):.2f}% [{100 * min(values):.2f}-{100 * max(values):.2f}]"


def report(shares: dict, repeats: int) -> None:
    print(f"\nshare of the unpruned prefill: median [min-max] over {repeats} repetitions")
    print(f"{'variant':<16} {'hooks':>22} {'select':>22} {'signals':>22} {'rest':>22}")
    for label, parts in shares.items():
        print(f"{label:<16} " + " ".join(f"{figure(parts[k]):>22}" for k in ("hooks", "select", "signals", "rest")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="llava-1.5-7b")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--method", nargs="+", default=[])
    parser.add_argument("--keep", nargs="+", type=float, default=[64, 128, 192])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--profile", nargs="+", default=(), help="method@keep ...: profile the hooks of these variants")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    keeps = [int(k) if k >= 1 else k for k in args.keep]
    target = load_target(model_id=None, arch=args.arch, layers=args.layers, batch_size=1,
                         text_tokens=args.prompt_tokens, grid=(24, 24), dtype=torch.float32,
                         device=torch.device("cpu"))
    model, batch = target.model, target.batch
    device = torch.device("cpu")
    variants, skipped = runnable(model, [Variant(m, k) for m in args.method for k in keeps] if args.repeats else [])
    for label, why in skipped.items():
        print(f"{label}: not run ({why.splitlines()[0][:100]})")
    instrument()
    run = lambda: model(**batch, use_cache=True, logits_to_keep=1)  # noqa: E731
    shares: dict[str, dict[str, list[float]]] = {v.label: defaultdict(list) for v in variants}
    with torch.inference_mode():
        run()  # warm-up
        for variant in variants:
            with pruned(model, variant, quiet=True):
                run()
        for rep in range(args.repeats):
            start = time.perf_counter()
            run()
            base = time.perf_counter() - start
            print(f"repetition {rep + 1}: unpruned prefill {base:.2f} s", flush=True)
            for variant in variants:
                SECONDS.clear()
                with pruned(model, variant, quiet=True) as handle:
                    timer = HookTimer(_hooked_modules(handle), device)
                    try:
                        run()
                    finally:
                        timer.remove()
                parts = shares[variant.label]
                parts["hooks"].append(timer.seconds / base)
                parts["select"].append(SECONDS["select"] / base)
                parts["signals"].append(SECONDS["signals"] / base)
                parts["rest"].append((timer.seconds - SECONDS["select"]) / base)
        if args.repeats:
            report(shares, args.repeats)
        for label in args.profile:
            method, keep = label.split("@")
            variant = Variant(method, float(keep) if "." in keep else int(keep))
            counter = SyncCounter()
            with pruned(model, variant, quiet=True) as handle:
                modules = _hooked_modules(handle)
                with hooks_only(modules, counter):
                    run()
                with hooks_only(modules), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                    run()
            print(f"\nsync points in one pruned prefill of {label} (inside the hooks): {dict(counter.counts)}")
            print(breakdown(prof.events(), label))

if __name__ == "__main__":
    main()
