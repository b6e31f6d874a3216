"""The family record, registered when ``vtprune.models`` looks families up."""

from ..fake_batch import IMAGE
from ..family import Architecture, FakeInputs, Family, PictureGeometry, TestModel, register
from . import cost, geometry, tiny
from .adapter import LlavaAdapter

FAMILY = register(
    Family(
        adapter=LlavaAdapter,
        test_models=(TestModel("llava", tiny.tiny_llava, (IMAGE,), architecture="tiny-llava"),),
        fake_inputs=FakeInputs(tiny.image_tokens, tiny.batch_inputs, tiny.bench_image),
        geometry=PictureGeometry(geometry.handles, geometry.token_geometry, generic=True),
        vision_macs=cost.clip_tower_macs,
        architectures=(Architecture("llava-1.5-7b", cost.llava_1_5_7b, "LlavaForConditionalGeneration"),),
    )
)

__all__ = ["FAMILY", "LlavaAdapter"]
