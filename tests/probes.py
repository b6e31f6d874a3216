"""Probe methods for testing the in-LLM runtime on its own: they record every signal
they read and keep the tokens the last prompt token attends to most."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from vtprune.config import PruneConfig, help_field
from vtprune.pruning_methods.uniform import select_uniform
from vtprune.registry import PRE_LLM, Selection, Stage, register

SEEN: list[dict[str, torch.Tensor]] = []  # signals read by the last probe runs


def _inside_needs(k: int) -> frozenset[str]:
    return frozenset({f"attn_rows@llm:{k}", f"attn_last@llm:{k}", f"hidden@llm:{k}", f"keys@llm:{k}", "visual"})


def select_by_last_attention(signals, budget, config, k: int = 2):
    SEEN.append({name: signals[name] for name in sorted(signals.needs)} | {"token_index": signals.token_index})
    count = min(signals.num_tokens, max(1, round(budget * config.share)))
    return _ordered(signals[f"attn_last@llm:{k}"].topk(count, dim=1).indices, config, "inside")


def _ordered(keep: torch.Tensor, config, where: str):
    """``keep``, its tokens given the image's places in reverse order where ``config.reverse`` says."""
    if config.reverse not in (where, "all"):
        return keep
    keep = keep.sort(dim=1).values
    slots = torch.arange(keep.shape[1] - 1, -1, -1, device=keep.device).expand_as(keep)
    return Selection(keep, slots=slots)


@dataclass
class ProbeConfig(PruneConfig):
    """In-LLM probe: optional uniform stage before the LLM, then one stage per layer."""

    method = "probe"
    layers: tuple[int, ...] = help_field((2,), "stage layers K")
    before: bool = help_field(False, "also keep a uniform 2x budget before the LLM")
    share: float = help_field(1.0, "each in-LLM stage keeps share * budget tokens")
    reverse: str = help_field("none", "stages giving their kept tokens in reverse order: 'none', 'inside', 'all'")


def _stages(config: ProbeConfig, num_layers: int) -> list[Stage]:
    stages = []
    if config.before:
        stages.append(Stage(PRE_LLM, lambda s, b, c: _ordered(select_uniform(s, min(s.num_tokens, 2 * b), c), c, "before")))
    stages += [Stage(f"llm:{k}", partial(select_by_last_attention, k=k), _inside_needs(k)) for k in config.layers]
    return stages


register(ProbeConfig, paper="test probe", summary="records signals", stages=_stages)(select_by_last_attention)
