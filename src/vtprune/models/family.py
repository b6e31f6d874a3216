"""What vtprune knows of a model family, in one record per family.

Each family package (``models/<family>/``) builds its :class:`Family` from its own
modules (adapter, tiny models and fake inputs, picture geometry, costs) and registers
it; everything that differs by family (the adapter lookup, ``vtprune.testing``, the
token geometry of pictures, the bench's MACs and architectures, the test family list)
reads this registry, so a new family is a new package.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from torch import nn

from .base import ModelAdapter

if TYPE_CHECKING:
    from ..viz.geometry import TokenGeometry
    from .fake_batch import Image, ImageTokens


@dataclass(frozen=True)
class TestModel:
    """A tiny random-weight model of the family, as the tests build it.

    ``build(seed=0, dtype=float32, *, layers=..., attn="sdpa")`` makes the model;
    ``images`` are prompt images of different shapes where the family allows it;
    ``anyres``: its images are made of several grids that share the image's budget
    (LLaVA-NeXT's base and high-resolution grids, Idefics3's sub-images); ``tiles``: its
    images are several tiles of one fixed grid each (InternVL), every tile a unit sharing
    its image's budget; ``architecture`` names it among the bench's architectures."""

    __test__ = False  # a record, not a pytest test class

    name: str
    build: Callable[..., nn.Module]
    images: tuple["Image", ...]
    anyres: bool = False
    tiles: bool = False
    architecture: str | None = None

    def image(self, i: int = 0) -> "Image":
        return self.images[i % len(self.images)]


@dataclass(frozen=True)
class FakeInputs:
    """How a fake prompt's images become model inputs (:func:`~.fake_batch.make_batch`).

    ``image(model, part, generator, images_in_prompt)``: one image's placeholder ids,
    token types and random pixels; ``inputs(model, images, images_per_prompt,
    token_types)``: the batch entries of all the batch's images; ``bench_image(model,
    grid)``: the image of a synthetic benchmark prompt, of about ``grid`` (rows, cols)
    tokens where the family's images vary in size."""

    image: Callable[[nn.Module, "Image", torch.Generator, int], "ImageTokens"]
    inputs: Callable[[nn.Module, Sequence["ImageTokens"], Sequence[int], torch.Tensor], dict[str, torch.Tensor]]
    bench_image: Callable[[nn.Module, tuple[int, int]], "Image"]


@dataclass(frozen=True)
class PictureGeometry:
    """Where each token of a picture comes from, given the processor that made it.

    ``handles(processor, image_processor)``: whether this family's processors made it;
    ``tokens(processor, image_processor, width, height, patch_size)``: the geometry.
    A ``generic`` geometry (plain resize and crop) is tried after the specific ones."""

    handles: Callable[[Any, Any], bool]
    tokens: Callable[[Any, Any, int, int, "int | None"], "TokenGeometry"]
    generic: bool = False


@dataclass(frozen=True)
class Architecture:
    """A real-scale architecture for speed measurements: ``config(layers)`` builds its
    published transformers config (``layers`` truncates the language model), and
    ``model_class`` is the transformers class to instantiate it with."""

    name: str
    config: Callable[["int | None"], Any]
    model_class: str


@dataclass(frozen=True)
class Family:
    """Everything vtprune knows of one model family."""

    adapter: type[ModelAdapter]
    test_models: tuple[TestModel, ...]
    fake_inputs: FakeInputs
    geometry: PictureGeometry
    vision_macs: Callable[[Any, list[int]], int]  # (transformers config, patches per image)
    architectures: tuple[Architecture, ...] = ()
    # (model, batch) -> vision patches of each image, for families whose images vary in
    # size without a patch grid input (None: bench.flops.patches_per_image's default,
    # image_grid_thw, else one fixed grid per pixel_values row)
    patches_per_image: Callable[[nn.Module, dict], list[int]] | None = None

    @property
    def name(self) -> str:
        return self.adapter.family

    @property
    def model_classes(self) -> tuple[str, ...]:
        return self.adapter.model_classes


_REGISTRY: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add ``family`` to the registry (once per name)."""
    if family.name in _REGISTRY and _REGISTRY[family.name] is not family:
        raise ValueError(f"model family {family.name!r} is already registered")
    _REGISTRY[family.name] = family
    return family


def registered() -> tuple[Family, ...]:
    """The registered families, in registration order (every family package's)."""
    importlib.import_module(f"{__package__}.lookup")  # registers them all, once
    return tuple(_REGISTRY.values())


def family_of(model: object) -> Family:
    """The family of ``model`` (an instance of one of its model classes); ``TypeError``
    otherwise."""
    if isinstance(model, nn.Module):
        for family in registered():
            if family.adapter.handles(model):
                return family
    names = ", ".join(family.name for family in _REGISTRY.values())
    raise TypeError(f"model of type {type(model).__name__} is of none of the supported families ({names})")
