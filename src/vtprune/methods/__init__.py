"""Pruning methods: one module each, pure functions over tensors, no model code.

Importing this package registers every method (see :mod:`vtprune.registry`).
"""

from . import random, uniform  # noqa: F401  - registration side effects
