"""The command line's requests checked before any model is loaded.

Every (method, budget) a command is asked to run is validated first against the
method's options (a method that does not exist, a budget out of range), then against
the model's config, which is all a method needs to know of the model: its depth and,
for fixed grids, its tokens per image. A request that fails is an error, with the
message :func:`vtprune.prune` would give, when the method was named on the command
line; a method that only came with "every method" and cannot run on this model is
noted and left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Sequence


class RequestError(ValueError):
    """A request the command refuses, with a one-line message for the user."""


def check_budgets(methods: Sequence[str], keeps: Sequence[int | float]) -> None:
    """Each method exists and takes each budget (no model needed)."""
    from .registry import get_method

    for name in methods:
        try:
            spec = get_method(name)
        except ValueError as error:
            raise RequestError(f"--method: {error}") from None
        for keep in keeps:
            try:
                spec.config(keep=keep)
            except (TypeError, ValueError) as error:
                raise RequestError(f"--keep {keep!r} for {name}: {error}") from None


def check_on_model(
    model_config: Any, variants: Iterable[tuple[str, int | float]], *, explicit: bool
) -> dict[tuple[str, int | float], str]:
    """The variants a model with ``model_config`` cannot run, with the reason of each
    (``explicit=False``); with ``explicit=True`` the first such variant is an error."""
    from .api import validate

    refused = {}
    for method, keep in variants:
        try:
            validate(model_config, method, keep=keep)
        except (TypeError, ValueError) as error:
            if explicit:
                raise RequestError(f"--method {method} --keep {keep}: {error}") from None
            refused[(method, keep)] = str(error)
    return refused


def check(
    methods: Sequence[str] | None, keeps: Sequence[int | float], model_config: Callable[[], Any]
) -> dict[tuple, str]:
    """Both checks for ``methods`` (None: every method) at every budget in ``keeps``, the
    model's config read (by calling ``model_config``) only once the budgets pass;
    returns the left-out variants of "every method" with their reasons."""
    from .registry import method_names

    names = list(methods) if methods else method_names()
    check_budgets(names, keeps)
    return check_on_model(model_config(), [(n, k) for n in names for k in keeps], explicit=bool(methods))


def proving_ground_config(path: str | Path | None = None) -> Any:
    """The config of the bundled proving-ground model (or of the checkpoint at ``path``)."""
    from transformers import AutoConfig

    try:
        from .proving_ground.checkpoint import checkpoint_path
    except ImportError:
        raise RequestError(
            "the bundled proving-ground model is not part of this installation; pass --model ID_OR_PATH"
        ) from None
    folder = Path(path) if path is not None else checkpoint_path()
    if not (folder / "config.json").is_file():
        raise RequestError(f"no proving-ground checkpoint at {folder} (a folder with config.json)")
    return AutoConfig.from_pretrained(folder)


def checkpoint_config(model_id: str) -> Any:
    """The config of a Hugging Face checkpoint (id or folder), without its weights."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model_id)
    except (OSError, ValueError) as error:
        raise RequestError(f"--model {model_id!r}: its config could not be loaded: {error}") from None
