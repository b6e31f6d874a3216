"""The training loss: answer tokens of packed questions, plus a scene loss on CLS.

The forward pass follows ``LlavaModel`` step by step (vision tower, the configured
feature layer without CLS, projector, visual features in place of the ``<image>``
embeddings, then the language model) so that a packed block computes what the
single-question prompt computes; only the mask and position ids differ.

Two auxiliary losses shape the vision tower; their small heads are used in training
only and are not part of the checkpoint:

* The scene loss asks the CLS token, at the feature layer, which object kinds,
  glyphs and background the image has. In LLaVA the CLS output is dropped, so
  without this loss nothing would train CLS attention; with it CLS attends to the
  objects, as CLIP's does, which methods ranking tokens by CLS attention rely on.
* The patch loss asks every visual token what lies in its patch (shape, colour,
  glyph, whether an object's top-left corner is there). Dense labels teach the
  tower in minutes what the answer loss alone teaches in hours, and keep each
  object's evidence in its own tokens, which is what makes pruning matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlavaForConditionalGeneration

from ..scenes import GRID, Scene
from ..vocabulary import BACKGROUND_COLOURS, GLYPHS, OBJECT_COLOURS, SHAPES
from .grounding import capture_attention_input, focus_attention_loss
from .packing import IGNORE, PackedBatch

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
    "corner": ("no", "yes"),
}


def patch_targets(scenes: Sequence[Scene]) -> torch.Tensor:
    """(N, 576, 4) class ids per visual token: shape, colour, glyph, top-left corner."""
    shape_id = {s: i for i, s in enumerate(PATCH_LABELS["shape"])}
    colour_id = {c: i for i, c in enumerate(PATCH_LABELS["colour"])}
    glyph_id = {g: i for i, g in enumerate(PATCH_LABELS["glyph"])}
    targets = torch.zeros(len(scenes), GRID * GRID, len(PATCH_LABELS), dtype=torch.long)
    for n, scene in enumerate(scenes):
        for obj in scene.objects:
            patches = obj.box.patches()
            targets[n, patches, 0] = shape_id[obj.shape]
            targets[n, patches, 1] = colour_id[obj.colour]
            targets[n, patches[0], 3] = 1  # patches() lists in raster order: top-left first
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


class SceneHead(nn.Module):
    """CLS feature -> a logit per scene label."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, len(SCENE_LABELS))

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(cls))


class AuxiliaryHeads(nn.Module):
    """The training-only heads on the vision tower."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.scene = SceneHead(hidden)
        self.patch = PatchHead(hidden)


@dataclass
class Losses:
    total: torch.Tensor
    answer: torch.Tensor
    scene: torch.Tensor
    patch: torch.Tensor
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
    """Weights of the auxiliary losses, and where the two grounding losses act
    (see ``training.grounding``). ``vision`` False: the vision tower is frozen, runs
    without gradients, and the scene and patch losses are skipped."""

    scene: float = 0.5
    patch: float = 0.5
    grounding: float = 0.0
    look_layer: int = 1
    look_head: int = 0
    read_layer: int = 2
    read_heads: tuple[int, int] = (1, 2)  # one for the first anchor word, one for the last
    vision: bool = True


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
    """Answer + EOS cross-entropy plus the weighted scene, patch and grounding losses.

    ``scene``, ``patches``: targets of :func:`scene_targets`, :func:`patch_targets`;
    ``anchors``: the question words the grounding loss supervises (``batches.Anchors``).
    """
    layers = model.model.language_model.layers
    look, read = layers[weights.look_layer].self_attn, layers[weights.read_layer].self_attn
    with capture_attention_input(look) as seen_look, capture_attention_input(read) as seen_read:
        selected, hidden = forward_packed(model, pixel_values, batch, train_vision=weights.vision)
    rows, cols = (batch.labels != IGNORE).nonzero(as_tuple=True)  # only these need the LM head
    logits = model.lm_head(hidden[rows, cols])
    labels = batch.labels[rows, cols]
    answer_loss = F.cross_entropy(logits, labels)
    zero = answer_loss.new_zeros(())
    if weights.vision:
        scene_loss = F.binary_cross_entropy_with_logits(heads.scene(selected[:, 0]), scene)
        patch_loss = heads.patch.loss(selected[:, 1:], patches)
    else:
        scene_loss = patch_loss = zero
    grounding_loss = zero
    if weights.grounding > 0:
        grounding_loss = focus_attention_loss(
            look, seen_look, batch, anchors.rows, anchors.cols, anchors.focus, weights.look_head,
        )
        length = batch.input_ids.shape[1]
        positions = torch.arange(length)
        for head, word in zip(weights.read_heads, (anchors.first_word, anchors.last_word)):
            grounding_loss = grounding_loss + 0.5 * focus_attention_loss(
                read, seen_read, batch, anchors.answer_rows, anchors.answer_cols, positions[None] == word[:, None],
                head, keys=slice(0, length),
            )
    with torch.no_grad():
        # Targets alternate answer, EOS within each block (see packing).
        correct = (logits[0::2].argmax(-1) == labels[0::2]).float().mean().item()
    total = (answer_loss + weights.scene * scene_loss + weights.patch * patch_loss
             + weights.grounding * grounding_loss)
    return Losses(total, answer_loss, scene_loss, patch_loss, grounding_loss, correct)


def vision_losses(
    model: LlavaForConditionalGeneration,
    heads: AuxiliaryHeads,
    pixel_values: torch.Tensor,
    scene: torch.Tensor,
    patches: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scene loss, patch loss) of the vision tower alone, at the model's feature layer."""
    vision = model.model.vision_tower(pixel_values, output_hidden_states=True)
    selected = vision.hidden_states[model.config.vision_feature_layer]
    scene_loss = F.binary_cross_entropy_with_logits(heads.scene(selected[:, 0]), scene)
    return scene_loss, heads.patch.loss(selected[:, 1:], patches)


@torch.no_grad()
def answer_hits(model: LlavaForConditionalGeneration, pixel_values: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
    """Per question block in (image, block) order: is the most likely answer word right?"""
    _, hidden = forward_packed(model, pixel_values, batch)
    rows, cols = (batch.labels != IGNORE).nonzero(as_tuple=True)
    rows, cols = rows[0::2], cols[0::2]
    return model.lm_head(hidden[rows, cols]).argmax(-1) == batch.labels[rows, cols]
