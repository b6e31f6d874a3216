"""Pruning methods: one module each, pure functions over tensors, no model code.

Importing this package registers every method (see :mod:`vtprune.registry`).
"""

from . import (  # noqa: F401  - registration side effects
    atp,
    cdpruner,
    coast,
    dart,
    divprune,
    fastv,
    pdrop,
    random,
    sparsevlm,
    sppruner,
    sts,
    uniform,
    visionzip,
    zspaprune,
)
