"""Selections are made once per prompt: a forward that extends a pruned prompt replays them.

Decoding with a cache never selects again: the new tokens only append. Without a
cache (``generate(use_cache=False)``, or a loop feeding the prompt plus the tokens so
far), every step is a fresh forward of a longer sequence, and a method that reads the
prompt's text or its last token would select differently each time. So when a forward
starts with exactly the tokens and images of the last pruned prompt, each stage keeps
what it kept then and the extra tokens at the end are kept as text: decoding without a
cache computes what decoding with one does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .layout import ImageLayout
from .stage_outcome import StageOutcome


@dataclass
class PromptMemory:
    """The last pruned prompt and what every stage kept of it."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    counts: tuple[int, ...]
    grids: tuple[tuple[int, int], ...]
    visual: torch.Tensor  # the prompt's image features at the language model input
    stages: list[StageOutcome] = field(default_factory=list)  # pre-LLM first; in-LLM ones appended as they run
    record: object = None  # the PruneRecord of that prompt

    def extended_by(
        self, input_ids: torch.Tensor | None, mask: torch.Tensor | None, layout: ImageLayout, visual: torch.Tensor
    ) -> int:
        """How many tokens the new forward appends to this prompt (0: not an extension)."""
        if input_ids is None or input_ids.shape[0] != self.input_ids.shape[0]:
            return 0
        length = self.input_ids.shape[1]
        extra = input_ids.shape[1] - length
        if extra <= 0 or layout.counts != self.counts or layout.grids != self.grids:
            return 0
        if (mask is None) != (self.attention_mask is None):
            return 0
        if mask is not None and not torch.equal(mask[:, :length], self.attention_mask):
            return 0
        if not torch.equal(input_ids[:, :length], self.input_ids) or not torch.equal(visual, self.visual):
            return 0
        return extra
