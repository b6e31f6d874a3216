"""The grounding terms, registered by name, each with its own target.

Every term supervises one hop of a visual question (see :mod:`.grounding`,
:mod:`.locating`) at the layers and heads that ``objective.LossWeights`` declares as
data; ``LossWeights.terms`` names the ones a run uses, in this registry's order, and
``grounding=0`` is the control run with none of them. A term returns a scalar loss.

* ``look``: the anchor word's attention (look layer, look head) on its object's tokens
  (target ``anchors.focus``);
* ``count``: the counted word's attention (look layer, count head) shared evenly between
  ``<s>`` and each counted object's middle token (``anchors.count_targets``);
* ``bind``: the anchor word's attention (bind layer, bind head) on the word before it;
* ``read``: the answer position's attention (read layer, read heads) on the first and on
  the last anchor word, each weighted 0.5;
* ``locate``: the where / offset regressions after the look and read layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from .grounding import even_attention_loss, focus_attention_loss
from .locating import location_loss
from .packing import PackedBatch

if TYPE_CHECKING:
    from .batches import Anchors
    from .objective import AuxiliaryHeads, LossWeights


@dataclass
class HopInputs:
    """What the terms read: the batch, its anchors, the declared routing, and the
    attention inputs and layer outputs captured during the forward pass."""

    batch: PackedBatch
    anchors: "Anchors"
    weights: "LossWeights"
    attention: dict[int, nn.Module]  # decoder layer -> its self-attention module
    seen: dict[int, dict]  # decoder layer -> captured attention input
    outputs: dict[int, torch.Tensor]  # decoder layer -> its output hidden states
    heads: "AuxiliaryHeads"

    def hop(self, layer: int) -> tuple[nn.Module, dict]:
        return self.attention[layer], self.seen[layer]


def _look(x: HopInputs) -> torch.Tensor:
    a, w = x.anchors, x.weights
    return focus_attention_loss(*x.hop(w.look_layer), x.batch, a.rows, a.cols, a.focus, w.look_head)


def _count(x: HopInputs) -> torch.Tensor:
    a, w = x.anchors, x.weights
    return even_attention_loss(*x.hop(w.look_layer), x.batch, a.count_rows, a.count_cols, a.count_targets,
                               w.count_head)


def _bind(x: HopInputs) -> torch.Tensor:
    a, w = x.anchors, x.weights
    length = x.batch.input_ids.shape[1]
    before = torch.arange(length)[None] == a.cols[:, None] - 1
    return focus_attention_loss(*x.hop(w.bind_layer), x.batch, a.rows, a.cols, before, w.bind_head,
                                keys=slice(0, length))


def _read(x: HopInputs) -> torch.Tensor:
    a, w = x.anchors, x.weights
    length = x.batch.input_ids.shape[1]
    positions = torch.arange(length)
    total = x.seen[w.read_layer]["hidden"].new_zeros(())
    for head, word in zip(w.read_heads, (a.first_word, a.last_word)):
        total = total + 0.5 * focus_attention_loss(
            *x.hop(w.read_layer), x.batch, a.answer_rows, a.answer_cols, positions[None] == word[:, None],
            head, keys=slice(0, length),
        )
    return total


def _locate(x: HopInputs) -> torch.Tensor:
    w = x.weights
    return location_loss(x.heads.location, x.outputs[w.look_layer], x.outputs[w.read_layer], x.anchors)


@dataclass(frozen=True)
class Term:
    compute: Callable[[HopInputs], torch.Tensor]
    layers: Callable[["LossWeights"], tuple[int, ...]]  # decoder layers whose attention input it reads
    enabled: Callable[["LossWeights", "AuxiliaryHeads"], bool] = lambda w, h: True


TERMS: dict[str, Term] = {
    "look": Term(_look, lambda w: (w.look_layer,)),
    "count": Term(_count, lambda w: (w.look_layer,), lambda w, h: w.count_head is not None),
    "bind": Term(_bind, lambda w: (w.bind_layer,), lambda w, h: w.bind_head is not None),
    "read": Term(_read, lambda w: (w.read_layer,)),
    "locate": Term(_locate, lambda w: (), lambda w, h: h.location is not None),
}


def check_terms(names: tuple[str, ...]) -> None:
    unknown = [n for n in names if n not in TERMS]
    if unknown:
        raise ValueError(f"terms: unknown grounding term(s) {unknown}; known: {list(TERMS)}")


def active_terms(weights: "LossWeights", heads: "AuxiliaryHeads") -> list[str]:
    """The terms a step computes, in registry order."""
    check_terms(weights.terms)
    if weights.grounding <= 0:
        return []
    return [n for n in TERMS if n in weights.terms and TERMS[n].enabled(weights, heads)]


def grounding_loss(inputs: HopInputs, names: list[str]) -> torch.Tensor:
    """The sum of the named terms (zero when none)."""
    total = inputs.seen[next(iter(inputs.seen))]["hidden"].new_zeros(()) if inputs.seen else torch.zeros(())
    for name in names:
        total = total + TERMS[name].compute(inputs)
    return total
