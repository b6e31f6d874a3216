"""The training loss: answer tokens of packed questions, plus auxiliary losses.

The forward pass follows ``LlavaModel`` step by step (vision tower, the configured
feature layer without CLS, projector, visual features in place of the ``<image>``
embeddings, then the language model) so that a packed block computes what the
single-question prompt computes; only the mask and position ids differ.

Three auxiliary losses shape the vision tower; their small heads are used in training
only and are not part of the checkpoint:

* The scene loss asks the CLS token, at the feature layer, which object kinds,
  glyphs and background the image has. In LLaVA the CLS output is dropped, so
  without this loss nothing would train CLS attention; with it CLS attends to the
  objects, as CLIP's does, which methods ranking tokens by CLS attention rely on.
* The patch loss asks every visual token what lies in its patch (shape, colour,
  glyph, whether it is an object's middle patch: ``Box.middle_patch``). Dense labels
  teach the tower in minutes what the answer loss alone teaches in hours, and keep
  each object's evidence in its own tokens, which is what makes pruning matter.
* The context loss (off unless weighted) asks every visual token what the scene
  loss asks CLS: which kinds, glyphs and background the image has. CLIP's patch
  tokens carry much of the image's global content, so a token kept for any reason
  still says something about the rest; with this loss the tower's do too.
* The position loss asks every object and tile token where it is (its column and
  row, regressed), so that the values the language model collects from an object
  say where the object is; the position embeddings start from a 2-D table (see
  ``training.positions``). Measured after stage 1, on held-out scenes, from the mean
  feature of each object: a small probe tells the relation of two objects 99.9% of
  the time with both (26%, chance, with neither; 84% with the table alone), and a
  linear probe its shape 98.2% of the time (99.1% with neither).
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlavaForConditionalGeneration

from ..scenes import GRID, Scene
from ..vocabulary import BACKGROUND_COLOURS, GLYPHS, OBJECT_COLOURS, SHAPES
from .grounding import capture_attention_input
from .hops import TERMS, HopInputs, active_terms, grounding_loss
from .locating import LocationHeads, capture_layer_outputs
from .packing import IGNORE, PackedBatch
from .positions import unit_coordinate

if TYPE_CHECKING:
    from .batches import Anchors

SCENE_LABELS: tuple[str, ...] = (
    tuple(f"{c} {s}" for s in SHAPES for c in OBJECT_COLOURS) + tuple(f"tile {g}" for g in GLYPHS)
    + tuple(f"background {b}" for b in BACKGROUND_COLOURS)
)
_INDEX = {label: i for i, label in enumerate(SCENE_LABELS)}


def scene_targets(scenes: Sequence[Scene]) -> torch.Tensor:
    """(N, len(SCENE_LABELS)) multi-hot: kinds present, glyphs present, the background."""
    targets = torch.zeros(len(scenes), len(SCENE_LABELS))
    for n, scene in enumerate(scenes):
        for obj in scene.objects:
            targets[n, _INDEX[f"{obj.colour} {obj.shape}"]] = 1.0
        for tile in scene.tiles:
            targets[n, _INDEX[f"tile {tile.glyph}"]] = 1.0
        targets[n, _INDEX[f"background {scene.background}"]] = 1.0
    return targets


PATCH_LABELS: dict[str, tuple[str, ...]] = {
    "shape": ("none",) + SHAPES,
    "colour": ("none",) + tuple(OBJECT_COLOURS),
    "glyph": ("none",) + GLYPHS,
    "middle": ("no", "yes"),
}


def patch_targets(scenes: Sequence[Scene]) -> torch.Tensor:
    """(N, 576, 4) class ids per visual token: shape, colour, glyph, an object's middle patch."""
    shape_id = {s: i for i, s in enumerate(PATCH_LABELS["shape"])}
    colour_id = {c: i for i, c in enumerate(PATCH_LABELS["colour"])}
    glyph_id = {g: i for i, g in enumerate(PATCH_LABELS["glyph"])}
    targets = torch.zeros(len(scenes), GRID * GRID, len(PATCH_LABELS), dtype=torch.long)
    for n, scene in enumerate(scenes):
        for obj in scene.objects:
            patches = obj.box.patches()
            targets[n, patches, 0] = shape_id[obj.shape]
            targets[n, patches, 1] = colour_id[obj.colour]
            targets[n, obj.box.middle_patch(), 3] = 1
        for tile in scene.tiles:
            patches = tile.box.patches()
            targets[n, patches, 1] = colour_id[tile.colour]
            targets[n, patches, 2] = glyph_id[tile.glyph]
    return targets


class PatchHead(nn.Module):
    """Visual token feature -> logits for each of the PATCH_LABELS questions."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.ModuleList(nn.Linear(hidden, len(labels)) for labels in PATCH_LABELS.values())

    def loss(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean over label kinds of (loss on the tokens that have the label + loss on those
        that do not): balanced, because the few object tokens are the ones that matter
        and a plain mean over 576 tokens would be all background."""
        x = self.norm(features)
        total = features.new_zeros(())
        for k, out in enumerate(self.out):
            per_token = F.cross_entropy(out(x).flatten(0, 1), targets[..., k].flatten(), reduction="none")
            present = targets[..., k].flatten() > 0
            for part in (present, ~present):
                if part.any():
                    total = total + per_token[part].mean()
        return total / len(self.out)


def patch_coordinates(grid: int = GRID) -> torch.Tensor:
    """(grid * grid, 2) each token's (column, row), scaled to [-1, 1], in raster order."""
    index = torch.arange(grid * grid)
    return unit_coordinate(torch.stack([index % grid, index // grid], dim=1).float(), grid)


class PositionHead(nn.Module):
    """Visual token feature -> its (column, row) in [-1, 1]."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, 2)

    def loss(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean squared error on the tokens of objects and tiles (a non-zero patch label)."""
        occupied = (targets > 0).any(dim=-1)
        coordinates = patch_coordinates(math.isqrt(features.shape[1])).to(features)
        where = coordinates.expand(features.shape[0], -1, -1)[occupied]
        return F.mse_loss(self.out(self.norm(features[occupied])), where)


class SceneHead(nn.Module):
    """CLS feature -> a logit per scene label."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, len(SCENE_LABELS))

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(cls))


class AuxiliaryHeads(nn.Module):
    """The training-only heads: on the vision tower, and (``text_hidden``) on the language model."""

    def __init__(self, hidden: int, text_hidden: int | None = None, context: bool = False) -> None:
        super().__init__()
        self.scene = SceneHead(hidden)
        self.patch = PatchHead(hidden)
        self.position = PositionHead(hidden)
        # on the language model (see training.locating); None: no locating loss
        self.location = None if text_hidden is None else LocationHeads(text_hidden)
        # made last and only when asked, so runs without it start from the same weights
        self.context = SceneHead(hidden) if context else None

    def losses(self, selected: torch.Tensor, scene: torch.Tensor, patches: torch.Tensor) -> "TowerLosses":
        """The three losses on the vision tower's features at the feature layer
        (``selected``: CLS first, then the 576 visual tokens), and the context loss
        when its head exists."""
        tokens = selected[:, 1:]
        context = None
        if self.context is not None:
            logits = self.context(tokens)
            context = F.binary_cross_entropy_with_logits(logits, scene[:, None].expand_as(logits))
        return TowerLosses(
            F.binary_cross_entropy_with_logits(self.scene(selected[:, 0]), scene),
            self.patch.loss(tokens, patches),
            self.position.loss(tokens, patches),
            context,
        )


@dataclass
class TowerLosses:
    scene: torch.Tensor
    patch: torch.Tensor
    position: torch.Tensor
    context: torch.Tensor | None = None  # None: no context head


@dataclass
class Losses:
    total: torch.Tensor
    answer: torch.Tensor
    tower: TowerLosses | None  # None when the vision tower is frozen
    grounding: torch.Tensor
    answer_accuracy: float  # share of answer words predicted right


def forward_packed(
    model: LlavaForConditionalGeneration, pixel_values: torch.Tensor, batch: PackedBatch, train_vision: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(vision hidden states at the feature layer, CLS included; LM last hidden states)."""
    core = model.model
    with torch.set_grad_enabled(train_vision and torch.is_grad_enabled()):
        vision = core.vision_tower(pixel_values, output_hidden_states=True)
    selected = vision.hidden_states[model.config.vision_feature_layer]
    image_features = core.multi_modal_projector(selected[:, 1:])  # "default": drop CLS
    if batch.visual_index is not None:  # a subset of the visual tokens (see packing)
        index = batch.visual_index[..., None].expand(-1, -1, image_features.shape[-1])
        image_features = image_features.gather(1, index)

    embeds = core.get_input_embeddings()(batch.input_ids)
    s = batch.image_slice
    embeds = torch.cat([embeds[:, : s.start], image_features.to(embeds.dtype), embeds[:, s.stop:]], dim=1)
    hidden = core.language_model(
        inputs_embeds=embeds, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
    ).last_hidden_state
    return selected, hidden


@dataclass
class LossWeights:
    """Weights of the auxiliary losses, and where the grounding losses act (see
    ``training.grounding``). ``vision`` False: the vision tower is frozen, runs without
    gradients, and the scene, patch and position losses are skipped. ``bind_head`` or
    ``count_head`` None: no loss on that hop."""

    scene: float = 0.5
    patch: float = 0.5
    position: float = 1.0
    context: float = 0.0
    grounding: float = 0.0
    bind_layer: int = 0
    bind_head: int | None = 0  # None: the bind hop is left free
    look_layer: int = 1
    look_head: int = 0
    count_head: int | None = 2  # in the look layer; its own key/value head (GQA) when possible
    read_layer: int = 2
    read_heads: tuple[int, int] = (1, 2)  # one for the first anchor word, one for the last
    vision: bool = True
    # The grounding terms used (see training.hops), each with its own target.
    terms: tuple[str, ...] = ("look", "count", "bind", "read", "locate")

    def tower_total(self, losses: TowerLosses) -> torch.Tensor:
        total = self.scene * losses.scene + self.patch * losses.patch + self.position * losses.position
        if self.context and losses.context is not None:
            total = total + self.context * losses.context
        return total


def packed_losses(
    model: LlavaForConditionalGeneration,
    heads: AuxiliaryHeads,
    pixel_values: torch.Tensor,
    batch: PackedBatch,
    scene: torch.Tensor,
    patches: torch.Tensor,
    anchors: "Anchors",
    weights: LossWeights,
) -> Losses:
    """Answer + EOS cross-entropy plus the weighted tower and grounding losses.

    ``scene``, ``patches``: targets of :func:`scene_targets`, :func:`patch_targets`;
    ``anchors``: the question words the grounding loss supervises (``batches.Anchors``).
    """
    layers = model.model.language_model.layers
    names = active_terms(weights, heads)
    read_from = sorted({layer for name in names for layer in TERMS[name].layers(weights)})
    with ExitStack() as stack:
        seen = {i: stack.enter_context(capture_attention_input(layers[i].self_attn)) for i in read_from}
        outputs = stack.enter_context(capture_layer_outputs(layers, (weights.look_layer, weights.read_layer)))
        selected, hidden = forward_packed(model, pixel_values, batch, train_vision=weights.vision)
    rows, cols = (batch.labels != IGNORE).nonzero(as_tuple=True)  # only these need the LM head
    logits = model.lm_head(hidden[rows, cols])
    labels = batch.labels[rows, cols]
    answer_loss = F.cross_entropy(logits, labels)
    tower = heads.losses(selected, scene, patches) if weights.vision else None
    ground = answer_loss.new_zeros(())
    if names:
        inputs = HopInputs(batch, anchors, weights, {i: layers[i].self_attn for i in read_from}, seen, outputs, heads)
        ground = grounding_loss(inputs, names)
    with torch.no_grad():
        # Targets alternate answer, EOS within each block (see packing).
        correct = (logits[0::2].argmax(-1) == labels[0::2]).float().mean().item()
    total = answer_loss + weights.grounding * ground
    if tower is not None:
        total = total + weights.tower_total(tower)
    return Losses(total, answer_loss, tower, ground, correct)


def vision_losses(
    model: LlavaForConditionalGeneration,
    heads: AuxiliaryHeads,
    pixel_values: torch.Tensor,
    scene: torch.Tensor,
    patches: torch.Tensor,
) -> TowerLosses:
    """The scene, patch and position losses of the vision tower alone, at the model's feature layer."""
    vision = model.model.vision_tower(pixel_values, output_hidden_states=True)
    return heads.losses(vision.hidden_states[model.config.vision_feature_layer], scene, patches)


@torch.no_grad()
def answer_hits(model: LlavaForConditionalGeneration, pixel_values: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
    """Per question block in (image, block) order: is the most likely answer word right?"""
    _, hidden = forward_packed(model, pixel_values, batch)
    rows, cols = (batch.labels != IGNORE).nonzero(as_tuple=True)
    rows, cols = rows[0::2], cols[0::2]
    return model.lm_head(hidden[rows, cols]).argmax(-1) == batch.labels[rows, cols]
