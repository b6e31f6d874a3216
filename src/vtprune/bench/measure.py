"""Timing and memory primitives: wall clock with device syncs, peak memory, and the time
spent inside vtprune's own hooks."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds ``fn`` takes, with the device drained before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


@contextmanager
def peak_memory(device: torch.device) -> Iterator[dict]:
    """Peak memory of the block above what was in use before it, where the device
    measures it: CUDA allocations. Elsewhere ``bytes`` is ``None`` (a process's resident
    memory says nothing about one forward: allocators keep and reuse what they freed)."""
    result: dict = {}
    if device.type != "cuda":
        yield result
        result["bytes"], result["kind"] = None, f"not measured on {device.type}"
        return
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    yield result
    synchronize(device)
    result["bytes"] = torch.cuda.max_memory_allocated(device) - base
    result["kind"] = "cuda allocated"


class StepClock:
    """A logits processor for ``generate`` that only notes when each step's logits are
    ready (``stamps``, after a device sync): the first is the time to the first token,
    the rest time the decoding."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stamps: list[float] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        synchronize(self.device)
        self.stamps.append(time.perf_counter())
        return scores


class HookTimer:
    """Seconds spent inside the hooks other code registered on ``modules``: a timing
    hook is put first and another last, around both the pre-hooks and the forward
    hooks, so only what runs between them is counted (not the modules' own work)."""

    def __init__(self, modules: list[nn.Module], device: torch.device) -> None:
        self.device, self.seconds, self._start = device, 0.0, 0.0
        self._handles = []
        for module in modules:
            self._handles += [
                module.register_forward_pre_hook(self._begin, prepend=True),
                module.register_forward_pre_hook(self._end),
                module.register_forward_hook(self._begin_after, prepend=True),
                module.register_forward_hook(self._end_after),
            ]

    def _begin(self, *_: object) -> None:
        synchronize(self.device)
        self._start = time.perf_counter()

    def _end(self, *_: object) -> None:
        synchronize(self.device)
        self.seconds += time.perf_counter() - self._start

    def _begin_after(self, *_: object) -> None:
        self._begin()

    def _end_after(self, *_: object) -> None:
        self._end()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def cache_bytes(cache) -> int:
    """Bytes held by a transformers KV cache (every layer's keys and values)."""
    total = 0
    for layer in getattr(cache, "layers", ()):
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()
    return total
