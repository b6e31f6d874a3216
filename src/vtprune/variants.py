"""Pruning variants: a method at a budget, which of them a model can run, and running a
model under one with the patch taken off afterwards.

Every application that compares methods (``vtprune eval``, ``bench``, ``show``,
``demo``, the lmms-eval campaign) loops over variants the same way::

    usable, skipped = runnable(model, variants)
    for variant in usable:
        with pruned(model, variant) as handle:  # None for the unpruned model
            ...  # run and measure

so the model is unpruned after each variant however the block ends.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence


@dataclass(frozen=True)
class Variant:
    """A method at a budget with its other options (``method=None``: the unpruned model)."""

    method: str | None
    keep: int | float | None = None
    # Left out of the hash so a variant can key a dict; two variants differing only in
    # options still compare unequal.
    options: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def label(self) -> str:
        """``unpruned`` or ``method@keep``; ``keep`` as written, so a token count (``@1``)
        never reads as a share (``@1.0``)."""
        return "unpruned" if self.method is None else f"{self.method}@{self.keep}"


def runnable(model: Any, variants: Sequence[Variant]) -> tuple[list[Variant], dict[str, str]]:
    """The variants ``model`` can run, in order, and why each other one cannot (by label).

    ``model`` is a model or its transformers config. A variant the model cannot run (a
    layer it lacks, PDrop's stages at a budget a shallow model cannot average down to)
    is reported with :func:`vtprune.validate`'s reason instead of stopping a run of
    many. The unpruned variant always runs.
    """
    from .api import validate

    ok, skipped = [], {}
    for variant in variants:
        if variant.method is None:
            ok.append(variant)
            continue
        try:
            validate(model, variant.method, keep=variant.keep, **variant.options)
            ok.append(variant)
        except (ValueError, TypeError) as error:
            skipped[variant.label] = str(error)
    return ok, skipped


@contextlib.contextmanager
def pruned(model: Any, variant: Variant, *, quiet: bool = False) -> Iterator[Any]:
    """``model`` pruned by ``variant`` inside the block; yields the
    :class:`~vtprune.PruneHandle` (``None`` for the unpruned variant, which leaves the
    model alone).

    The pruning is removed when the block ends, also by an exception, so the model
    computes exactly what it computed before. As with :func:`vtprune.prune`, a method
    already on the model is replaced (and so not there afterwards). ``quiet`` silences
    the warnings of pruning itself (a missing text tower's fallback), not those of the
    block. Errors of the request (``TypeError``, ``ValueError``) come before the model
    is touched.
    """
    if variant.method is None:
        yield None
        return
    from .api import prune

    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        handle = prune(model, variant.method, keep=variant.keep, **variant.options)
    try:
        yield handle
    finally:
        handle.remove()
