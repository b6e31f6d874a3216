"""The hooks that prune one model instance, and the state that keeps decoding right.

Two forward pre-hooks, registered on the instance's own modules (no class patching):

* on the multimodal core (``LlavaModel``, ``Qwen2VLModel``...): records what the
  forward was called with (input ids, whether image features come with it) and, when
  a pruned sequence is being continued without position ids, supplies them;
* on its language model: where the prompt's embeddings, mask and position ids arrive,
  it runs the method's pre-LLM stages, compacts the batch and hands the language model
  the shorter sequence. Later forwards of the same sequence get their attention mask
  translated to the compacted cache.

``generate`` never notices: it keeps its own (unpruned) attention mask and position
ids, and this module maps them onto the compacted cache at every step.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

import torch

from .cache_argument import cache_in
from .compaction import plan_compaction
from .layer_stages import DecodePass, LayerStages, StageResult
from .level import Level
from .record import PruneRecord
from .replay import PromptMemory, StageKeep
from .selection import GroupResult, run_stages
from .sequence import SequenceState, align_rows, cache_length
from .vision import VisionCall

if TYPE_CHECKING:
    from ..config import PruneConfig
    from ..models.base import ModelAdapter
    from ..registry import Stage

from ..models.base import Forward


class PruningSession:
    """The hooks and per-sequence state of one pruned model instance."""

    def __init__(self, adapter: "ModelAdapter", config: "PruneConfig", stages: list["Stage"]) -> None:
        self.adapter = adapter
        self.config = config
        self.pre_llm = [s for s in stages if s.layer is None]
        self._needs_vision = adapter.captures_vision({name for stage in stages for name in stage.needs})
        inside = [s for s in stages if s.layer is not None]
        self.layer_stages = LayerStages(adapter, config, inside) if inside else None
        self.enabled = True
        self.last: PruneRecord | None = None
        self._pending: Forward | None = None
        self._state: SequenceState | None = None
        self._memory: PromptMemory | None = None
        self._signature = inspect.signature(adapter.core.forward)
        self._vision_calls: deque[VisionCall] = deque(maxlen=4)
        self._encoder_calls: deque[dict] = deque(maxlen=4)
        self._handles: list[Any] = []

    # -- lifecycle ----------------------------------------------------------------------
    def install(self) -> None:
        self._handles = [
            self.adapter.vision_module.register_forward_pre_hook(self._before_vision, with_kwargs=True),
            *(self.adapter.install_vision_capture(self._record_vision) if self._needs_vision else ()),
            self.adapter.core.register_forward_pre_hook(self._before_core, with_kwargs=True),
            self.adapter.language_model.register_forward_pre_hook(self._before_language_model, with_kwargs=True),
        ]
        if self.adapter.records_encoder:
            self._wrap_image_encoder()
        if self.layer_stages is not None:
            self.layer_stages.install()
            # Layer passes live for one forward of the language model only.
            self._handles.append(self.adapter.language_model.register_forward_hook(self._after_language_model))

    def _wrap_image_encoder(self) -> None:
        """Record the arguments of this instance's ``get_image_features`` (``generate``
        encodes the images before the prefill and then drops arguments such as
        ``image_sizes`` that the grids depend on). An attribute of the instance, which
        shadows the class's method for this model only and is deleted on removal."""
        core = self.adapter.core
        original = core.get_image_features

        @functools.wraps(original)
        def recorded(*args: Any, **kwargs: Any) -> Any:
            if self.enabled:
                self._encoder_calls.append(self.adapter.encoder_call(args, kwargs))
            return original(*args, **kwargs)

        recorded.__vtprune__ = True
        core.__dict__["get_image_features"] = recorded

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        core = self.adapter.core
        if getattr(core.__dict__.get("get_image_features"), "__vtprune__", False):
            del core.__dict__["get_image_features"]
        if self.layer_stages is not None:
            self.layer_stages.remove()
        self.reset()

    def reset(self) -> None:
        """Forget the current sequence (a new prefill starts afresh anyway)."""
        self._pending = None
        self._state = None
        self._memory = None
        self._vision_calls.clear()
        self._encoder_calls.clear()
        if self.layer_stages is not None:
            self.layer_stages.reset()

    def _active_state(self, cache: Any, past_len: int) -> SequenceState | None:
        if past_len == 0 or self._state is None or not self._state.covers(cache):
            return None
        return self._state

    # -- hook on the vision tower ----------------------------------------------------------
    def _before_vision(self, module: Any, args: tuple, kwargs: dict) -> None:
        if self.enabled:
            self._vision_calls.append(VisionCall(self.adapter.vision_call(args, kwargs)))

    def _record_vision(self, name: str, value: Any) -> None:
        """Called by the adapter's hooks inside the vision tower during a call."""
        if self.enabled and self._vision_calls:
            self._vision_calls[-1].captures[name] = value

    # -- hook on the multimodal core ------------------------------------------------------
    def _before_core(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if not self.enabled:
            self.reset()
            return None
        inputs = self._signature.bind_partial(*args, **kwargs).arguments
        self._pending = Forward(core_inputs=inputs, vision_calls=tuple(self._vision_calls))
        past = cache_in(inputs)
        state = self._active_state(past, cache_length(past))
        if state is None or inputs.get("position_ids") is not None:
            return None
        # Continuing a pruned sequence with no position ids: the model would count the
        # compacted cache and place the new tokens too early. Give the unpruned ids.
        tokens = inputs.get("input_ids") if inputs.get("input_ids") is not None else inputs["inputs_embeds"]
        length = tokens.shape[1]
        offset = cache_length(past) - state.compact_len
        steps = torch.arange(offset, offset + length, device=state.next_position.device)
        positions = state.next_position[..., None] + steps
        if positions.dim() == 2 and self.adapter.position_rows > 1:
            positions = positions.expand(self.adapter.position_rows, -1, -1)
        return args, {**kwargs, "position_ids": positions}

    # -- hook on the language model -------------------------------------------------------
    def _before_language_model(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if not self.enabled:
            return None
        forward, self._pending = self._pending, None
        if self.layer_stages is not None:
            self.layer_stages.prefill = self.layer_stages.decode = None
        embeds = kwargs.get("inputs_embeds")
        if forward is None or embeds is None:
            return None  # the language model was called on its own: not ours to change
        past = cache_in(kwargs)
        past_len = cache_length(past)
        if past_len == 0:
            self._state = None
        state = self._active_state(past, past_len)
        mask = kwargs.get("attention_mask")
        length = embeds.shape[1]

        forward.inputs_embeds = embeds
        forward.vision_calls = tuple(self._vision_calls)  # including a run inside this forward
        forward.encoder_calls = tuple(self._encoder_calls)
        forward.attention_mask = mask[:, -length:] if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
        layout = self.adapter.layout(forward)
        if layout is None and state is None:
            return None
        if mask is not None and not (isinstance(mask, torch.Tensor) and mask.dim() == 2):
            raise ValueError(
                "vtprune needs a 2-D attention_mask (batch, tokens); got a prepared "
                f"{type(mask).__name__} mask. Static and compiled caches build masks for the "
                "unpruned length: use the default dynamic cache."
            )
        if layout is None:
            return args, self._continue(kwargs, state, mask, past_len, length)
        forward.layout = layout
        return args, self._prune(kwargs, forward, state, mask, past_len, length)

    def _after_language_model(self, module: Any, args: tuple, output: Any) -> None:
        self.layer_stages.prefill = self.layer_stages.decode = None

    def _continue(
        self, kwargs: dict, state: SequenceState, mask: torch.Tensor | None, past_len: int, length: int
    ) -> dict:
        """A later forward of a pruned sequence with no new images (a decoding step)."""
        kwargs = dict(kwargs)
        full_mask = state.cache_mask(mask, past_len, length)
        kwargs["attention_mask"] = full_mask
        if self.layer_stages is not None and self.layer_stages.prefixes:
            new = past_len - state.compact_len + length
            tail = None if full_mask is None else full_mask[:, state.compact_len :]
            self.layer_stages.decode = DecodePass(self.layer_stages.prefixes, tail, new)
        positions = kwargs.get("position_ids")
        if positions is not None and state.shift is not None:
            kwargs["position_ids"] = positions - align_rows(state.shift, positions)
        if kwargs.get("cache_position") is not None:  # transformers releases that still pass it
            kwargs["cache_position"] = torch.arange(past_len, past_len + length, device=kwargs["cache_position"].device)
        return kwargs

    def _prune(
        self,
        kwargs: dict,
        forward: Forward,
        state: SequenceState | None,
        mask: torch.Tensor | None,
        past_len: int,
        length: int,
    ) -> dict:
        """A forward that brings images: select, compact, remember the mapping."""
        embeds = forward.inputs_embeds
        batch, device = embeds.shape[0], embeds.device
        before = state.tokens_before(past_len) if state is not None else past_len
        if self.layer_stages is not None and past_len > 0:
            raise NotImplementedError(
                "in-LLM stages prune a prompt's images at its prefill; images that arrive after "
                "cached tokens are not supported with them"
            )

        # Mask of what is already cached, in cache slots.
        if state is not None:
            cached = state.cache_mask(None if mask is None else mask[:, :-length], past_len, 0)
        else:
            cached = None if mask is None else mask[:, :past_len]

        positions = kwargs.get("position_ids")
        if positions is None:
            positions = self.adapter.default_positions(batch, length, before, device)
        positions = positions.expand(*positions.shape[:-2], batch, length)

        level = Level.at_input(forward.layout, embeds, forward.attention_mask, forward.core_inputs.get("input_ids"))
        level.budgets = forward.layout.budgets(self.config)
        level.vision = self.adapter.match_vision_call(forward, forward.layout)
        # The images as they arrive (before any merge) identify the prompt for replay.
        visual = embeds.reshape(-1, embeds.shape[-1])[forward.layout.flat_positions]
        memory, extra = self._replayable(forward, visual) if past_len == 0 else (None, 0)
        merges = []
        if memory is not None:
            first = memory.stages[0]
            keep, groups, counts = first.replay(level, extra), first.groups, first.counts
        elif self.pre_llm:
            keep, groups, counts, merges = run_stages(self.pre_llm, self.config, self.adapter, level)
        else:
            keep, groups, counts = self._keep_everything(level)
        forward.inputs_embeds = level.input_embeds  # with any merged features
        compaction = plan_compaction(keep)
        chunk_mask = compaction.mask(forward.attention_mask)
        new_embeds = compaction.gather(forward.inputs_embeds, seq_dim=1)
        new_positions = compaction.gather(positions, seq_dim=-1)

        real = compaction.valid if chunk_mask is None else chunk_mask.bool()
        real_before = torch.ones_like(keep) if forward.attention_mask is None else forward.attention_mask.bool()
        next_position = positions.masked_fill(~real_before, -1).amax(-1) + 1
        shift = None
        if self.config.positions == "compact":
            if state is not None and state.shift is not None:
                new_positions = new_positions - align_rows(state.shift, new_positions)
            new_positions = self.adapter.compact_positions(new_positions, real, forward, compaction)
            shift = next_position - (new_positions.masked_fill(~real, -1).amax(-1) + 1)

        if cached is None and chunk_mask is None:
            full_mask = None
        else:
            if cached is None:
                cached = torch.ones(batch, past_len, dtype=chunk_mask.dtype, device=device)
            if chunk_mask is None:
                chunk_mask = torch.ones(batch, compaction.length, dtype=cached.dtype, device=device)
            full_mask = torch.cat((cached.to(chunk_mask.dtype), chunk_mask), dim=1)

        self._state = SequenceState(
            full_len=before + length,
            compact_len=past_len + compaction.length,
            prefix=full_mask,
            next_position=next_position,
            shift=shift,
            cache_ref=weakref.ref(cache) if (cache := cache_in(kwargs)) is not None else None,
        )
        if memory is None:
            results = [StageResult(0, groups, counts)]
            if past_len == 0:
                self._memory = self._remember(forward, visual, StageKeep(keep, groups, counts, merges))
            if self.layer_stages is not None:
                inside = level.compact(compaction, counts, full_mask, input_embeds=new_embeds)
                pass_ = self.layer_stages.begin_prefill(inside, memory=self._memory)
                results = pass_.results
                results.insert(0, StageResult(0, groups, counts))
            self.last = PruneRecord(forward.layout, results, batch, self.adapter.num_layers)
            if self._memory is not None:
                self._memory.record = self.last
        else:
            self.last = memory.record
            if self.layer_stages is not None:
                inside = level.compact(compaction, counts, full_mask, input_embeds=new_embeds)
                self.layer_stages.begin_prefill(inside, replay=memory.stages[1:], extra=extra)

        kwargs = dict(kwargs)
        kwargs["inputs_embeds"] = new_embeds
        kwargs["attention_mask"] = full_mask
        kwargs["position_ids"] = new_positions
        if kwargs.get("cache_position") is not None:
            kwargs["cache_position"] = torch.arange(past_len, past_len + compaction.length, device=device)
        return kwargs

    def _replayable(self, forward: Forward, visual: torch.Tensor) -> tuple[PromptMemory | None, int]:
        """The last prompt's memory if this forward extends that prompt (see replay.py)."""
        memory = self._memory
        if memory is None:
            return None, 0
        extra = memory.extended_by(forward.core_inputs.get("input_ids"), forward.attention_mask, forward.layout, visual)
        return (memory, extra) if extra else (None, 0)

    @staticmethod
    def _remember(forward: Forward, visual: torch.Tensor, first: StageKeep) -> PromptMemory | None:
        input_ids = forward.core_inputs.get("input_ids")
        if input_ids is None:
            return None  # prompts given as embeddings are never taken for extensions
        return PromptMemory(
            input_ids, forward.attention_mask, forward.layout.counts, forward.layout.grids, visual, [first]
        )

    @staticmethod
    def _keep_everything(level: Level) -> tuple[torch.Tensor, list[GroupResult], tuple[int, ...]]:
        """No stage before the LLM: every token goes in (methods that act inside only)."""
        layout = level.layout
        groups = []
        for (_, count), images in layout.groups().items():
            index = torch.arange(count, device=level.image.device).expand(len(images), count)
            groups.append(GroupResult(tuple(images), index))
        return torch.ones_like(layout.token_mask), groups, layout.counts
