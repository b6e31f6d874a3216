"""A forward that brings images: select, compact, and describe the compacted cache.

Called where the language model receives the prompt's embeddings. Read top to bottom,
:meth:`Prefill.__call__` is one pruned prefill: the token view of the input, the
pre-LLM outcome (selected, replayed for an extended prompt, or everything kept), the
compacted embeddings, positions and mask, the state that maps the compacted cache back
to the unpruned sequence, and the in-LLM stages' pass through the decoder layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .compaction import Compaction, plan_compaction
from .forward_inputs import Forward
from .last_forward import PruneRecord
from .layer_stages import LayerStages, PrefillPass
from .prompt_replay import PromptMemory
from .stage_runner import keep_everything, run_stages
from .sequence import SequenceState, align_rows, next_id
from .stage_outcome import StageOutcome
from .token_view import TokenView

if TYPE_CHECKING:
    from ..config import PruneConfig
    from ..registry import Stage
    from .adapter_protocol import FamilyAdapter
    from .signal_source import SignalSource


@dataclass
class PrefillInput:
    """What the language model was about to receive, in the caller's (unpruned) terms."""

    forward: Forward
    positions: torch.Tensor | None  # the position ids given, if any
    mask: torch.Tensor | None  # the whole attention mask (cached tokens and this chunk)
    before: SequenceState | None  # the state of the cache this forward extends
    past_len: int  # cache slots already filled
    length: int  # tokens of this forward


@dataclass
class Compacted:
    """The language model's new input after the pre-LLM stages."""

    embeds: torch.Tensor
    positions: torch.Tensor
    mask: torch.Tensor | None  # over the cache and this chunk
    length: int  # tokens of this chunk after compaction
    state: SequenceState
    compaction: Compaction


class Prefill:
    """The prefill step of one pruned model instance, and the prompt it last pruned."""

    def __init__(
        self,
        adapter: "FamilyAdapter",
        config: "PruneConfig",
        pre_llm: list["Stage"],
        layer_stages: LayerStages | None,
        source: "SignalSource",
    ) -> None:
        self.adapter, self.config, self.pre_llm = adapter, config, pre_llm
        self.layer_stages, self.source = layer_stages, source
        self.memory: PromptMemory | None = None  # the last prompt, for replay without a cache
        self.last: PruneRecord | None = None

    def __call__(self, step: PrefillInput) -> Compacted:
        forward = step.forward
        if self.layer_stages is not None and step.past_len > 0:
            raise NotImplementedError(
                "in-LLM stages prune a prompt's images at its prefill; images that arrive after "
                "cached tokens are not supported with them"
            )
        view = self._input_view(forward)
        visual = forward.inputs_embeds.reshape(-1, forward.inputs_embeds.shape[-1])[forward.layout.flat_positions]
        replayed, extra = self._replayable(forward, visual) if step.past_len == 0 else (None, 0)
        if replayed is not None:
            first = replayed.stages[0]
            outcome, keep = first, first.replay(view, extra)
        else:
            outcome = run_stages(self.pre_llm, self.config, self.source, view) if self.pre_llm else keep_everything(view)
            keep = outcome.keep
        forward.inputs_embeds = view.input_embeds  # with any merged features
        compacted = self._compact(step, plan_compaction(keep))
        if replayed is None and step.past_len == 0:
            self.memory = _remember(forward, visual, outcome)
        self._begin_inside(step, view, compacted, outcome, replayed, extra)
        return compacted

    def _input_view(self, forward: Forward) -> TokenView:
        """The tokens at the language model's input, with each unit's budget and the
        vision tower's run that produced them."""
        view = TokenView.at_input(
            forward.layout, forward.inputs_embeds, forward.attention_mask, forward.core_inputs.get("input_ids")
        )
        view.budgets = forward.layout.budgets(self.config)
        view.vision = self.adapter.match_vision_call(forward, forward.layout)
        return view

    def _compact(self, step: PrefillInput, compaction: Compaction) -> Compacted:
        """Embeddings, positions and mask of the kept tokens, and the new cache state."""
        forward, batch = step.forward, step.forward.inputs_embeds.shape[0]
        before = step.before.tokens_before(step.past_len) if step.before is not None else step.past_len
        positions = step.positions
        if positions is None:
            positions = self.adapter.default_positions(batch, step.length, before, forward.inputs_embeds.device)
        positions = positions.expand(*positions.shape[:-2], batch, step.length)
        chunk_mask = compaction.mask(forward.attention_mask)
        new_positions = compaction.gather(positions, seq_dim=-1)
        real_before = forward.attention_mask.bool() if forward.attention_mask is not None else torch.ones(
            positions.shape[-2:], dtype=torch.bool, device=positions.device
        )
        next_position = next_id(positions, real_before)
        shift = None
        if self.config.positions == "compact":
            real = compaction.valid if chunk_mask is None else chunk_mask.bool()
            if step.before is not None and step.before.shift is not None:
                new_positions = new_positions - align_rows(step.before.shift, new_positions)
            new_positions = self.adapter.compact_positions(new_positions, real, forward, compaction)
            shift = next_position - next_id(new_positions, real)
        mask = _full_mask(step, chunk_mask, compaction.length)
        state = SequenceState(
            full_len=before + step.length,
            compact_len=step.past_len + compaction.length,
            prefix=mask,
            next_position=next_position,
            shift=shift,
        )
        embeds = compaction.gather(forward.inputs_embeds, seq_dim=1)
        return Compacted(embeds, new_positions, mask, compaction.length, state, compaction)

    def _begin_inside(
        self,
        step: PrefillInput,
        view: TokenView,
        compacted: Compacted,
        outcome: StageOutcome,
        replayed: PromptMemory | None,
        extra: int,
    ) -> None:
        """Record the forward, and start the in-LLM stages' pass on the compacted tokens."""
        results = [outcome]
        if self.layer_stages is not None:
            inside = view.compact(compacted.compaction, outcome.counts, compacted.mask, input_embeds=compacted.embeds)
            pass_ = PrefillPass(inside, results, compacted.state.stage_prefixes)
            if replayed is None:
                pass_.memory = self.memory  # the in-LLM stages' outcomes are remembered with the prompt's
            else:
                pass_.replay, pass_.extra = replayed.stages, extra  # indexed like ``results``
            self.layer_stages.begin_prefill(pass_)
        if replayed is not None:
            self.last = replayed.record
            return
        self.last = PruneRecord(step.forward.layout, results, compacted.embeds.shape[0], self.adapter.num_layers)
        if self.memory is not None and step.past_len == 0:
            self.memory.record = self.last

    def _replayable(self, forward: Forward, visual: torch.Tensor) -> tuple[PromptMemory | None, int]:
        """The last prompt's memory if this forward extends that prompt (see prompt_replay.py)."""
        memory = self.memory
        if memory is None:
            return None, 0
        extra = memory.extended_by(forward.core_inputs.get("input_ids"), forward.attention_mask, forward.layout, visual)
        return (memory, extra) if extra else (None, 0)


def _remember(forward: Forward, visual: torch.Tensor, first: StageOutcome) -> PromptMemory | None:
    input_ids = forward.core_inputs.get("input_ids")
    if input_ids is None:
        return None  # prompts given as embeddings are never taken for extensions
    return PromptMemory(input_ids, forward.attention_mask, forward.layout.counts, forward.layout.grids, visual, [first])


def _full_mask(step: PrefillInput, chunk_mask: torch.Tensor | None, length: int) -> torch.Tensor | None:
    """The attention mask over the cache (in its slots) and the compacted chunk."""
    mask, past_len = step.mask, step.past_len
    if step.before is not None:
        cached = step.before.cache_mask(None if mask is None else mask[:, : -step.length], past_len, 0)
    else:
        cached = None if mask is None else mask[:, :past_len]
    if cached is None and chunk_mask is None:
        return None
    batch, device = step.forward.inputs_embeds.shape[0], step.forward.inputs_embeds.device
    if cached is None:
        cached = torch.ones(batch, past_len, dtype=chunk_mask.dtype, device=device)
    if chunk_mask is None:
        chunk_mask = torch.ones(batch, length, dtype=cached.dtype, device=device)
    return torch.cat((cached.to(chunk_mask.dtype), chunk_mask), dim=1)
