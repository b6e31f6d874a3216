"""The hooks that prune one model instance: install and remove, nothing else decided here.

Forward hooks on the instance's own modules (no class patching):

* on the vision tower: records each call (and, through the adapter's capture hooks,
  what the vision signals are computed from);
* on the multimodal core (``LlavaModel``, ``Qwen2VLModel``...): records what the
  forward was called with and, when a pruned sequence is continued without position
  ids, supplies them (decode.py);
* on its language model: where the prompt's embeddings, mask and position ids arrive,
  a forward that brings images is pruned (prefill.py), a later one is mapped onto the
  compacted cache (decode.py); when the language model returns, the new state is kept
  with the cache it describes.

``generate`` never notices: it keeps its own (unpruned) attention mask and position
ids, and the state maps them onto the compacted cache at every step.
"""

from __future__ import annotations

import functools
import inspect
from collections import deque
from typing import TYPE_CHECKING, Any

import torch

from ..compat import cache_in, cache_of
from ..signals import VISION_SIGNALS
from .decode import continuation_positions, decode_step
from .forward_inputs import Forward
from .last_forward import PruneRecord
from .layer_stages import LayerStages
from .prefill import Prefill, PrefillInput
from .sequence import CacheMaps, SequenceState, cache_length
from .signal_source import SignalSource
from .text_tower import provide_text_tower
from .vision import VisionCall

if TYPE_CHECKING:
    from ..config import PruneConfig
    from ..registry import Stage
    from .adapter_protocol import FamilyAdapter


class PruningHooks:
    """The hooks of one pruned model instance, and the steps they run."""

    def __init__(self, adapter: "FamilyAdapter", config: "PruneConfig", stages: list["Stage"]) -> None:
        self.adapter = adapter
        self.config = config
        text_tower = provide_text_tower(adapter, config, stages)
        needs = {name for stage in stages for name in stage.needs}
        # Signals read inside the vision tower: its own, and CLIP-space relevance.
        self._needs_vision = bool(needs & (VISION_SIGNALS | {"clip_relevance"})) or (
            "text_relevance" in needs and text_tower is not None
        )
        source = SignalSource(adapter, text_tower)
        inside = [s for s in stages if s.layer is not None]
        self.layer_stages = LayerStages(adapter, config, inside, source) if inside else None
        self.prefill = Prefill(adapter, config, [s for s in stages if s.layer is None], self.layer_stages, source)
        self.enabled = True
        self._caches = CacheMaps()
        self._pending: Forward | None = None  # from the core's pre-hook to the language model's
        self._binding: SequenceState | None = None  # from the language model's pre-hook to its return
        self._signature = inspect.signature(adapter.core.forward)
        self._vision_calls: deque[VisionCall] = deque(maxlen=4)
        self._encoder_calls: deque[dict] = deque(maxlen=4)
        self._handles: list[Any] = []

    @property
    def last(self) -> PruneRecord | None:
        """What the last pruned forward kept."""
        return self.prefill.last

    # -- lifecycle ----------------------------------------------------------------------
    def install(self) -> None:
        adapter = self.adapter
        self._handles = [
            adapter.vision_module.register_forward_pre_hook(self._before_vision, with_kwargs=True),
            *(adapter.install_vision_capture(self._record_vision) if self._needs_vision else ()),
            adapter.core.register_forward_pre_hook(self._before_core, with_kwargs=True),
            adapter.language_model.register_forward_pre_hook(self._before_language_model, with_kwargs=True),
            adapter.language_model.register_forward_hook(self._after_language_model, with_kwargs=True),
        ]
        if adapter.records_encoder:
            self._wrap_image_encoder()
        if self.layer_stages is not None:
            self.layer_stages.install()

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
        """Forget every sequence (a new prefill starts afresh anyway)."""
        self._pending = self._binding = None
        self._caches.clear()
        self.prefill.memory = None
        self._vision_calls.clear()
        self._encoder_calls.clear()
        if self.layer_stages is not None:
            self.layer_stages.end()

    # -- the vision tower ------------------------------------------------------------------
    def _before_vision(self, module: Any, args: tuple, kwargs: dict) -> None:
        if self.enabled:
            self._vision_calls.append(VisionCall(self.adapter.vision_call(args, kwargs)))

    def _record_vision(self, name: str, value: Any) -> None:
        """Called by the adapter's hooks inside the vision tower during a call."""
        if self.enabled and self._vision_calls:
            self._vision_calls[-1].captures[name] = value

    # -- the multimodal core ------------------------------------------------------------------
    def _before_core(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if not self.enabled:
            self.reset()
            return None
        inputs = self._signature.bind_partial(*args, **kwargs).arguments
        self._pending = Forward(core_inputs=inputs, vision_calls=tuple(self._vision_calls))
        past = cache_in(inputs)
        state = self._caches.state_of(past)
        if state is None or inputs.get("position_ids") is not None:
            return None
        tokens = inputs.get("input_ids") if inputs.get("input_ids") is not None else inputs["inputs_embeds"]
        return args, {**kwargs, "position_ids": continuation_positions(self.adapter, state, tokens, cache_length(past))}

    # -- the language model ---------------------------------------------------------------------
    def _before_language_model(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if not self.enabled:
            return None
        forward, self._pending = self._pending, None
        if self.layer_stages is not None:
            self.layer_stages.end()  # a forward that raised midway leaves no pass behind
        embeds = kwargs.get("inputs_embeds")
        if forward is None or embeds is None:
            return None  # the language model was called on its own: not ours to change
        past = cache_in(kwargs)
        state = self._caches.state_of(past)
        mask = self.adapter.padding_mask(forward, kwargs)  # the 2-D mask a prepared one was built from
        layout = self._layout(forward, embeds, mask)
        if layout is None and state is None:
            return None
        if mask is not None and not (isinstance(mask, torch.Tensor) and mask.dim() == 2):
            raise ValueError(
                "vtprune needs a 2-D attention_mask (batch, tokens); got a prepared "
                f"{type(mask).__name__} mask. Static and compiled caches build masks for the "
                "unpruned length: use the default dynamic cache."
            )
        past_len, length = cache_length(past), embeds.shape[1]
        if layout is None:
            self._binding = state
            kwargs = decode_step(kwargs, state, mask, past_len, length, self.layer_stages)
            return args, self.adapter.language_model_mask(kwargs, forward, None)
        step = PrefillInput(forward, kwargs.get("position_ids"), mask, state, past_len, length)
        compacted = self.prefill(step)
        self._binding = compacted.state
        kwargs = {**kwargs, "inputs_embeds": compacted.embeds, "attention_mask": compacted.mask, "position_ids": compacted.positions}
        kwargs = self.adapter.compact_side_inputs(kwargs, compacted.compaction)  # per-token inputs of the family
        if kwargs.get("cache_position") is not None:  # transformers releases that still pass it
            kwargs["cache_position"] = torch.arange(past_len, past_len + compacted.length, device=embeds.device)
        return args, self.adapter.language_model_mask(kwargs, forward, compacted.compaction)

    def _layout(self, forward: Forward, embeds: torch.Tensor, mask: Any):
        """The images of this forward (``None``: none to prune), with what it brings."""
        length = embeds.shape[1]
        forward.inputs_embeds = embeds
        forward.vision_calls = tuple(self._vision_calls)  # including a run inside this forward
        forward.encoder_calls = tuple(self._encoder_calls)
        forward.attention_mask = mask[:, -length:] if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
        forward.prune_videos = self.config.videos == "prune"
        forward.layout = self.adapter.layout(forward)
        return forward.layout

    def _after_language_model(self, module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        """Keep the sequence's state with the cache it was written into (a direct
        ``model(...)`` call creates its cache inside the language model)."""
        if self.layer_stages is not None:
            self.layer_stages.end()
        state, self._binding = self._binding, None
        cache = cache_in(kwargs)
        if cache is None:
            cache = cache_of(output)
        if state is not None and cache is not None:
            self._caches.bind(cache, state)
