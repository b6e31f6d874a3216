"""The KV cache argument under the name the installed transformers gives it.

transformers 5.24 renamed ``past_key_values`` to ``cache`` in every ``forward``,
decoder layer, output and in ``create_causal_mask``; ``forward`` still accepts the old
name (with a warning) and outputs still answer to it, but a hook that reads a layer's
keyword arguments sees only the name the model itself passes. vtprune supports both.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from transformers.masking_utils import create_causal_mask

CACHE_ARGUMENT = "cache" if "cache" in inspect.signature(create_causal_mask).parameters else "past_key_values"


def cache_in(arguments: Mapping[str, Any]) -> Any:
    """The cache among a call's keyword arguments, under either name (None: no cache)."""
    cache = arguments.get("cache")
    return cache if cache is not None else arguments.get("past_key_values")


def cache_of(output: Any) -> Any:
    """The cache a model output returns."""
    return getattr(output, CACHE_ARGUMENT)
