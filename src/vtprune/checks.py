"""Checks for config fields: one-line errors that name the field and the accepted values.

``require_*`` check a value now. The factories below them (``integer``, ``real``,
``fraction``, ``choice``, ...) build the checks a config field carries in its metadata,
``option(default, help, check=fraction())``, which ``PruneConfig.__post_init__`` runs
for every field: a method states its ranges next to its fields and writes no
validation code. Nothing here imports torch.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any, Callable

Check = Callable[[str, Any], Any]
"""``check(name, value)`` returns the value (normalised: an int as ``int``, a sequence as
a tuple) or raises ``TypeError`` / ``ValueError`` naming ``name`` and what it accepts."""


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


def require_model_reference(name: str, value: Any) -> str | None:
    """None, or a non-empty Hugging Face model id or local path."""
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise TypeError(f"{name} must be None or a non-empty model id or path; got {value!r}")
    return value


_NUMBER_WORDS = {2: "two", 3: "three", 4: "four"}


def require_layers(name: str, value: Any, *, top: int, count: int | None = None, allow_none: bool = False):
    """Strictly increasing ints in [1, ``top``] (exactly ``count`` of them when given), as a tuple."""
    if value is None and allow_none:
        return None
    many = f"{_NUMBER_WORDS.get(count, count)} strictly increasing ints" if count else "a non-empty, strictly increasing sequence of ints"
    accepted = f"{'None or ' if allow_none else ''}{many} in [1, {top}]"
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Sequence)
        or any(isinstance(x, bool) or not isinstance(x, numbers.Integral) for x in value)
    ):
        raise TypeError(f"{name} must be {accepted}; got {value!r}")
    layers = tuple(int(x) for x in value)
    increasing = all(a < b for a, b in zip(layers, layers[1:]))
    if not layers or (count and len(layers) != count) or not increasing or layers[0] < 1 or layers[-1] > top:
        raise ValueError(f"{name} must be {accepted}; got {list(layers)}")
    return layers


# -- checks for field metadata ------------------------------------------------------


def integer(low: int | None = None) -> Check:
    """An int (not a bool), >= ``low`` when given."""
    return lambda name, value: require_int(name, value, low=low)


def real(
    low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False
) -> Check:
    """A finite number in the interval (closed unless ``*_open``), as a float."""
    return lambda name, value: require_real(name, value, low=low, high=high, low_open=low_open, high_open=high_open)


def fraction() -> Check:
    """A number in [0, 1]."""
    return require_fraction


def choice(*choices: str) -> Check:
    """One of ``choices``."""
    return lambda name, value: require_choice(name, value, choices)


def optional(check: Check) -> Check:
    """None, or what ``check`` accepts."""
    return lambda name, value: None if value is None else check(name, value)


def model_reference() -> Check:
    """None, or a non-empty model id or path."""
    return require_model_reference


def layers(*, top: int, count: int | None = None, allow_none: bool = False) -> Check:
    """Stage depths: strictly increasing ints in [1, ``top``]."""
    return lambda name, value: require_layers(name, value, top=top, count=count, allow_none=allow_none)
