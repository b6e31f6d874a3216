"""Every built-in method's config: its options, paper, summary and stages.

A config class is its method's torch-free half: defining it registers the method, and
listing the methods, checking a config or a command line's request imports nothing
heavier. The selection code (:mod:`vtprune.pruning_methods`, which needs torch) is
imported at a stage's first selection.
"""

from __future__ import annotations

from .atp import ATPConfig
from .cdpruner import CDPrunerConfig
from .coast import COASTConfig
from .dart import DARTConfig
from .divprune import DivPruneConfig
from .fastv import FastVConfig
from .pdrop import PDropConfig
from .random import RandomConfig
from .sparsevlm import SparseVLMConfig
from .sppruner import SPprunerConfig
from .sts import STSConfig
from .uniform import UniformConfig
from .visionzip import VisionZipConfig
from .zspaprune import ZSPAPruneConfig

__all__ = [
    "ATPConfig",
    "CDPrunerConfig",
    "COASTConfig",
    "DARTConfig",
    "DivPruneConfig",
    "FastVConfig",
    "PDropConfig",
    "RandomConfig",
    "SPprunerConfig",
    "STSConfig",
    "SparseVLMConfig",
    "UniformConfig",
    "VisionZipConfig",
    "ZSPAPruneConfig",
]
