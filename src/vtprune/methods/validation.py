"""Checks for config fields: clear errors that name the field and the accepted range."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any


def require_int(name: str, value: Any, *, low: int | None = None) -> int:
    """An ``int`` (not a bool) >= ``low``."""
    accepted = "an int" if low is None else f"an int >= {low}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {accepted}; got {value!r} of type {type(value).__name__}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be {accepted}; got {value}")
    return int(value)


def require_layer(name: str, value: int, num_layers: int) -> int:
    """An in-LLM layer K of a model with ``num_layers`` decoder layers: the stage acts
    after the first K layers, so K must be in [1, num_layers - 1]."""
    if not 1 <= value < num_layers:
        if num_layers < 2:
            raise ValueError(f"{name}={value}: this model's {num_layers} decoder layer leaves no room to prune inside "
                             "the language model; choose a method that prunes before it")
        raise ValueError(
            f"{name} must be in [1, {num_layers - 1}] (prune after that many of this model's {num_layers} "
            f"decoder layers); got {value}"
        )
    return value


def require_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number in the interval given by ``low``/``high`` (closed unless ``*_open``)."""
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    span = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    accepted = f"a number in {span}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {accepted}; got {value!r} of type {type(value).__name__}")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or too_low or too_high:
        raise ValueError(f"{name} must be {accepted}; got {value}")
    return value


def require_fraction(name: str, value: Any) -> float:
    """A number in [0, 1]."""
    return require_real(name, value, low=0.0, high=1.0)


def require_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")
    return value
