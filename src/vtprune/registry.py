"""Method registry: name -> (config class, stages, paper).

A method's config class registers it when the class is defined (see
:class:`vtprune.config.PruneConfig`); :func:`register` does the same for a config and
selection function written elsewhere. A method is one or more *stages*; a stage says
where it acts (``"pre_llm"``, or ``"llm:K"``: after the first K decoder layers ran on the
full sequence), which signals it reads, and its pure selection function
``select(signals, budget, config) -> Selection | LongTensor``.

The config class is the dispatch key (as in torchao's ``quantize_``): a config
instance is enough to find its method. Nothing here imports torch: the built-in
methods' selection functions are :func:`lazy_select` references, imported from
:mod:`vtprune.pruning_methods` at their first call.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Union

from .config import PruneConfig

if TYPE_CHECKING:
    import torch

PRE_LLM = "pre_llm"
_LLM_STAGE = re.compile(r"^llm:(\d+)$")


class Selection(NamedTuple):
    """What a stage decides for a group of images.

    keep:     (I, k) indices into the current tokens of each image. Order is free; the
              runtime sorts them.
    features: optional (I, k, D) replacement features for the kept tokens, for methods
              that merge the dropped tokens into the kept ones. ``None`` keeps the
              tokens' own features.
    owner:    optional (I, N) for merging methods: for every current token, the column
              of ``keep`` whose feature it went into (-1: into none). Only read to show
              and report the merge; ``features`` is what the model sees.
    slots:    optional (I, k), inside the language model only: for every column of
              ``keep``, its rank (a permutation of 0..k-1 per image) among the places the
              image's kept tokens occupy after the stage, so the kept tokens take those
              places in this order (the methods whose merged tokens follow the kept
              ones). ``None``: sequence order. The places keep their position ids, mask
              and RoPE tables; the tokens move (features and what they are).
    """

    keep: torch.Tensor
    features: torch.Tensor | None = None
    owner: torch.Tensor | None = None
    slots: torch.Tensor | None = None


SelectFn = Callable[..., Union[Selection, "torch.Tensor"]]


ShareFn = Callable[[int, int, PruneConfig], int]

SELECTION_PACKAGE = f"{__package__}.pruning_methods"


@dataclass(frozen=True)
class LazySelect:
    """A selection function named by its module in :mod:`vtprune.pruning_methods` and its
    name, imported at the first call (the module imports torch); ``bound`` are keyword
    arguments passed on every call, as ``functools.partial`` would."""

    module: str
    function: str
    bound: tuple[tuple[str, Any], ...] = ()

    def __call__(self, signals: Any, budget: int, config: PruneConfig) -> Any:
        return _import_selection(self.module, self.function)(signals, budget, config, **dict(self.bound))

    def resolve(self) -> Callable[..., Any]:
        """The function itself (imports its module)."""
        return _import_selection(self.module, self.function)


def lazy_select(module: str, function: str, **bound: Any) -> LazySelect:
    """``pruning_methods.<module>.<function>``, imported when the stage first selects."""
    return LazySelect(module, function, tuple(sorted(bound.items())))


@cache
def _import_selection(module: str, function: str) -> Callable[..., Any]:
    return getattr(importlib.import_module(f"{SELECTION_PACKAGE}.{module}"), function)


@dataclass(frozen=True)
class Stage:
    """One point where a method prunes.

    share: tokens this stage keeps of an image, from the image's budget and token count
           (``share(budget, tokens, config)``; STS's first stage keeps a pool of 2B);
           ``None``: the budget. Computed per image, then shared among the image's
           grids like the budget, and passed to ``select`` as its budget.
    """

    where: str
    select: SelectFn
    needs: frozenset[str] = frozenset()
    share: ShareFn | None = None

    def __post_init__(self) -> None:
        if self.where != PRE_LLM and not _LLM_STAGE.match(self.where):
            raise ValueError(f"stage location must be 'pre_llm' or 'llm:K'; got {self.where!r}")

    @property
    def layer(self) -> int | None:
        """K for an in-LLM stage, ``None`` before the LLM."""
        match = _LLM_STAGE.match(self.where)
        return int(match.group(1)) if match else None


StagesFn = Callable[[PruneConfig, int], list[Stage]]


class ModelShape(NamedTuple):
    """What a method may know of the model when it is applied."""

    num_layers: int  # decoder layers of the language model
    image_tokens: int | None  # visual tokens per image when fixed (LLaVA-1.5: 576), else None


PrepareFn = Callable[[PruneConfig, ModelShape], PruneConfig]

DESCRIBE_LAYERS = 32  # the depth `describe` assumes (LLaVA-1.5-7B, Qwen2.5-VL-7B have 32 / 28)


@dataclass(frozen=True)
class Method:
    """A registered method. ``stages(config, num_layers)`` builds the stage list,
    because where a stage acts and what it needs may depend on config fields (the
    layer K) and on the language model's depth (PDrop's layers scale with it)."""

    name: str
    config: type[PruneConfig]
    stages: StagesFn
    paper: str
    summary: str
    prepare: PrepareFn | None = None  # resolves config choices left to the model (or rejects them)

    def resolve(self, config: PruneConfig, shape: ModelShape) -> PruneConfig:
        """The config as it will run on a model of this shape (validated against it)."""
        return config if self.prepare is None else self.prepare(config, shape)

    def describe(self) -> dict[str, object]:
        """Name, stage(s), needs and paper, with the default config's values."""
        config = self.resolve(self.config(), ModelShape(DESCRIBE_LAYERS, 576))
        stages = self.stages(config, DESCRIBE_LAYERS)
        return {
            "name": self.name,
            "stage": " -> ".join(s.where for s in stages),
            "needs": sorted(set().union(*(s.needs for s in stages))),
            "paper": self.paper,
            "summary": self.summary,
            "config": self.config.__name__,
        }


_METHODS: dict[str, Method] = {}
_BY_CONFIG: dict[type[PruneConfig], Method] = {}


def _add(method: Method) -> None:
    name, config = method.name, method.config
    if name in _METHODS and _METHODS[name].config is not config:
        raise ValueError(f"method name {name!r} is already registered")
    _METHODS[name] = method
    _BY_CONFIG[config] = method


def _config_stages(config: PruneConfig, num_layers: int) -> list[Stage]:
    return config.stages(num_layers)


def _config_prepare(config: PruneConfig, shape: ModelShape) -> PruneConfig:
    return config.prepare(shape)


def register_config(config: type[PruneConfig]) -> None:
    """Register the method a config class defines: its ``method``, ``paper``, ``summary``,
    ``stages`` and, when it has one, ``prepare``. Called when such a class is defined."""
    for attribute in ("paper", "summary"):
        if not getattr(config, attribute):
            raise ValueError(f"{config.__name__}.{attribute} must describe the method {config.method!r}")
    prepare = _config_prepare if config.prepare is not PruneConfig.prepare else None
    _add(Method(config.method, config, _config_stages, config.paper, config.summary, prepare))


def register(
    config: type[PruneConfig],
    *,
    paper: str,
    summary: str,
    stages: StagesFn | None = None,
    prepare: PrepareFn | None = None,
    where: str = PRE_LLM,
    needs: frozenset[str] | set[str] = frozenset(),
) -> Callable[[SelectFn], SelectFn]:
    """Register a method under ``config.method``, for a config class that does not
    define its own stages (a config that does is registered when it is defined).

    Single-stage methods decorate their selection function and give ``where`` and
    ``needs``; methods whose stages depend on the config or the model depth pass
    ``stages`` ((config, num_layers) -> list of stages) instead, and decorate any one
    of their functions (or call ``register(...)(fn)``).
    """
    name = config.method
    if not name:
        raise ValueError(f"{config.__name__}.method must name the method")

    def decorator(fn: SelectFn) -> SelectFn:
        if stages is not None:
            build = stages
        else:
            single = Stage(where, fn, frozenset(needs))
            build = lambda cfg, num_layers: [single]  # noqa: E731 - fixed single stage
        _add(Method(name, config, build, paper, summary, prepare))
        return fn

    return decorator


def _ensure_loaded() -> None:
    # Defining the built-in configs registers their methods (no torch is imported).
    importlib.import_module(f"{__package__}.configs")


def method_names() -> list[str]:
    _ensure_loaded()
    return sorted(_METHODS)


def get_method(name: str) -> Method:
    """The method registered under ``name``; ``ValueError`` listing the names otherwise."""
    _ensure_loaded()
    if not isinstance(name, str) or name.lower() not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}; got {name!r}")
    return _METHODS[name.lower()]


def method_for_config(config: PruneConfig) -> Method:
    _ensure_loaded()
    for cls in type(config).__mro__:
        if cls in _BY_CONFIG:
            return _BY_CONFIG[cls]
    raise TypeError(
        f"{type(config).__name__} is not a registered method config; "
        f"accepted: {sorted(c.__name__ for c in _BY_CONFIG)}"
    )


def all_methods() -> list[Method]:
    _ensure_loaded()
    return [_METHODS[n] for n in sorted(_METHODS)]


def list_methods() -> list[dict[str, object]]:
    """Every registered method: name, stage(s), signals it needs, paper, summary, config."""
    return [method.describe() for method in all_methods()]
