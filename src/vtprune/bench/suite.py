"""The speed suite: every registered method at three budgets on both 7B shapes.

Each shape is one :func:`~vtprune.bench.runner.run_bench` run, the unpruned model
interleaved with every (method, budget), so every ratio is against the unpruned model
of the same run. LLaVA-1.5-7B is measured at 64, 128 and 192 of its 576 visual tokens,
Qwen2.5-VL-7B at the same shares (0.111, 0.222, 0.333). Three presets:

- ``full``: both shapes at full depth (a GPU: ``scripts/bench-gpu``);
- ``cpu``: the language models truncated to :attr:`Shape.cpu_layers` layers, so the
  whole suite runs in about 20 minutes on a 2-core machine; a method whose layers the
  truncated model lacks is reported as not run, with the reason;
- ``tiny``: the tiny test architectures, to check the suite itself in seconds.

:mod:`~vtprune.bench.throughput` adds batch throughput on the LLaVA shape;
:mod:`~vtprune.bench.suite_report` writes the table, JSON and plot.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

PRESETS = ("cpu", "full", "tiny")


@dataclass(frozen=True)
class Shape:
    """One architecture of the suite and how each preset builds it."""

    name: str  # the real-scale architecture
    budgets: tuple[int | float, ...]
    tiny: str  # the tiny architecture standing in for it in the ``tiny`` preset
    cpu_layers: int  # language-model depth in the ``cpu`` preset
    grid: tuple[int, int] = (24, 24)  # image token grid where images vary (Qwen)
    cpu_grid: tuple[int, int] = (24, 24)

    def arch(self, preset: str) -> str:
        return self.tiny if preset == "tiny" else self.name

    def budgets_for(self, preset: str) -> tuple[int | float, ...]:
        """The budgets; on the tiny stand-ins (64 tokens an image) as shares of 576."""
        if preset != "tiny":
            return self.budgets
        return tuple(round(b / 576, 3) if isinstance(b, int) else b for b in self.budgets)

    def layers_for(self, preset: str, override: int | None) -> int | None:
        if override is not None:
            return override
        return {"cpu": self.cpu_layers, "tiny": 4}.get(preset)

    def grid_for(self, preset: str) -> tuple[int, int]:
        return {"cpu": self.cpu_grid, "tiny": (8, 8)}.get(preset, self.grid)


SHAPES = {
    "llava-1.5-7b": Shape("llava-1.5-7b", (64, 128, 192), "tiny-llava", cpu_layers=4),
    # 24 x 24 tokens: the 576 visual tokens of LLaVA's image (a 672-pixel square image).
    "qwen2.5-vl-7b": Shape("qwen2.5-vl-7b", (0.111, 0.222, 0.333), "tiny-qwen2.5-vl", cpu_layers=4,
                           cpu_grid=(12, 12)),
}
THROUGHPUT_SHAPE = "llava-1.5-7b"


@dataclass
class SuiteSettings:
    """What one suite run measures (see ``vtprune bench --help``)."""

    preset: str = "cpu"
    shapes: tuple[str, ...] = tuple(SHAPES)
    methods: tuple[str, ...] | None = None  # None: every registered method
    layers: int | None = None  # overrides the preset's depth for every shape
    repeats: int = 3
    warmup: int = 1
    decode_tokens: int = 4
    prompt_tokens: int = 64
    throughput_batches: tuple[int, ...] = (8, 32)  # () : no throughput section
    throughput_methods: tuple[str, ...] | None = None  # None: the preset's choice
    throughput_repeats: int = 2
    dtype: str | None = None
    device: str | None = None
    extra: dict = field(default_factory=dict)

    def check(self) -> None:
        """A bad combination is a ``ValueError`` naming the option and what it accepts."""
        if self.preset not in PRESETS:
            raise ValueError(f"--suite must be one of {', '.join(PRESETS)}; got {self.preset!r}")
        unknown = [s for s in self.shapes if s not in SHAPES]
        if unknown:
            raise ValueError(f"--suite shapes must be among {', '.join(SHAPES)}; got {unknown[0]!r}")
        if any(b < 1 for b in self.throughput_batches):
            raise ValueError("--throughput: batch sizes are integers >= 1 (or 0 alone: no throughput section)")


def throughput_variants(settings: SuiteSettings, shape: Shape) -> list:
    """The variants of the batch-throughput section: each chosen method at the middle
    budget. The ``cpu`` preset takes two (a pre-LLM selection and an in-LLM method),
    since a batch of 8 through the vision tower takes a minute there."""
    from ..registry import method_names
    from ..variants import Variant

    keep = shape.budgets_for(settings.preset)[len(shape.budgets) // 2]
    names = settings.throughput_methods
    if names is None:
        names = ("divprune", "fastv") if settings.preset == "cpu" else tuple(settings.methods or method_names())
    return [Variant(name, keep) for name in names]


def preflight(settings: SuiteSettings) -> None:
    """Every check that needs no model: the settings, the methods and their budgets
    (:func:`vtprune.preflight.check_budgets`); a method a shape cannot run is left to
    the run, which reports it as not run."""
    from ..preflight import check_budgets
    from ..registry import method_names

    settings.check()
    for name in settings.shapes:
        shape = SHAPES[name]
        check_budgets(list(settings.methods or method_names()), shape.budgets_for(settings.preset))
    if settings.throughput_methods:
        check_budgets(list(settings.throughput_methods), [SHAPES[THROUGHPUT_SHAPE].budgets[1]])


@dataclass
class SuiteResult:
    settings: SuiteSettings
    shapes: dict[str, Any]  # shape name -> BenchResult
    throughput: Any = None  # ThroughputResult, or None


def run_suite(
    settings: SuiteSettings,
    *,
    progress: Callable[[str, int], Any] | None = None,
    done: Callable[["SuiteResult"], Any] | None = None,
) -> SuiteResult:
    """Measure every shape of ``settings`` (one interleaved run each), then the batch
    throughput on the LLaVA shape. ``progress(description, total)`` returns a bar for
    each part (``None``: no bars); ``done(result so far)`` is called after each part, so
    a long run leaves its finished parts written."""
    import torch

    from ..loading import default_device, default_dtype
    from ..registry import method_names
    from ..variants import Variant
    from .inputs import load_target
    from .runner import run_bench
    from .throughput import run_throughput

    preflight(settings)
    device = default_device(settings.device)
    dtype = default_dtype(settings.dtype, device)
    methods = list(settings.methods or method_names())
    result = SuiteResult(settings, {})

    def target_of(shape: Shape):
        return load_target(model_id=None, arch=shape.arch(settings.preset),
                           layers=shape.layers_for(settings.preset, settings.layers), batch_size=1,
                           text_tokens=settings.prompt_tokens, grid=shape.grid_for(settings.preset),
                           dtype=dtype, device=device)

    def release() -> None:
        if device.type == "cuda":
            torch.cuda.empty_cache()

    for name in settings.shapes:
        shape = SHAPES[name]
        target = target_of(shape)
        prime(target)
        variants = [Variant(m, k) for m in methods for k in shape.budgets_for(settings.preset)]
        bar = _bar(progress, f"suite {name}", (settings.warmup + settings.repeats) * (len(variants) + 1))
        try:
            result.shapes[name] = run_bench(target, variants, repeats=settings.repeats, warmup=settings.warmup,
                                            decode_tokens=settings.decode_tokens, progress=bar)
        finally:
            _close(bar)
        del target
        release()
        if done is not None:
            done(result)
    if settings.throughput_batches and THROUGHPUT_SHAPE in settings.shapes:
        shape = SHAPES[THROUGHPUT_SHAPE]
        target = target_of(shape)
        variants = throughput_variants(settings, shape)
        bar = _bar(progress, "throughput",
                   (settings.warmup + settings.throughput_repeats) * (len(variants) + 1) * len(settings.throughput_batches))
        try:
            result.throughput = run_throughput(target, variants, settings.throughput_batches,
                                               text_tokens=settings.prompt_tokens, grid=shape.grid_for(settings.preset),
                                               repeats=settings.throughput_repeats, warmup=settings.warmup,
                                               decode_tokens=settings.decode_tokens, progress=bar)
        finally:
            _close(bar)
        del target
        release()
        if done is not None:
            done(result)
    return result


def prime(target) -> None:
    """One untimed prefill of the unpruned model, so the one-time costs of a first
    forward (allocations, kernel choices) fall outside every timed repetition even with
    no warm-up repetitions."""
    import torch

    with torch.inference_mode():
        target.model(**target.batch, use_cache=True, logits_to_keep=1)


def _bar(progress, description: str, total: int):
    return None if progress is None else progress(description, total)


def _close(bar) -> None:
    if bar is not None and hasattr(bar, "close"):
        bar.close()


def settings_for(preset: str, **options: Any) -> SuiteSettings:
    """The settings of ``preset`` with ``options`` (``None`` values keep the preset's)."""
    defaults = {"full": dict(repeats=5, decode_tokens=16, throughput_repeats=3),
                "cpu": dict(repeats=1, warmup=0, decode_tokens=2, throughput_repeats=1, throughput_batches=(8,)),
                "tiny": dict(repeats=1, warmup=0, decode_tokens=2, throughput_repeats=1,
                             throughput_batches=(2, 4))}
    settings = replace(SuiteSettings(preset=preset), **defaults.get(preset, {}))
    return replace(settings, **{k: v for k, v in options.items() if v is not None})


def shape_names(values: Sequence[str] | None) -> tuple[str, ...]:
    return tuple(values) if values else tuple(SHAPES)
