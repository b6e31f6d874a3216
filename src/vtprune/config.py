"""Typed, serialisable pruning configs and the budget rule.

Every method has one dataclass derived from :class:`PruneConfig`, and the class is the
method: it names it (``method``, ``paper``, ``summary``), says where it acts and what it
reads (``stages``), and defining it registers the method (see :mod:`vtprune.registry`).
Each field is an :func:`option`: a default, a help string and a check from
:mod:`vtprune.checks`, which the one ``__post_init__`` here runs, so that a bad value is
rejected, naming the field and what it accepts, before any model is touched. Configs
round-trip through ``to_dict`` / ``from_dict`` and JSON (``save`` / ``load``). Nothing
here imports torch: the selection code is imported when a model is pruned.

Budget rule (``keep``), applied per image:

* ``int`` -> that many tokens of each image; an image with fewer tokens keeps all of
  them (so ``keep >= N`` is exactly the unpruned model). Must be >= 1.
* ``float`` in (0, 1] -> that share of each image's tokens, rounded half up to the
  nearest token and at least 1 (0.222 of 576 is 128). ``1.0`` keeps everything.
* ``bool``, 0, negative, NaN, infinity, or a float above 1 are errors.

Note that ``keep=1`` (int) keeps one token and ``keep=1.0`` (float) keeps all.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .checks import Check, choice

if TYPE_CHECKING:
    from .registry import ModelShape, Stage

POSITION_MODES = ("original", "compact")
NEWLINE_MODES = ("keep", "with_row")
VIDEO_MODES = ("prune", "keep")
FRAME_BUDGET_MODES = ("tokens", "novelty")

C = TypeVar("C", bound="PruneConfig")


def option(default: Any, help: str, *, check: Check | None = None) -> Any:
    """A config field: its default, its help string (PEFT style) and the check its values
    must pass (a field that redefines a shared one without a check keeps the shared check)."""
    metadata: dict[str, Any] = {"help": help}
    if check is not None:
        metadata["check"] = check
    return field(default=default, metadata=metadata)


help_field = option  # the earlier name, for configs written against it


def check_budget(name: str, keep: Any) -> int | float:
    """:func:`validate_keep` as a field check."""
    return validate_keep(keep, name)


def validate_keep(keep: Any, name: str = "keep") -> int | float:
    """Check a budget against the rule in the module docstring; return it unchanged."""
    accepted = "an int >= 1 (tokens per image) or a float ratio in (0, 1]"
    if isinstance(keep, bool) or not isinstance(keep, numbers.Real):
        raise TypeError(f"{name} must be {accepted}; got {keep!r} of type {type(keep).__name__}")
    if isinstance(keep, numbers.Integral):
        if keep < 1:
            raise ValueError(f"{name} must be {accepted}; got {keep}")
        return int(keep)
    keep = float(keep)
    if not math.isfinite(keep) or not 0.0 < keep <= 1.0:
        raise ValueError(f"{name} must be {accepted}; got {keep}")
    return keep


def round_half_up(x: float) -> int:
    """Nearest integer, halves up (Python's ``round`` rounds halves to even)."""
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


def resolve_budget(keep: int | float, num_tokens: int) -> int:
    """Tokens to keep of an image with ``num_tokens`` visual tokens."""
    if isinstance(keep, int):
        return min(keep, num_tokens)
    return min(num_tokens, max(1, math.floor(keep * num_tokens + 0.5)))


def split_budget(budget: int, sizes: list[int]) -> list[int]:
    """Share an image's budget among its parts (LLaVA-NeXT: base image and high-resolution
    grid) in proportion to their tokens, by largest remainder: the shares add up to the
    budget, every part gets at least one token when the budget allows, none more than
    its size."""
    if len(sizes) == 1:
        return [min(budget, sizes[0])]
    total = sum(sizes)
    exact = [budget * size / total for size in sizes]
    shares = [min(size, max(1 if budget >= len(sizes) else 0, math.floor(e))) for e, size in zip(exact, sizes)]
    order = sorted(range(len(sizes)), key=lambda i: exact[i] - math.floor(exact[i]), reverse=True)
    while sum(shares) < budget:
        grew = False
        for i in order:
            if sum(shares) < budget and shares[i] < sizes[i]:
                shares[i] += 1
                grew = True
        if not grew:
            break
    while sum(shares) > budget:  # minimums overshot a tiny budget: take from the largest
        largest = max(range(len(sizes)), key=lambda i: shares[i])
        shares[largest] -= 1
    return shares


@dataclass
class PruneConfig:
    """Fields every method shares. Subclasses add their own hyperparameters.

    A subclass that sets ``method`` (the registered name), ``paper`` and ``summary`` and
    defines :meth:`stages` is registered when it is defined (as PEFT registers a config
    with its tuner); the config class itself is then the dispatch key (as in torchao's
    ``quantize_``), so ``vtprune.prune(model, UniformConfig(keep=64))`` needs no name.
    """

    method: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    keep: int | float = option(
        0.222,
        "Visual tokens kept per image: an int count (128) or a float ratio in (0, 1] "
        "(0.222 of 576 is 128). An int above an image's token count keeps that image whole.",
        check=check_budget,
    )
    positions: str = option(
        "original",
        "'original': kept tokens keep their position ids (RoPE / M-RoPE) and decoding "
        "continues where the unpruned sequence would; 'compact': positions are renumbered "
        "as if the pruned tokens had never been there.",
        check=choice(*POSITION_MODES),
    )

    newlines: str = option(
        "keep",
        "LLaVA-NeXT / OneVision row-end tokens: 'keep' them all, or drop each 'with_row' when "
        "none of its row's tokens is kept. Other families have none.",
        check=choice(*NEWLINE_MODES),
    )
    videos: str = option(
        "prune",
        "Video tokens: 'prune' them (``keep`` applies per video, its frames pruned one by one "
        "before the LLM), or 'keep' every video whole and prune images only.",
        check=choice(*VIDEO_MODES),
    )
    frame_budget: str = option(
        "tokens",
        "How a video's budget is shared among its frames before the LLM: in proportion to "
        "their 'tokens', or by 'novelty': each frame gets as many tokens as it has among the "
        "video's budget most changed tokens (cosine to the same token of the previous frame; "
        "the first frame's tokens rank first).",
        check=choice(*FRAME_BUDGET_MODES),
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("method") and cls.stages is not PruneConfig.stages:
            from .registry import register_config  # late: the registry imports this module

            register_config(cls)

    def __post_init__(self) -> None:
        """Each field through its check (in field order), then :meth:`check_relations`."""
        for name, check in _field_checks(type(self)):
            setattr(self, name, check(name, getattr(self, name)))
        self.check_relations()

    def check_relations(self) -> None:
        """Checks between fields, once each field passed its own (none by default)."""

    # -- the method -----------------------------------------------------------------
    def stages(self, num_layers: int) -> list[Stage]:
        """Where this config prunes on a language model of ``num_layers`` decoder layers
        (``"pre_llm"`` or ``"llm:K"``), what each stage reads and its selection function
        (:func:`vtprune.registry.lazy_select`, so that torch is imported only to prune)."""
        raise NotImplementedError(f"{type(self).__name__} defines no stages")

    def prepare(self, shape: ModelShape) -> PruneConfig:
        """This config as it will run on a model of this shape: choices left to the
        model resolved, a budget the model cannot meet rejected. Unchanged by default."""
        return self

    # -- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, with the method name so that ``from_dict`` can dispatch."""
        data = dataclasses.asdict(self)
        data["method"] = self.method
        return data

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Inverse of :meth:`to_dict`. Called on the base class, dispatches by ``method``."""
        data = dict(data)
        name = data.pop("method", cls.method)
        target: type[PruneConfig] = cls
        if name and name != cls.method:
            from .registry import get_method  # late: the registry imports this module

            target = get_method(name).config
            if not issubclass(target, cls):
                raise TypeError(f"method {name!r} has config {target.__name__}, not a {cls.__name__}")
        known = {f.name for f in dataclasses.fields(target)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"{target.__name__} has no field(s) {unknown}; accepted fields: {sorted(known)}"
            )
        return target(**data)  # type: ignore[return-value]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        return cls.from_json(Path(path).read_text())

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """Field name -> help string, for ``vtprune methods`` and documentation."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}

    def budget(self, num_tokens: int) -> int:
        """This config's budget for an image of ``num_tokens`` tokens."""
        return resolve_budget(self.keep, num_tokens)


@cache
def _field_checks(cls: type[PruneConfig]) -> tuple[tuple[str, Check], ...]:
    """(field name, check) of a config class; a field redefined without a check keeps the
    check of the class it was first defined in (``keep`` of SparseVLM is still a budget)."""
    checks = []
    for f in dataclasses.fields(cls):
        check = f.metadata.get("check")
        for base in cls.__mro__[1:]:
            if check is not None:
                break
            base_field = getattr(base, "__dataclass_fields__", {}).get(f.name)
            check = base_field.metadata.get("check") if base_field is not None else None
        if check is not None:
            checks.append((f.name, check))
    return tuple(checks)
