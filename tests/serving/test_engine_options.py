"""Bad vtprune options fail when the engine starts, with the message vtprune.prune gives,
before any weight is loaded; engine_kwargs checks what it can without a model. (An int
budget above an image's tokens keeps them all, as in vtprune.prune.)"""

from __future__ import annotations

import pytest

import vtprune.vllm
from vtprune.vllm import ServingError

from .engines import engine


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "nosuch", "keep": 64}, "method must be one of .*got 'nosuch'"),
        ({"method": "fastv", "keep": 64}, "prunes inside the language model"),
        ({"method": "divprune", "keep": 0}, "keep"),
        ({"method": "divprune", "keep": 2.5}, "keep"),
        ({"method": "divprune", "keep": 64, "nosuch": 1}, "nosuch"),
        ({"keep": 64}, "'method' is required"),
    ],
)
def test_engine_kwargs_refuses_bad_options(options, message):
    options = dict(options)
    method = options.pop("method", None)
    with pytest.raises((ServingError, TypeError, ValueError), match=message):
        if method is None:
            vtprune.vllm.plan.make_plan(options, num_layers=32, image_tokens=576, signals=frozenset())
        else:
            vtprune.vllm.engine_kwargs(method, **options)


@pytest.mark.parametrize(
    "override",
    [
        {"method": "sts", "keep": 64},
        {"method": "uniform", "keep": 0},
        {"method": "divprune", "keep": 64, "text_tower": "openai/clip-vit-large-patch14"},
        ["divprune"],
    ],
)
def test_a_raw_override_is_checked_at_engine_start(override):
    """The form ``vllm serve --hf-overrides '{"vtprune": ...}'`` passes, unchecked. vLLM
    reports the error as its config's ValueError, with vtprune's message."""
    with pytest.raises(ValueError, match="vtprune: "):
        engine(hf_overrides={"vtprune": override})
