"""A CLIP text tower, for text-image relevance in the space the vision tower was trained in.

LLaVA-1.5's vision tower is CLIP ViT-L/14-336 without its projection head. Scoring a
patch against the prompt the CLIP way needs the matching text encoder (with its
projection), the vision side's projection head, and the prompt as text: the language
model's tokens are decoded with the language model's tokenizer and re-tokenised with
CLIP's. Everything is loaded with the real ``from_pretrained`` code path, once, when
the method is applied.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from ..config import PruneConfig
    from ..registry import Stage
    from .adapter_protocol import FamilyAdapter

# The signals a CLIP text tower serves: required by one, used when given by the other.
_TEXT_TOWER_SIGNALS = frozenset({"text_relevance", "clip_relevance"})


def provide_text_tower(adapter: "FamilyAdapter", config: "PruneConfig", stages: list["Stage"]) -> "TextTower | None":
    """The CLIP text tower a config names, for stages that score text relevance; loaded
    once, when the method is applied, with clear errors before the model is changed."""
    if not any(_TEXT_TOWER_SIGNALS & stage.needs for stage in stages):
        return None
    path = getattr(config, "text_tower", None)
    if path is None:
        warnings.warn(
            f"{config.method}: no text_tower given, so text relevance falls back to the language model's "
            "input embeddings (cosine of each visual token with the mean embedding of the prompt). Pass "
            "text_tower=<CLIP checkpoint matching the vision tower> for relevance in CLIP space.",
            stacklevel=4,
        )
        return None
    if not adapter.clip_text_counterpart:
        raise ValueError(
            f"text_tower: relevance in CLIP space is available for LLaVA-1.5 (family 'llava'); the "
            f"{adapter.family} adapter computes text relevance from the language model's input embeddings, "
            "leave text_tower unset"
        )
    model = adapter.model
    source = getattr(model, "name_or_path", "") or getattr(adapter.core.config, "_name_or_path", "")
    if not source:
        raise ValueError(
            "text_tower: the prompt is decoded with the language model's tokenizer, found through the "
            "model's name_or_path; load the model with from_pretrained (or set model.config._name_or_path)"
        )
    parameter = next(model.parameters())
    try:
        return TextTower.load(path, source, parameter.device, parameter.dtype)
    except OSError as error:
        raise ValueError(f"text_tower={path!r} (with the tokenizer of {source!r}) could not be loaded: {error}") from error


class TextTower:
    """CLIP text encoder, CLIP visual projection and the two tokenizers."""

    def __init__(self, text_model: nn.Module, clip_tokenizer, visual_projection: nn.Module, llm_tokenizer) -> None:
        self.text_model = text_model
        self.clip_tokenizer = clip_tokenizer
        self.visual_projection = visual_projection
        self.llm_tokenizer = llm_tokenizer

    @classmethod
    def load(cls, path: str, llm_tokenizer: str, device: torch.device, dtype: torch.dtype) -> "TextTower":
        """Load from a CLIP checkpoint (``CLIPModel`` or text model with projection plus
        ``visual_projection.weight``) and the language model's tokenizer."""
        from transformers import AutoTokenizer, CLIPTextModelWithProjection

        text_model = CLIPTextModelWithProjection.from_pretrained(path).to(device=device, dtype=dtype).eval()
        clip_tokenizer = AutoTokenizer.from_pretrained(path)
        weight = _visual_projection_weight(path).to(device=device, dtype=dtype)
        projection = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device=device, dtype=dtype)
        with torch.no_grad():
            projection.weight.copy_(weight)
        return cls(text_model, clip_tokenizer, projection, AutoTokenizer.from_pretrained(llm_tokenizer))

    @torch.no_grad()
    def text_embeddings(self, token_ids: list[list[int]]) -> torch.Tensor:
        """(P, E) unit-norm CLIP embeddings of prompts given as language-model token ids."""
        texts = self.llm_tokenizer.batch_decode(token_ids, skip_special_tokens=True)
        limit = getattr(self.text_model.config, "max_position_embeddings", 77)
        batch = self.clip_tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        device = self.visual_projection.weight.device
        out = self.text_model(**{k: v.to(device) for k, v in batch.items()})
        return nn.functional.normalize(out.text_embeds.float(), dim=-1)

    @torch.no_grad()
    def image_embeddings(self, patch_features: torch.Tensor) -> torch.Tensor:
        """(..., E) unit-norm projections of vision features (post layer norm applied)."""
        projected = self.visual_projection(patch_features.to(self.visual_projection.weight.dtype))
        return nn.functional.normalize(projected.float(), dim=-1)


def _visual_projection_weight(path: str) -> torch.Tensor:
    """``visual_projection.weight`` of a CLIP checkpoint, read without loading the
    vision encoder when the checkpoint is safetensors (sharded or not)."""
    from safetensors import safe_open
    from transformers.utils import cached_file

    key = "visual_projection.weight"
    index = cached_file(path, "model.safetensors.index.json", _raise_exceptions_for_missing_entries=False)
    if index is not None:
        shard = json.loads(Path(index).read_text())["weight_map"].get(key)
        files = [cached_file(path, shard)] if shard else []
    else:
        single = cached_file(path, "model.safetensors", _raise_exceptions_for_missing_entries=False)
        files = [single] if single else []
    for file in files:
        with safe_open(file, framework="pt") as handle:
            if key in handle.keys():
                return handle.get_tensor(key)
    # Other formats: load the vision side once and keep only its projection.
    from transformers import CLIPVisionModelWithProjection

    return CLIPVisionModelWithProjection.from_pretrained(path).visual_projection.weight.detach()
