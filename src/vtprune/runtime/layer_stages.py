"""In-LLM stages: prune after decoder layer K, and keep every later layer consistent.

Hooks on the language model's own decoder layers (no copy of its forward loop):

* layer K (1-based) -- its input and its ``k_proj`` output are captured as it runs;
  after it, the stage selects on what it computed (attention rows recomputed for the
  few query tokens, hidden states, keys), and its output is compacted;
* every layer after K -- its attention mask, RoPE tables and position ids are replaced
  by the compacted ones (computed once per stage), so it sees the shorter sequence.

The KV cache therefore holds the full sequence in layers 1..K and the pruned one
afterwards. At each decoding step the layers after K get a mask sized to their own,
shorter, cache; the new tokens' positions are the same in every layer.

With ``positions="compact"`` on 1-D RoPE models, a stage also renumbers the tokens it
keeps (consecutive ids from each row's first real token, as PyramidDrop's and
SparseVLM's code do after each drop), so every segment of layers sees its own sequence
numbered without gaps, and a decoding step's tokens get, in the layers after a stage,
the ids that continue that stage's numbering. M-RoPE models keep their original ids
inside the language model (their 3-D ids cannot be renumbered per layer).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from transformers.masking_utils import create_causal_mask

from .cache_argument import CACHE_ARGUMENT, cache_in
from .compaction import plan_compaction
from .level import LayerCapture, Level
from .replay import PromptMemory, StageKeep
from .selection import GroupResult, run_stages

if TYPE_CHECKING:
    from ..config import PruneConfig
    from ..models.base import ModelAdapter
    from ..registry import Stage


@dataclass
class StageResult:
    """What one stage kept: it acts from 0-based layer ``start`` on."""

    start: int
    groups: list[GroupResult]
    counts: tuple[int, ...]


@dataclass
class PrefillPass:
    """State of one prefill through the decoder layers.

    memory: where each stage's keep mask is recorded (a prompt seen for the first time)
    replay: the keep masks to apply instead of selecting (a prompt extended by ``extra``
            tokens; see replay.py)
    """

    level: Level
    results: list[StageResult]
    memory: PromptMemory | None = None
    replay: list[StageKeep] | None = None
    extra: int = 0
    capture: LayerCapture | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class StagePrefix:
    """Attention mask of the cached prompt in the layers from ``start`` on."""

    start: int
    mask: torch.Tensor | None  # (B, length); None: all real
    length: int
    shift: torch.Tensor | None = None  # (B,) positions="compact": input id minus this stage's id


@dataclass
class DecodePass:
    """State of one later forward (a decoding step) through the decoder layers."""

    prefixes: list[StagePrefix]
    tail: torch.Tensor | None  # (B, new) mask of everything after the cached prompt
    new: int  # slots after the cached prompt, this forward's tokens included
    masks: dict[Any, Any] = field(default_factory=dict)  # per stage: its mask, its renumbered ids


class LayerStages:
    """The decoder-layer hooks of one pruned model instance."""

    def __init__(self, adapter: "ModelAdapter", config: "PruneConfig", stages: list["Stage"]) -> None:
        self.adapter = adapter
        self.config = config
        self.stages = {stage.layer: stage for stage in stages}  # K -> stage
        self.starts = sorted(self.stages)  # a stage at K acts from 0-based layer K on
        self.prefill: PrefillPass | None = None
        self.decode: DecodePass | None = None
        self.prefixes: list[StagePrefix] = []  # of the current sequence, for its decoding steps
        self._handles: list[Any] = []

    # -- lifecycle ----------------------------------------------------------------------
    def install(self) -> None:
        layers = self.adapter.decoder_layers
        for index in range(self.starts[0], len(layers)):
            self._handles.append(layers[index].register_forward_pre_hook(self._make_override(index), with_kwargs=True))
        for k in self.starts:
            layer = layers[k - 1]
            self._handles.append(layer.register_forward_pre_hook(self._make_capture(k - 1), with_kwargs=True))
            self._handles.append(self.adapter.key_projection(layer).register_forward_hook(self._capture_keys))
            self._handles.append(layer.register_forward_hook(self._make_stage(k), with_kwargs=True))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.reset()

    def reset(self) -> None:
        self.prefill = self.decode = None
        self.prefixes = []

    # -- prefill ------------------------------------------------------------------------
    def begin_prefill(
        self,
        level: Level,
        memory: PromptMemory | None = None,
        replay: list[StageKeep] | None = None,
        extra: int = 0,
    ) -> PrefillPass:
        self.decode = None
        self.prefixes = []
        self.prefill = PrefillPass(level, [], memory, replay, extra)
        return self.prefill

    def _make_capture(self, index: int):
        def capture(module: Any, args: tuple, kwargs: dict) -> None:
            if self.prefill is not None:
                hidden = args[0] if args else kwargs["hidden_states"]
                self.prefill.capture = LayerCapture(index, module, hidden, kwargs["position_embeddings"])

        return capture

    def _capture_keys(self, module: Any, args: tuple, output: torch.Tensor) -> None:
        if self.prefill is not None and self.prefill.capture is not None:
            self.prefill.capture.keys = output

    def _make_stage(self, k: int):
        stage = self.stages[k]

        def run(module: Any, args: tuple, kwargs: dict, output: Any) -> Any:
            prefill = self.prefill
            if prefill is None or prefill.capture is None:
                return None
            hidden = output[0] if isinstance(output, tuple) else output
            capture, prefill.capture = prefill.capture, None
            capture.hidden_out = hidden
            level = prefill.level
            level.capture = capture
            if prefill.replay is not None:
                done = prefill.replay[len(prefill.results)]
                keep, groups, counts = done.replay(level, prefill.extra), done.groups, done.counts
            else:
                keep, groups, counts, merges = run_stages([stage], self.config, self.adapter, level)
                if prefill.memory is not None:
                    prefill.memory.stages.append(StageKeep(keep, groups, counts, merges))
            compaction = plan_compaction(keep)
            new_hidden = compaction.gather(capture.hidden_out, seq_dim=1)
            mask = compaction.mask(level.attention_mask)
            cos, sin = capture.position_embeddings
            positions = kwargs.get("position_ids")
            cache = cache_in(kwargs)
            new_positions = None if positions is None else compaction.gather(
                positions.expand(*positions.shape[:-2], new_hidden.shape[0], -1), seq_dim=-1
            )
            # (B, L, d), or (3, B, L, d) for M-RoPE in some releases: tokens are dim -2.
            tables = (compaction.gather(cos, seq_dim=-2), compaction.gather(sin, seq_dim=-2))
            shift = None
            if self._renumbers(new_positions):
                real = compaction.valid if mask is None else mask.bool()
                before = positions.expand(new_hidden.shape[0], -1)
                before_mask = compaction.valid.new_ones(before.shape) if level.attention_mask is None else level.attention_mask.bool()
                renumbered = _consecutive(new_positions, real)
                step = _next_id(before, before_mask) - _next_id(renumbered, real)
                previous = self.prefixes[-1].shift if self.prefixes and self.prefixes[-1].shift is not None else 0
                shift = step + previous
                new_positions = renumbered
                tables = self.adapter.language_model.rotary_emb(new_hidden, new_positions)
            prefill.overrides = {
                "attention_mask": self._causal_mask(new_hidden, mask, cache, k),
                "position_embeddings": tables,
                "position_ids": new_positions,
            }
            prefill.level = level.compact(compaction, counts, mask)
            prefill.results.append(StageResult(k, groups, counts))
            self.prefixes.append(StagePrefix(k, mask, compaction.length, shift))
            return (new_hidden, *output[1:]) if isinstance(output, tuple) else new_hidden

        return run

    # -- every layer after the first stage ----------------------------------------------------
    def _make_override(self, index: int):
        def override(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            if self.prefill is not None and self.prefill.overrides:
                return args, {**kwargs, **self.prefill.overrides}
            if self.decode is not None:
                hidden = args[0] if args else kwargs["hidden_states"]
                prefix = self._prefix_for(index)
                if prefix is not None:
                    changed = {"attention_mask": self._decode_mask(prefix, hidden, kwargs)}
                    if prefix.shift is not None and kwargs.get("position_ids") is not None:
                        changed.update(self._decode_positions(prefix, hidden, kwargs["position_ids"]))
                    return args, {**kwargs, **changed}
            return None

        return override

    def _renumbers(self, positions: torch.Tensor | None) -> bool:
        """Whether stages renumber the kept tokens (``positions="compact"``, 1-D RoPE)."""
        return (
            self.config.positions == "compact"
            and positions is not None
            and positions.dim() == 2
            and self.adapter.position_rows == 1
        )

    def _decode_positions(self, prefix: StagePrefix, hidden: torch.Tensor, positions: torch.Tensor) -> dict:
        """A decoding step's ids and RoPE tables in the layers of a renumbering stage."""
        key = ("positions", prefix.start)
        if key not in self.decode.masks:
            shifted = positions.expand(hidden.shape[0], -1) - prefix.shift[:, None]
            tables = self.adapter.language_model.rotary_emb(hidden, shifted)
            self.decode.masks[key] = {"position_ids": shifted, "position_embeddings": tables}
        return self.decode.masks[key]

    def _prefix_for(self, index: int) -> StagePrefix | None:
        prefixes = self.decode.prefixes
        at = bisect.bisect_right([p.start for p in prefixes], index) - 1
        return prefixes[at] if at >= 0 else None

    def _decode_mask(self, prefix: StagePrefix, hidden: torch.Tensor, kwargs: dict) -> Any:
        """The mask of a decoding step in the layers of one stage (computed once)."""
        decode = self.decode
        if prefix.start not in decode.masks:
            if prefix.mask is None and decode.tail is None:
                mask = None
            else:
                batch, device = hidden.shape[0], hidden.device
                head = prefix.mask if prefix.mask is not None else torch.ones(batch, prefix.length, dtype=torch.long, device=device)
                tail = decode.tail if decode.tail is not None else torch.ones(batch, decode.new, dtype=head.dtype, device=device)
                mask = torch.cat((head, tail.to(head.dtype)), dim=1)
            decode.masks[prefix.start] = self._causal_mask(hidden, mask, cache_in(kwargs), prefix.start)
        return decode.masks[prefix.start]

    def _causal_mask(self, hidden: torch.Tensor, mask: torch.Tensor | None, cache: Any, layer: int) -> Any:
        """What transformers would build for these layers, sized to their own cache."""
        return create_causal_mask(
            config=self.adapter.language_model.config,
            inputs_embeds=hidden,
            attention_mask=mask,
            **{CACHE_ARGUMENT: cache},
            position_ids=None,
            layer_idx=layer if cache is not None else None,
        )


def _consecutive(positions: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(B, L) ids renumbered consecutively over each row's real tokens, from the row's
    first real id (padding keeps its id)."""
    rank = real.long().cumsum(-1) - 1
    first = positions.gather(-1, real.long().argmax(-1, keepdim=True))
    return torch.where(real, first + rank, positions)


def _next_id(positions: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(B,) the id after each row's last real token."""
    return positions.masked_fill(~real, -1).amax(-1) + 1
