"""What the served models' prompt processors add to vLLM's: per image, what the
selection may read besides the pixels, and a cache identity that covers it.

vLLM reuses an image's processed inputs, its encoder output and the KV blocks that hold
it whenever the same image comes again (its hash). A pruned image's encoder output is
its selection, so the hash must cover everything the selection depends on besides the
pixels: the image's place among the prompt's images (the seeded ``random`` draw reads
it) and, for methods that read the prompt, the image's instruction (the token ids of
the prompt's text after the image, or all of its text when the image comes last: the
Hugging Face path's rule). Both travel with the image to the model as two extra
fields, ``vtprune_ordinal`` and ``vtprune_text``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from vllm.multimodal.hasher import MultiModalHasher
from vllm.multimodal.inputs import MultiModalBatchedField, MultiModalFieldElem

from .plan import ServingPlan

ORDINAL, TEXT = "vtprune_ordinal", "vtprune_text"
_REMEMBERED = 4096  # hashes whose fields are kept until their item is processed


def instructions(prompt: list[int], image_token_id: int, images: int) -> list[list[int]]:
    """Each image's instruction token ids, from a prompt with one placeholder token per
    image (before vLLM expands them)."""
    at = [i for i, token in enumerate(prompt) if token == image_token_id]
    text = [token for token in prompt if token != image_token_id]
    if len(at) != images:  # the placeholders are expanded already, or absent: the whole text
        return [text] * images
    out = []
    for position in at:
        after = [token for token in prompt[position + 1 :] if token != image_token_id]
        out.append(after or text)
    return out


class PlanInfoMixin:
    """For a ``BaseProcessingInfo``: the model's plan (``plan_of`` its HF config, read
    once) and each image's placeholder count at the plan's budget (what vLLM's
    profiling, encoder cache and scheduler count)."""

    plan_of: Any  # families.llava_plan or families.qwen_plan, as a staticmethod
    image_token_field: str  # the config field that holds the image placeholder id

    def vtprune_plan(self) -> ServingPlan | None:
        if not hasattr(self, "_vtprune_plan"):
            self._vtprune_plan = self.plan_of(self.get_hf_config())
        return self._vtprune_plan

    def image_token_id(self) -> int:
        return int(getattr(self.get_hf_config(), self.image_token_field))

    def get_num_image_tokens(self, **kwargs: Any) -> int:
        tokens = super().get_num_image_tokens(**kwargs)
        plan = self.vtprune_plan()
        return tokens if plan is None else plan.budget(tokens)


class SelectionInputsMixin:
    """For a ``BaseMultiModalProcessor`` whose info has ``vtprune_plan()`` and
    ``image_token_id()``: per-image hashes and fields for the selection."""

    def _vtprune_extras(self) -> "OrderedDict[str, tuple[int, list[int]]]":
        # Filled by the hashing step and read by the processing step of the same call;
        # bounded, since items already cached are hashed but never processed.
        if not hasattr(self, "_vtprune_by_hash"):
            self._vtprune_by_hash: OrderedDict[str, tuple[int, list[int]]] = OrderedDict()
        return self._vtprune_by_hash

    def _get_mm_hashes(self, inputs: Any):
        hashes = super()._get_mm_hashes(inputs)
        plan: ServingPlan | None = self.info.vtprune_plan()
        if plan is None or not hashes.get("image"):
            return hashes
        images = hashes["image"]
        texts = instructions(list(inputs.prompt), self.info.image_token_id(), len(images))
        algorithm = self.info.ctx.get_mm_config().mm_hasher_algorithm
        extras, new = self._vtprune_extras(), []
        for ordinal, (base, text) in enumerate(zip(images, texts)):
            text = text if plan.reads_prompt else []
            key = MultiModalHasher.hash_kwargs(
                algorithm, vtprune_image=base, vtprune_ordinal=ordinal, vtprune_text=torch.tensor(text, dtype=torch.long)
            )
            extras[key] = (ordinal, text)
            extras.move_to_end(key)
            new.append(key)
        while len(extras) > _REMEMBERED:
            extras.popitem(last=False)
        return {**hashes, "image": new}

    def _attach(self, items: Any, hashes: list[str]) -> None:
        extras = self._vtprune_extras()
        for item, key in zip(items, hashes):
            if item is None:  # already on the engine side, with its fields
                continue
            ordinal, text = extras[key]
            item[ORDINAL] = MultiModalFieldElem(data=torch.tensor(ordinal), field=MultiModalBatchedField())
            item[TEXT] = MultiModalFieldElem(data=torch.tensor(text, dtype=torch.long), field=MultiModalBatchedField())

    def _apply_hf_processor(self, inputs: Any, timing_ctx: Any):
        result = super()._apply_hf_processor(inputs, timing_ctx)
        if self.info.vtprune_plan() is not None and "image" in result.kwargs:
            self._attach(result.kwargs["image"], result.hashes["image"])
        return result

    def _merge_mm_kwargs(self, cache, mm_hashes, mm_is_cached, mm_missing_kwargs, mm_missing_prompt_updates):
        if self.info.vtprune_plan() is not None and "image" in mm_missing_kwargs:
            missing = [h for h, cached in zip(mm_hashes["image"], mm_is_cached["image"]) if not cached]
            self._attach(mm_missing_kwargs["image"], missing)
        return super()._merge_mm_kwargs(cache, mm_hashes, mm_is_cached, mm_missing_kwargs, mm_missing_prompt_updates)
