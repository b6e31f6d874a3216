"""What the last pruned forward did: kept indices and token counts.

Recorded as device tensors on the hot path and turned into Python values only when
someone reads them (``handle.last_keep``, ``handle.stats``), so recording costs no
host sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from .layout import ImageLayout
from .selection import GroupResult


@dataclass(frozen=True)
class PruneStats:
    """Visual token counts of the last pruned forward, per sample of the batch.

    before:     visual tokens in the prompt
    llm_input:  visual tokens the language model's first layer sees
    layer_avg:  visual tokens averaged over all decoder layers (equals ``llm_input``
                for pre-LLM methods; smaller for methods that also prune inside)
    """

    before: tuple[int, ...]
    llm_input: tuple[int, ...]
    layer_avg: tuple[float, ...]
    num_layers: int

    @property
    def total_before(self) -> int:
        return sum(self.before)

    @property
    def total_llm_input(self) -> int:
        return sum(self.llm_input)

    @property
    def total_layer_avg(self) -> float:
        return sum(self.layer_avg)

    @property
    def kept_ratio(self) -> float:
        """Visual tokens at the LLM input over visual tokens before (1.0 with no images)."""
        return self.total_llm_input / self.total_before if self.total_before else 1.0

    def __str__(self) -> str:
        return (
            f"visual tokens: {self.total_before} before, {self.total_llm_input} at the LLM input, "
            f"{self.total_layer_avg:.1f} averaged over {self.num_layers} layers "
            f"({self.kept_ratio:.1%} kept)"
        )


class PruneRecord:
    """The selections of one pruned forward."""

    def __init__(self, layout: ImageLayout, groups: list[GroupResult], batch: int, num_layers: int) -> None:
        self.layout = layout
        self.groups = groups
        self.batch = batch
        self.num_layers = num_layers

    @cached_property
    def last_keep(self) -> list[list[torch.Tensor]]:
        """Per sample, per image (in prompt order): sorted kept indices into the
        image's visual tokens."""
        per_image: list[torch.Tensor | None] = [None] * self.layout.num_images
        for group in self.groups:
            for row, image in enumerate(group.images):
                per_image[image] = group.kept[row]
        out: list[list[torch.Tensor]] = [[] for _ in range(self.batch)]
        for image, sample in enumerate(self.layout.sample_of_image.tolist()):
            out[sample].append(per_image[image])
        return out

    @cached_property
    def stats(self) -> PruneStats:
        samples = self.layout.sample_of_image.tolist()
        before = [0] * self.batch
        kept = [0] * self.batch
        for image, sample in enumerate(samples):
            before[sample] += self.layout.counts[image]
        for group in self.groups:
            for image in group.images:
                kept[samples[image]] += group.kept.shape[1]
        return PruneStats(tuple(before), tuple(kept), tuple(float(k) for k in kept), self.num_layers)
