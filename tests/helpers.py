"""Shared pieces of the model tests: the families, greedy decoding, hand-built references."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from vtprune.testing import IMAGE, Image, Part, make_batch, tiny_llava, tiny_qwen2_vl


@dataclass(frozen=True)
class Family:
    name: str
    build: Callable[..., torch.nn.Module]
    images: tuple[Part, ...]  # images of different shapes where the family allows it

    @property
    def mrope(self) -> bool:
        return self.name != "llava"

    def image(self, i: int = 0) -> Part:
        return self.images[i % len(self.images)]


FAMILIES = [
    Family("llava", tiny_llava, (IMAGE,)),
    Family("qwen2_vl", lambda **kw: tiny_qwen2_vl(version="2", **kw), (Image(4, 6), Image(6, 4), Image(5, 5))),
    Family("qwen2_5_vl", lambda **kw: tiny_qwen2_vl(version="2.5", **kw), (Image(4, 6), Image(6, 4), Image(5, 5))),
]
FAMILY_IDS = [f.name for f in FAMILIES]


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


def full_embeddings(model, batch) -> torch.Tensor:
    """The language model's input for the unpruned prompt, built by hand: token
    embeddings with the image features written at the image placeholders."""
    core = model.model
    embeds = core.get_input_embeddings()(batch["input_ids"])
    with torch.no_grad():
        if "image_grid_thw" in batch:
            out = core.get_image_features(batch["pixel_values"], batch["image_grid_thw"], return_dict=True)
        else:
            config = model.config
            out = core.get_image_features(
                pixel_values=batch["pixel_values"],
                vision_feature_layer=config.vision_feature_layer,
                vision_feature_select_strategy=config.vision_feature_select_strategy,
                return_dict=True,
            )
    features = torch.cat(list(out.pooler_output)).to(embeds.dtype)
    embeds = embeds.clone()
    embeds[batch["input_ids"] == model.config.image_token_id] = features
    return embeds


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


def image_token_counts(model, batch, sample: int) -> list[int]:
    """Tokens of each image of prompt ``sample``, in order."""
    ids = batch["input_ids"][sample]
    if "image_grid_thw" not in batch:
        vision = model.config.vision_config
        per_image = (vision.image_size // vision.patch_size) ** 2
        return [per_image] * (int((ids == model.config.image_token_id).sum()) // per_image)
    # Images are numbered through the batch in order: find this prompt's grids.
    per_prompt = [int((row == model.config.vision_start_token_id).sum()) for row in batch["input_ids"]]
    first = sum(per_prompt[:sample])
    grids = batch["image_grid_thw"][first : first + per_prompt[sample]]
    return [t * h * w // 4 for t, h, w in grids.tolist()]


def kept_sequence_index(model, batch, last_keep, sample: int) -> torch.Tensor:
    """Sequence positions of prompt ``sample`` that survive pruning: its real text
    tokens and the kept tokens of each of its images, in order."""
    ids = batch["input_ids"][sample]
    is_image = ids == model.config.image_token_id
    image_positions = torch.nonzero(is_image).flatten()
    keep = batch["attention_mask"][sample].bool() & ~is_image
    start = 0
    for count, kept in zip(image_token_counts(model, batch, sample), last_keep[sample]):
        keep[image_positions[start + kept]] = True
        start += count
    return torch.nonzero(keep).flatten()
