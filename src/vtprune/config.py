"""Typed, serialisable pruning configs and the budget rule.

Every method has one dataclass derived from :class:`PruneConfig`. Each field carries
a help string in ``field(metadata={"help": ...})``; configs round-trip through
``to_dict`` / ``from_dict`` and JSON (``save`` / ``load``). Validation happens in
``__post_init__`` so that a bad value is rejected before any model is touched.

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
from pathlib import Path
from typing import Any, ClassVar, TypeVar

POSITION_MODES = ("original", "compact")
NEWLINE_MODES = ("keep", "with_row")

C = TypeVar("C", bound="PruneConfig")


def help_field(default: Any, help: str) -> Any:
    """A dataclass field with a default and a help string (PEFT style)."""
    return field(default=default, metadata={"help": help})


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

    ``method`` (a class variable) is the registered name; the config class itself is
    the dispatch key, so ``vtprune.prune(model, UniformConfig(keep=64))`` needs no name.
    """

    method: ClassVar[str] = ""

    keep: int | float = help_field(
        0.222,
        "Visual tokens kept per image: an int count (128) or a float ratio in (0, 1] "
        "(0.222 of 576 is 128). An int above an image's token count keeps that image whole.",
    )
    positions: str = help_field(
        "original",
        "'original': kept tokens keep their position ids (RoPE / M-RoPE) and decoding "
        "continues where the unpruned sequence would; 'compact': positions are renumbered "
        "as if the pruned tokens had never been there.",
    )

    newlines: str = help_field(
        "keep",
        "LLaVA-NeXT / OneVision row-end tokens: 'keep' them all, or drop each 'with_row' when "
        "none of its row's tokens is kept. Other families have none.",
    )

    def __post_init__(self) -> None:
        self.keep = validate_keep(self.keep)
        if self.positions not in POSITION_MODES:
            raise ValueError(f"positions must be one of {POSITION_MODES}; got {self.positions!r}")
        if self.newlines not in NEWLINE_MODES:
            raise ValueError(f"newlines must be one of {NEWLINE_MODES}; got {self.newlines!r}")

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
