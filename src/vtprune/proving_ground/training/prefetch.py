"""Training batches built in a worker process while the current step trains.

Rendering 16 scenes and packing their questions takes about a fifth of a training
step, and the tiny model's matrix products leave a CPU core idle part of the time, so
a second process builds the next batches meanwhile. Each batch is a pure function of
its job (the random visual-token subset is drawn from a generator seeded by the
job), so prefetching changes no batch: ``job.build(packer)`` computes the same one
in the calling process.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator, Union

import torch

from .batches import Batch, VisionBatch, make_batch, make_vision_batch
from .packing import Packer


@dataclass(frozen=True)
class QuestionJob:
    """A stage 2 batch: scenes ``first .. first + size - 1`` of ``split`` with their questions."""

    split: str
    first: int
    size: int
    per_family: int
    visual_tokens: int
    seed: int  # of the visual-token subset

    def build(self, packer: Packer) -> Batch:
        generator = torch.Generator().manual_seed(self.seed)
        indices = range(self.first, self.first + self.size)
        return make_batch(packer, self.split, indices, self.per_family, self.visual_tokens, generator)


@dataclass(frozen=True)
class VisionJob:
    """A stage 1 batch: train scenes ``first .. first + size - 1`` with their labels."""

    first: int
    size: int

    def build(self, packer: Packer) -> VisionBatch:
        return make_vision_batch(range(self.first, self.first + self.size))


Job = Union[QuestionJob, VisionJob]


_worker_packer: Packer | None = None


def _start_worker() -> None:
    global _worker_packer
    from ..model import build_processor

    torch.set_num_threads(1)
    _worker_packer = Packer(build_processor().tokenizer)


def _build_in_worker(job: Job) -> Batch | VisionBatch:
    assert _worker_packer is not None
    return job.build(_worker_packer)


def prefetched(jobs: Iterable[Job], depth: int = 3) -> Iterator[Batch | VisionBatch]:
    """The batches of ``jobs`` in order, each built in a worker process up to ``depth``
    jobs ahead of the one consumed."""
    context = multiprocessing.get_context("spawn")  # no fork of a process running torch threads
    with context.Pool(1, initializer=_start_worker) as pool:
        pending: deque = deque()
        queued = iter(jobs)
        for job in queued:
            pending.append(pool.apply_async(_build_in_worker, (job,)))
            if len(pending) >= depth:
                break
        while pending:
            batch = pending.popleft().get()
            for job in queued:
                pending.append(pool.apply_async(_build_in_worker, (job,)))
                break
            yield batch
