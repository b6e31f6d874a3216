"""Serving tests: vLLM in this process, on the CPU, with small memory settings.

vLLM is part of the test environment (``scripts/install-vllm``); without it these
tests are skipped on a developer's machine and fail under CI.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

# One process (no engine-core subprocess): engines start in seconds, and the test can
# read the served model. Set before vLLM reads its environment.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

if importlib.util.find_spec("vllm") is None:
    if os.environ.get("CI"):
        raise RuntimeError("vllm is not installed: scripts/install-vllm installs it for the tests")
    pytest.skip("vllm is not installed (scripts/install-vllm)", allow_module_level=True)
