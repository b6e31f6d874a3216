"""In-LLM stages: prune after decoder layer K, and keep every later layer consistent.

Hooks on the language model's own decoder layers (no copy of its forward loop):

* layer K (1-based) -- its input and its ``k_proj`` output are captured as it runs;
  after it, the stage selects on what it computed (attention rows recomputed for the
  few query tokens, hidden states, keys), and its output is compacted (the kept
  tokens in sequence order, or in the order the stage gave them within the places
  each image keeps: ``Selection.slots``);
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

from ..compat import cache_argument, cache_in
from .compaction import Compaction, plan_compaction
from .prompt_replay import PromptMemory
from .stage_runner import run_stages
from .sequence import StagePrefix, consecutive_ids, next_id
from .stage_outcome import StageOutcome
from .token_view import LayerCapture, TokenView

if TYPE_CHECKING:
    from ..config import PruneConfig
    from ..registry import Stage
    from .adapter_protocol import FamilyAdapter
    from .signal_source import SignalSource


@dataclass
class PrefillPass:
    """One prefill through the decoder layers.

    results:  every stage's outcome so far (the pre-LLM one first), the record's list
    prefixes: the sequence's per-stage cache prefixes, appended as stages run
    memory:   where each stage's outcome is remembered (a prompt seen for the first time)
    replay:   the outcomes to apply instead of selecting (a prompt extended by ``extra``
              tokens; see prompt_replay.py)
    """

    level: TokenView
    results: list[StageOutcome]
    prefixes: list[StagePrefix]
    memory: PromptMemory | None = None
    replay: list[StageOutcome] | None = None
    extra: int = 0
    capture: LayerCapture | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class DecodePass:
    """One later forward (a decoding step) through the decoder layers."""

    prefixes: list[StagePrefix]
    tail: torch.Tensor | None  # (B, new) mask of everything after the cached prompt
    new: int  # slots after the cached prompt, this forward's tokens included
    masks: dict[Any, Any] = field(default_factory=dict)  # per stage: its mask, its renumbered ids


class LayerStages:
    """The decoder-layer hooks of one pruned model instance. ``current`` is the pass of
    the language model's forward in progress (set at its start, cleared at its end)."""

    def __init__(
        self, adapter: "FamilyAdapter", config: "PruneConfig", stages: list["Stage"], source: "SignalSource"
    ) -> None:
        self.adapter = adapter
        self.config = config
        self.source = source
        self.stages = {stage.layer: stage for stage in stages}  # K -> stage
        self.starts = sorted(self.stages)  # a stage at K acts from 0-based layer K on
        self.current: PrefillPass | DecodePass | None = None
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
        self.current = None

    # -- the pass of one forward --------------------------------------------------------------
    def begin_prefill(self, pass_: PrefillPass) -> PrefillPass:
        self.current = pass_
        return pass_

    def begin_decode(self, prefixes: list[StagePrefix], tail: torch.Tensor | None, new: int) -> None:
        self.current = DecodePass(prefixes, tail, new) if prefixes else None

    def end(self) -> None:
        self.current = None

    @property
    def _prefill(self) -> PrefillPass | None:
        return self.current if isinstance(self.current, PrefillPass) else None

    @property
    def _decode(self) -> DecodePass | None:
        return self.current if isinstance(self.current, DecodePass) else None

    # -- layer K: capture, then select ----------------------------------------------------------
    def _make_capture(self, index: int):
        def capture(module: Any, args: tuple, kwargs: dict) -> None:
            if self._prefill is not None:
                hidden = args[0] if args else kwargs["hidden_states"]
                self._prefill.capture = LayerCapture(index, module, hidden, kwargs["position_embeddings"])

        return capture

    def _capture_keys(self, module: Any, args: tuple, output: torch.Tensor) -> None:
        if self._prefill is not None and self._prefill.capture is not None:
            self._prefill.capture.keys = output

    def _make_stage(self, k: int):
        def run(module: Any, args: tuple, kwargs: dict, output: Any) -> Any:
            prefill = self._prefill
            if prefill is None or prefill.capture is None:
                return None
            hidden = output[0] if isinstance(output, tuple) else output
            new_hidden = self._prune_after(k, prefill, hidden, kwargs)
            return (new_hidden, *output[1:]) if isinstance(output, tuple) else new_hidden

        return run

    def _prune_after(self, k: int, prefill: PrefillPass, hidden: torch.Tensor, kwargs: dict) -> torch.Tensor:
        """Select after layer K, compact its output, and set what every later layer sees."""
        capture, prefill.capture = prefill.capture, None
        capture.hidden_out = hidden
        level = prefill.level
        level.capture = capture
        if prefill.replay is not None:
            done = prefill.replay[len(prefill.results)]
            outcome = done.at(k)
            keep, moves = done.replay(level, prefill.extra), done.flat_moves(prefill.extra)
        else:
            outcome = run_stages([self.stages[k]], self.config, self.source, level, start=k)
            keep, moves = outcome.keep, outcome.flat_moves()
            if prefill.memory is not None:
                prefill.memory.stages.append(outcome)
        compaction = plan_compaction(keep).reordered(moves, keep.shape[1])
        new_hidden = compaction.gather_tokens(capture.hidden_out, seq_dim=1)
        mask = compaction.mask(level.attention_mask)
        positions, tables, shift = self._compacted_positions(compaction, capture, level, kwargs, new_hidden, prefill)
        prefill.overrides = {
            "attention_mask": self._causal_mask(new_hidden, mask, cache_in(kwargs), k),
            "position_embeddings": tables,
            "position_ids": positions,
        }
        prefill.level = level.compact(compaction, outcome.counts, mask)
        prefill.results.append(outcome)
        prefill.prefixes.append(StagePrefix(k, mask, compaction.length, shift))
        return new_hidden

    def _compacted_positions(
        self,
        compaction: Compaction,
        capture: LayerCapture,
        level: TokenView,
        kwargs: dict,
        new_hidden: torch.Tensor,
        prefill: PrefillPass,
    ) -> tuple[torch.Tensor | None, tuple[torch.Tensor, torch.Tensor], torch.Tensor | None]:
        """Position ids, RoPE tables and (``positions="compact"``) the id shift of the
        layers after a stage."""
        positions = kwargs.get("position_ids")
        new_positions = None if positions is None else compaction.gather(
            positions.expand(*positions.shape[:-2], new_hidden.shape[0], -1), seq_dim=-1
        )
        cos, sin = capture.position_embeddings
        # (B, L, d), or (3, B, L, d) for M-RoPE in some releases: tokens are dim -2.
        tables = (compaction.gather(cos, seq_dim=-2), compaction.gather(sin, seq_dim=-2))
        if not self._renumbers(new_positions):
            return new_positions, tables, None
        mask = compaction.mask(level.attention_mask)
        real = compaction.valid if mask is None else mask.bool()
        before = positions.expand(new_hidden.shape[0], -1)
        before_mask = compaction.valid.new_ones(before.shape) if level.attention_mask is None else level.attention_mask.bool()
        renumbered = consecutive_ids(renumber_from=new_positions, real=real)
        step = next_id(before, before_mask) - next_id(renumbered, real)
        previous = prefill.prefixes[-1].shift if prefill.prefixes and prefill.prefixes[-1].shift is not None else 0
        tables = self.adapter.language_model.rotary_emb(new_hidden, renumbered)
        return renumbered, tables, step + previous

    def _renumbers(self, positions: torch.Tensor | None) -> bool:
        """Whether stages renumber the kept tokens (``positions="compact"``, 1-D RoPE)."""
        return (
            self.config.positions == "compact"
            and positions is not None
            and positions.dim() == 2
            and self.adapter.position_rows == 1
        )

    # -- every layer after the first stage ----------------------------------------------------
    def _make_override(self, index: int):
        def override(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            prefill, decode = self._prefill, self._decode
            if prefill is not None and prefill.overrides:
                return args, {**kwargs, **prefill.overrides}
            if decode is None:
                return None
            prefix = _prefix_for(decode.prefixes, index)
            if prefix is None:
                return None
            hidden = args[0] if args else kwargs["hidden_states"]
            changed = {"attention_mask": self._decode_mask(decode, prefix, hidden, kwargs)}
            if prefix.shift is not None and kwargs.get("position_ids") is not None:
                changed.update(self._decode_positions(decode, prefix, hidden, kwargs["position_ids"]))
            return args, {**kwargs, **changed}

        return override

    def _decode_positions(self, decode: DecodePass, prefix: StagePrefix, hidden: torch.Tensor, positions: torch.Tensor) -> dict:
        """A decoding step's ids and RoPE tables in the layers of a renumbering stage."""
        key = ("positions", prefix.start)
        if key not in decode.masks:
            shifted = positions.expand(hidden.shape[0], -1) - prefix.shift[:, None]
            tables = self.adapter.language_model.rotary_emb(hidden, shifted)
            decode.masks[key] = {"position_ids": shifted, "position_embeddings": tables}
        return decode.masks[key]

    def _decode_mask(self, decode: DecodePass, prefix: StagePrefix, hidden: torch.Tensor, kwargs: dict) -> Any:
        """The mask of a decoding step in the layers of one stage (computed once)."""
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
        from transformers.masking_utils import create_causal_mask

        return create_causal_mask(
            config=self.adapter.language_model.config,
            inputs_embeds=hidden,
            attention_mask=mask,
            **{cache_argument(): cache},
            position_ids=None,
            layer_idx=layer if cache is not None else None,
        )


def _prefix_for(prefixes: list[StagePrefix], index: int) -> StagePrefix | None:
    """The prefix of the last stage acting at or before 0-based layer ``index``."""
    at = bisect.bisect_right([p.start for p in prefixes], index) - 1
    return prefixes[at] if at >= 0 else None

