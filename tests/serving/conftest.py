"""Serving tests: vLLM in this process, on the CPU, with small memory settings.

vLLM is part of the test environment (``scripts/test`` installs it with
``scripts/install-vllm``): without it these tests fail, unless VTPRUNE_SKIP_SERVING=1
says to leave them out.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

# One process (no engine-core subprocess): engines start in seconds, and the test can
# read the served model. Set before vLLM reads its environment.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

if os.environ.get("VTPRUNE_SKIP_SERVING") == "1":
    pytest.skip("VTPRUNE_SKIP_SERVING=1", allow_module_level=True)
if importlib.util.find_spec("vllm") is None:
    raise RuntimeError("vllm is not installed: scripts/install-vllm installs it (or set VTPRUNE_SKIP_SERVING=1)")
