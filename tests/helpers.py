"""Shared pieces of the model tests: the families, greedy decoding, hand-built references."""

from __future__ import annotations

import re

import pytest
import torch

import vtprune
from vtprune.registry import ModelShape
from vtprune.testing import test_models

# Every registered family's tiny model(s): ``name``, ``build(...)``, ``image(i)`` (images
# of different shapes where the family allows it), ``anyres``.
FAMILIES = list(test_models())
FAMILY_IDS = [f.name for f in FAMILIES]


def refusal_reason(model, layers) -> str | None:
    """What ``prune`` must say when stages act after the decoder layers ``layers`` of
    ``model`` (``None``: they run): a family's refusal of every in-LLM stage (Gemma 3's
    local and global layers), or ``DeepStack`` for a stage acting before Qwen3-VL is done
    adding its per-visual-token inputs."""
    from vtprune.models import adapter_class_for_config

    layers = [k for k in layers if k is not None]
    if not layers:
        return None
    reason = adapter_class_for_config(model.config).inside_llm_refusal(model.config)
    if reason is not None:
        return reason
    deep = len(getattr(model.config.vision_config, "deepstack_visual_indexes", None) or ())
    return "DeepStack" if min(layers) <= deep else None


def refused(model, method, **config) -> bool:
    """Whether ``prune(model, method, **config)`` must be refused for its in-LLM stages
    (see :func:`refusal_reason`); then asserts it is, with the reason, and that nothing
    was patched. ``method`` is a name or a config (``config`` empty)."""
    spec = vtprune.get_method(method if isinstance(method, str) else method.method)
    layers = model.config.text_config.num_hidden_layers
    cfg = spec.resolve(spec.config(**config) if isinstance(method, str) else method, ModelShape(layers, None))
    stage_layers = [stage.layer for stage in spec.stages(cfg, layers)]
    reason = refusal_reason(model, stage_layers)
    if reason is None:
        return False
    with pytest.raises(ValueError, match=re.escape(reason)):
        vtprune.prune(model, method, **config)
    assert vtprune.active_handle(model) is None
    return True


def suppress(model) -> list[int]:
    """Token ids generation must not produce: a generated image token id would be
    taken for an image placeholder when the whole sequence is fed back uncached."""
    config = model.config
    ids = [config.image_token_id]
    for name in ("video_token_id", "vision_start_token_id", "vision_end_token_id"):
        if getattr(config, name, None) is not None:
            ids.append(getattr(config, name))
    return ids


def greedy(model, batch, tokens: int = 6, **kwargs) -> torch.Tensor:
    out = model.generate(**batch, max_new_tokens=tokens, do_sample=False, suppress_tokens=suppress(model), **kwargs)
    return out[:, batch["input_ids"].shape[1]:]


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def language_model(model):
    """The decoder stack the multimodal core calls (``text_model`` in Idefics3 / SmolVLM)."""
    core = model.model
    return core.language_model if hasattr(core, "language_model") else core.text_model


def _sub_image_features(model, batch) -> list[torch.Tensor]:
    """Idefics3 / SmolVLM: the model's features of each sub-image, gathered per image.
    An image ends with its global image, whose placeholders follow the tiny models'
    <global-img> marker."""
    from vtprune.models.idefics3.tiny import GLOBAL_IMG

    with torch.no_grad():
        units = model.model.get_image_features(batch["pixel_values"], batch["pixel_attention_mask"], return_dict=True)
    units = list(units.pooler_output)
    per_unit = units[0].shape[0] if units else 0
    images, current, unit = [], [], 0
    for row in batch["input_ids"]:
        positions = torch.nonzero(row == model.config.image_token_id).flatten()
        for start in positions[::per_unit].tolist():
            current.append(units[unit])
            unit += 1
            if int(row[start - 1]) == GLOBAL_IMG:
                images.append(torch.cat(current))
                current = []
    assert unit == len(units) and not current
    return images


def image_features(model, batch) -> list[torch.Tensor]:
    """The model's own features of each image, as it writes them into the sequence
    (LLaVA-NeXT / OneVision: newline tokens included; Idefics3 / SmolVLM: its
    sub-images and global image, in order)."""
    core = model.model
    if "pixel_attention_mask" in batch:
        return _sub_image_features(model, batch)
    with torch.no_grad():
        if "image_grid_thw" in batch:
            out = core.get_image_features(batch["pixel_values"], batch["image_grid_thw"], return_dict=True)
        else:
            config = model.config
            extra = {k: batch[k] for k in ("image_sizes", "batch_num_images") if k in batch}
            # The feature choices the family's config has (Mistral 3 has no select strategy).
            options = ("vision_feature_layer", "vision_feature_select_strategy")
            extra.update({k: getattr(config, k) for k in options if hasattr(config, k)})
            out = core.get_image_features(pixel_values=batch["pixel_values"], return_dict=True, **extra)
    features = list(out.pooler_output)
    if tiled(model):  # InternVL: one pooler row per tile; an image is its tiles' rows
        counts = [n // features[0].shape[0] for row in placeholder_runs(model, batch) for n in row]
        starts = [sum(counts[:i]) for i in range(len(counts))]
        features = [torch.cat(features[a : a + n]) for a, n in zip(starts, counts)]
    return features


def tiled(model) -> bool:
    """InternVL: an image is tiles (and a thumbnail) whose placeholders form one run."""
    return model.config.model_type == "internvl"


def placeholder_runs(model, batch) -> list[list[int]]:
    """Per prompt, the lengths of its runs of consecutive image placeholders (InternVL:
    one run per image, between its <img> and </img> markers)."""
    runs = []
    for row in batch["input_ids"]:
        lengths, count = [], 0
        for is_image in (row == model.config.image_token_id).tolist() + [False]:
            if is_image:
                count += 1
            elif count:
                lengths.append(count)
                count = 0
        runs.append(lengths)
    return runs


def full_embeddings(model, batch) -> torch.Tensor:
    """The language model's input for the unpruned prompt, built by hand: token
    embeddings with the image features written at the image placeholders."""
    embeds = model.model.get_input_embeddings()(batch["input_ids"])
    features = torch.cat(image_features(model, batch)).to(embeds.dtype)
    embeds = embeds.clone()
    embeds[batch["input_ids"] == model.config.image_token_id] = features
    return embeds


def _images_of(model, batch, sample: int) -> tuple[int, int]:
    """(first image number, images) of prompt ``sample``: images are numbered through
    the batch in order."""
    if "image_grid_thw" in batch:
        per_prompt = [int((row == model.config.vision_start_token_id).sum()) for row in batch["input_ids"]]
    elif tiled(model):
        per_prompt = [len(runs) for runs in placeholder_runs(model, batch)]
    elif "image_sizes" in batch or "pixel_attention_mask" in batch:
        features = image_features(model, batch)
        per_prompt, image = [], 0
        for row in batch["input_ids"]:
            tokens, count = int((row == model.config.image_token_id).sum()), 0
            while tokens > 0:
                tokens -= features[image].shape[0]
                image, count = image + 1, count + 1
            per_prompt.append(count)
    else:
        vision = model.config.vision_config
        # Gemma 3 pools its patches into mm_tokens_per_image tokens; LLaVA has one per patch.
        per_image = getattr(model.config, "mm_tokens_per_image", None) or (vision.image_size // vision.patch_size) ** 2
        per_prompt = [int((row == model.config.image_token_id).sum()) // per_image for row in batch["input_ids"]]
    return sum(per_prompt[:sample]), per_prompt[sample]


def image_slots(model, batch, sample: int) -> list[torch.Tensor]:
    """Per image of prompt ``sample``: the sequence positions of its prunable tokens, in
    order (LLaVA-NeXT / OneVision newline tokens are not among them)."""
    first, count = _images_of(model, batch, sample)
    features = image_features(model, batch)[first : first + count]
    positions = torch.nonzero(batch["input_ids"][sample] == model.config.image_token_id).flatten()
    newline = getattr(model.model, "image_newline", None)
    slots, start = [], 0
    for feature in features:
        mine = positions[start : start + feature.shape[0]]
        if newline is not None:
            mine = mine[~(feature == newline.to(feature.dtype)).all(-1)]
        slots.append(mine)
        start += feature.shape[0]
    return slots


def unit_slots(model, slot: torch.Tensor) -> list[torch.Tensor]:
    """The positions of an image's prunable tokens (``image_slots``) cut into the units
    it is pruned as: LLaVA-NeXT / OneVision's base grid and high-resolution grid,
    InternVL's tiles, Idefics3 / SmolVLM's sub-images and global image; the image
    itself otherwise."""
    config = model.config
    vision = config.vision_config
    if tiled(model):  # InternVL: tiles of image_seq_length tokens each
        return list(slot.split(config.image_seq_length))
    if hasattr(config, "scale_factor"):
        per_unit = (vision.image_size // vision.patch_size // config.scale_factor) ** 2
        return list(slot.split(per_unit))
    if getattr(model.model, "image_newline", None) is not None:
        base = (vision.image_size // vision.patch_size) ** 2
        return [slot[:base], slot[base:]] if len(slot) > base else [slot]
    return [slot]


def image_token_counts(model, batch, sample: int) -> list[int]:
    """Prunable tokens of each image of prompt ``sample``, in order."""
    return [len(slot) for slot in image_slots(model, batch, sample)]


def kept_sequence_index(model, batch, last_keep, sample: int) -> torch.Tensor:
    """Sequence positions of prompt ``sample`` that survive pruning: its real text
    tokens (newlines too) and the kept tokens of each of its images, in order."""
    ids = batch["input_ids"][sample]
    keep = batch["attention_mask"][sample].bool().clone()
    for slot, kept in zip(image_slots(model, batch, sample), last_keep[sample]):
        dropped = torch.ones(len(slot), dtype=torch.bool)
        dropped[kept] = False
        keep[slot[dropped]] = False
    return torch.nonzero(keep).flatten()


def image_block_masks(model, batch, sample: int, index: torch.Tensor) -> dict:
    """Gemma 3's masks for the kept sequence positions ``index`` of prompt ``sample``,
    built by hand: a kept token attends to the kept tokens before it and to every kept
    token of its own image (the image is the run of typed tokens it was in before
    pruning); sliding-window layers only to those fewer than ``sliding_window`` kept
    tokens back. Additive float masks (1, 1, L, L)."""
    types = batch["token_type_ids"][sample]
    starts = (types == 1) & (torch.nn.functional.pad(types, (1, 0))[:-1] != 1)
    block = torch.where(types == 1, starts.cumsum(0), 0)[index]  # 0: text
    length = len(index)
    q, k = torch.arange(length)[:, None], torch.arange(length)[None, :]
    full = (k <= q) | ((block[:, None] == block[None, :]) & (block[:, None] > 0))
    sliding = full & (q - k < model.config.text_config.sliding_window)
    dtype = next(model.parameters()).dtype
    additive = lambda allowed: torch.zeros(1, 1, length, length, dtype=dtype).masked_fill(  # noqa: E731
        ~allowed, torch.finfo(dtype).min
    )
    return {"full_attention": additive(full), "sliding_attention": additive(sliding)}


def side_inputs(model, batch, sample: int, index: torch.Tensor) -> dict:
    """The language model's inputs besides the embeddings and positions, for the kept
    sequence positions ``index`` of prompt ``sample``, built by hand: Qwen3-VL's
    DeepStack features of the kept image tokens and their mask, Gemma 3's masks with
    the kept image tokens' blocks; ``{}`` for families without such inputs (or a prompt
    without images)."""
    if "token_type_ids" in batch:
        return {"attention_mask": image_block_masks(model, batch, sample, index)}
    if not getattr(model.config.vision_config, "deepstack_visual_indexes", None):
        return {}
    slots = image_slots(model, batch, sample)
    if not slots:
        return {}
    first, count = _images_of(model, batch, sample)
    with torch.no_grad():
        out = model.model.get_image_features(batch["pixel_values"], batch["image_grid_thw"], return_dict=True)
    kept_rows = [torch.isin(slot, index) for slot in slots]  # each image's kept tokens, in order
    embeds = [
        torch.cat([per_image[first + j][kept] for j, kept in enumerate(kept_rows)])
        for per_image in out.deepstack_features
    ]
    visual = torch.isin(index, torch.cat(slots))[None]
    return {"visual_pos_masks": visual, "deepstack_visual_embeds": embeds}


def full_positions(model, batch) -> torch.Tensor:
    """Unpruned position ids, as generate computes them: (B, L) or (3, B, L)."""
    mask = batch["attention_mask"]
    if "mm_token_type_ids" in batch:
        positions, _ = model.model.get_rope_index(
            batch["input_ids"],
            mm_token_type_ids=batch["mm_token_type_ids"],
            image_grid_thw=batch.get("image_grid_thw"),
            attention_mask=mask,
        )
        return positions
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
