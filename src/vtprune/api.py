"""The public surface: ``prune``, ``PruneHandle``, ``disabled``, ``methods``."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterator

import torch
from torch import nn

from .config import PruneConfig
from .checks import require_layer
from .models import adapter_class_for_config, adapter_for
from .registry import Method, ModelShape, all_methods, get_method, method_for_config, method_names
from .runtime.hooks import PruningHooks
from .runtime.last_forward import PruneStats

_ATTRIBUTE = "_vtprune_handle"  # set on the model's multimodal core while pruning is on


class PruneHandle:
    """What :func:`prune` returns: the active method on one model instance.

    ``last_keep`` and ``stats`` describe the last forward that brought images;
    ``remove()`` restores the exact original model. Also a context manager that
    removes itself on exit.
    """

    def __init__(self, model: nn.Module, method: Method, config: PruneConfig, session: PruningHooks) -> None:
        self.model = model
        self.method = method.name
        self.config = config
        self._session = session

    @property
    def active(self) -> bool:
        return getattr(self._session.adapter.core, _ATTRIBUTE, None) is self

    @property
    def last_keep(self) -> list[list[torch.Tensor]] | None:
        """Per sample, per image: sorted kept indices into that image's visual tokens
        (``None`` before the first forward with images)."""
        return None if self._session.last is None else self._session.last.last_keep

    @property
    def keep_by_stage(self) -> dict[str, list[list[torch.Tensor]]] | None:
        """Stage ("pre_llm", "llm:K") -> per sample, per image, the kept indices after that
        stage, for the last forward with images (in-LLM methods: the LLM input first)."""
        return None if self._session.last is None else self._session.last.keep_by_stage

    @property
    def last_merge(self) -> list[list[torch.Tensor | None]] | None:
        """Per sample, per image: for each visual token, the index of the kept token its
        features were merged into (-1: none); ``None`` for an image no stage merged."""
        return None if self._session.last is None else self._session.last.last_merge

    @property
    def stats(self) -> PruneStats | None:
        """Visual tokens per sample before pruning, at the LLM input and averaged over
        layers, for the last forward with images."""
        return None if self._session.last is None else self._session.last.stats

    def remove(self) -> None:
        """Take the hooks off; the model is exactly as before :func:`prune`. Idempotent."""
        self._session.remove()
        core = self._session.adapter.core
        if getattr(core, _ATTRIBUTE, None) is self:
            delattr(core, _ATTRIBUTE)

    def __enter__(self) -> "PruneHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "active" if self.active else "removed"
        return f"PruneHandle({self.config!r}, {state})"


def _make_config(method: str | PruneConfig, overrides: dict[str, Any]) -> tuple[Method, PruneConfig]:
    if isinstance(method, PruneConfig):
        spec = method_for_config(method)
        return spec, dataclasses.replace(method, **overrides) if overrides else method
    if isinstance(method, type) and issubclass(method, PruneConfig):
        method = method.method  # a config class names its method
    if not isinstance(method, str):
        raise TypeError(
            f"method must be a method name (one of {method_names()}) or a PruneConfig instance; "
            f"got {type(method).__name__}"
        )
    spec = get_method(method)
    accepted = [f.name for f in dataclasses.fields(spec.config)]
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise TypeError(f"{spec.name} has no option(s) {unknown}; accepted: {accepted}")
    return spec, spec.config(**overrides)


def prune(model: nn.Module, method: str | PruneConfig, **config: Any) -> PruneHandle:
    """Prune the visual tokens ``model`` sees, in place, with ``method``.

    ``method`` is a registered name (``"uniform"``) with its options as keywords
    (``keep=0.25``), or a config object (``UniformConfig(keep=64)``). Everything is
    validated before the model is touched; pruning a model that is already pruned
    replaces the previous method. ``generate`` and ``forward`` are called as before.
    """
    spec, cfg, adapter, stages = _plan(model, method, config)
    session = PruningHooks(adapter, cfg, stages)  # loads any helper model a stage needs, or raises
    previous = getattr(adapter.core, _ATTRIBUTE, None)
    if previous is not None:
        previous.remove()
    session.install()
    handle = PruneHandle(model, spec, cfg, session)
    setattr(adapter.core, _ATTRIBUTE, handle)
    return handle


def _plan(model: Any, method: str | PruneConfig, config: dict[str, Any]):
    """Everything :func:`prune` checks before touching the model (or, given the model's
    transformers config, before loading it); the adapter is ``None`` for a config."""
    spec, cfg = _make_config(method, config)
    if isinstance(model, nn.Module):
        adapter = adapter_for(model)
        family, model_config = type(adapter), adapter.config
        shape = ModelShape(adapter.num_layers, adapter.image_tokens)
    else:
        adapter, model_config = None, model
        family = adapter_class_for_config(model_config)
        shape = family.shape_of(model_config)
    if isinstance(getattr(cfg, "layer", None), int):
        require_layer("layer", cfg.layer, shape.num_layers)
    cfg = spec.resolve(cfg, shape)
    stages = spec.stages(cfg, shape.num_layers)
    family.check_config_stages(model_config, stages)
    return spec, cfg, adapter, stages


def validate(model: Any, method: str | PruneConfig, **config: Any) -> PruneConfig:
    """The config :func:`prune` would apply to ``model``, or the error it would raise
    (a budget a method cannot meet on this model, a layer it lacks...), without
    touching the model or loading anything.

    ``model`` is a model instance, or its transformers config (such as
    ``AutoConfig.from_pretrained(model_id)``): a request can be checked before the
    weights are loaded."""
    return _plan(model, method, config)[1]


def active_handle(model: nn.Module) -> PruneHandle | None:
    """The handle pruning ``model``, if any."""
    inner = getattr(model, "model", None)
    for core in (inner, model):  # the handle sits on the multimodal core, the model's own or itself
        handle = getattr(core, _ATTRIBUTE, None) if isinstance(core, nn.Module) else None
        if handle is not None:
            return handle
    return None


@contextlib.contextmanager
def disabled(model: nn.Module) -> Iterator[None]:
    """Run ``model`` unpruned inside the block; the method comes back afterwards."""
    handle = active_handle(model)
    if handle is None:
        yield
        return
    session = handle._session
    session.enabled, was = False, session.enabled
    session.reset()
    try:
        yield
    finally:
        session.enabled = was
        session.reset()


def methods() -> list[dict[str, object]]:
    """Every registered method: name, stage(s), signals it needs, paper, summary."""
    return [m.describe() for m in all_methods()]
