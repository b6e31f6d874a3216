"""Argument types of the command line: each rejects a bad value with one line naming
the accepted values, while the arguments are parsed (nothing heavy is imported)."""

from __future__ import annotations

import argparse

from .config import validate_keep

BUDGET_HELP = "a token count per image (an int >= 1, e.g. 128) or a share in (0, 1] (a float, e.g. 0.222)"


def budget(text: str) -> int | float:
    """A budget as ``prune()`` takes it: '128' is a count, '0.222' (or '1.0') a ratio."""
    try:
        value: int | float = float(text) if any(c in text for c in ".eEnN") else int(text)
        return validate_keep(value)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {BUDGET_HELP}; got {text!r}") from None


def at_least(least: int):
    """An integer >= ``least``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"must be an integer >= {least}; got {text!r}")
        return value

    parse.__name__ = f"integer >= {least}"  # what argparse names the type in its own messages
    return parse
