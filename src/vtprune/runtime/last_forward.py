"""What the last pruned forward did: kept indices and token counts.

Recorded as device tensors on the hot path and turned into Python values only when
someone reads them (``handle.last_keep``, ``handle.stats``), so recording costs no
host sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from typing import TYPE_CHECKING

from .layout import ImageLayout
from .stage_outcome import GroupResult

if TYPE_CHECKING:
    from .stage_outcome import StageOutcome


@dataclass(frozen=True)
class PruneStats:
    """Visual token counts of the last pruned forward, per sample of the batch.

    before:     visual tokens in the prompt
    llm_input:  visual tokens the language model's first layer sees
    layer_avg:  visual tokens averaged over all decoder layers (equals ``llm_input``
                for pre-LLM methods; smaller for methods that also prune inside)
    stages:     (first 0-based layer, per-sample visual tokens) from the LLM input on,
                one entry per stage: layer l sees the last entry starting at or before l
    """

    before: tuple[int, ...]
    llm_input: tuple[int, ...]
    layer_avg: tuple[float, ...]
    num_layers: int
    stages: tuple[tuple[int, tuple[int, ...]], ...] = ()

    def per_layer(self, sample: int) -> list[int]:
        """Visual tokens each decoder layer sees, for one sample."""
        counts, current = [], self.llm_input[sample]
        starts = {start: kept[sample] for start, kept in self.stages}
        for layer in range(self.num_layers):
            current = starts.get(layer, current)
            counts.append(current)
        return counts

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

    @property
    def layer_avg_ratio(self) -> float:
        """Visual tokens averaged over layers over visual tokens before (1.0 with no images):
        the share in-LLM methods are budgeted by."""
        return self.total_layer_avg / self.total_before if self.total_before else 1.0

    def __str__(self) -> str:
        return (
            f"visual tokens: {self.total_before} before; {self.total_llm_input} at the LLM input "
            f"({self.kept_ratio:.1%} kept); {self.total_layer_avg:.1f} averaged over {self.num_layers} layers "
            f"({self.layer_avg_ratio:.1%} kept)"
        )


class PruneRecord:
    """The selections of one pruned forward, stage by stage. In-LLM stages append to
    ``stages`` while the forward runs; read it afterwards."""

    def __init__(self, layout: ImageLayout, stages: list["StageOutcome"], batch: int, num_layers: int) -> None:
        self.layout = layout
        self.stages = stages
        self.batch = batch
        self.num_layers = num_layers

    @cached_property
    def _samples(self) -> list[int]:
        """Batch row of every unit (an image, or one grid of a multi-grid image)."""
        return self.layout.sample_of_image.tolist()

    def _per_sample(self, per_unit: list[torch.Tensor | None], fill_full: bool) -> list[list[torch.Tensor | None]]:
        """Per-unit tensors arranged per sample and per image, a multi-grid image's units
        joined at their offsets (``fill_full``: per-token maps, else kept-index lists)."""
        layout = self.layout
        out: list[list[torch.Tensor | None]] = [[] for _ in range(self.batch)]
        for parent in range(layout.num_parents):
            units = [u for u, p in enumerate(layout.parents) if p == parent]
            parts = [per_unit[u] for u in units]
            if any(part is None for part in parts):
                joined = None if fill_full else torch.cat([p for p in parts if p is not None])
            elif fill_full:
                joined = torch.cat([torch.where(p >= 0, p + layout.offsets[u], p) for u, p in zip(units, parts)])
            else:
                joined = torch.cat([p + layout.offsets[u] for u, p in zip(units, parts)])
            out[self._samples[units[0]]].append(joined)
        return out

    def _kept(self, groups: list[GroupResult]) -> list[list[torch.Tensor]]:
        per_unit: list[torch.Tensor | None] = [None] * self.layout.num_units
        for group in groups:
            for row, unit in enumerate(group.images):
                per_unit[unit] = group.kept[row]
        return self._per_sample(per_unit, fill_full=False)

    @property
    def keep_by_stage(self) -> dict[str, list[list[torch.Tensor]]]:
        """Stage ("pre_llm", "llm:K") -> per sample, per image, the kept indices after it."""
        return {
            "pre_llm" if stage.start == 0 else f"llm:{stage.start}": self._kept(stage.groups)
            for stage in self.stages
        }

    @property
    def last_keep(self) -> list[list[torch.Tensor]]:
        """Per sample, per image (in prompt order): sorted kept indices into the
        image's visual tokens, after the last stage."""
        return self._kept(self.stages[-1].groups)

    @property
    def last_merge(self) -> list[list[torch.Tensor | None]]:
        """Per sample, per image: for each of the image's tokens the index of the kept
        token its features were merged into (-1: none); ``None`` for images no stage
        merged."""
        per_unit: list[torch.Tensor | None] = [None] * self.layout.num_units
        for stage in self.stages:
            for group in stage.groups:
                if group.merged_into is not None:
                    for row, unit in enumerate(group.images):
                        per_unit[unit] = group.merged_into[row]
        return self._per_sample(per_unit, fill_full=True)

    @property
    def stats(self) -> PruneStats:
        samples = self._samples
        before = [0] * self.batch
        for image, sample in enumerate(samples):
            before[sample] += self.layout.counts[image]
        # Stage i holds from its start layer to the next stage's: weight its counts so.
        per_stage = []
        for stage in self.stages:
            kept = [0] * self.batch
            for image, sample in enumerate(samples):
                kept[sample] += stage.counts[image]
            per_stage.append(kept)
        bounds = [stage.start for stage in self.stages] + [self.num_layers]
        average = [
            sum(kept[b] * (bounds[i + 1] - bounds[i]) for i, kept in enumerate(per_stage)) / self.num_layers
            for b in range(self.batch)
        ]
        stages = tuple((stage.start, tuple(kept)) for stage, kept in zip(self.stages, per_stage))
        return PruneStats(tuple(before), tuple(per_stage[0]), tuple(average), self.num_layers, stages)
