"""The family record, registered when ``vtprune.models`` looks families up."""

from ..fake_batch import IMAGE
from ..family import Architecture, FakeInputs, Family, PictureGeometry, TestModel, register
from . import cost, geometry, tiny
from .adapter import Gemma3Adapter

FAMILY = register(
    Family(
        adapter=Gemma3Adapter,
        test_models=(TestModel("gemma3", tiny.tiny_gemma3, (IMAGE,), architecture="tiny-gemma3"),),
        fake_inputs=FakeInputs(tiny.image_tokens, tiny.batch_inputs, tiny.bench_image),
        geometry=PictureGeometry(geometry.handles, geometry.token_geometry),
        vision_macs=cost.vision_macs,
        architectures=(Architecture("gemma-3-12b", cost.gemma_3_12b, "Gemma3ForConditionalGeneration"),),
    )
)

__all__ = ["FAMILY", "Gemma3Adapter"]
