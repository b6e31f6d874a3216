"""The family record, registered when ``vtprune.models`` looks families up."""

from ..fake_batch import Image
from ..family import FakeInputs, Family, PictureGeometry, TestModel, register
from . import cost, geometry, tiny
from .adapter import LlavaNextAdapter, LlavaOnevisionAdapter

# A wide image, a square one and one smaller than a tile: different tilings.
IMAGES = (Image(size=(30, 60)), Image(size=(48, 48)), Image(size=(20, 20)))

NEXT = register(
    Family(
        adapter=LlavaNextAdapter,
        test_models=(TestModel("llava_next", tiny.tiny_llava_next, IMAGES, anyres=True),),
        fake_inputs=FakeInputs(tiny.next_image_tokens, tiny.next_inputs, tiny.bench_image),
        geometry=PictureGeometry(geometry.handles_next, geometry.next_geometry),
        vision_macs=cost.vision_macs,
    )
)
ONEVISION = register(
    Family(
        adapter=LlavaOnevisionAdapter,
        test_models=(TestModel("llava_onevision", tiny.tiny_llava_onevision, IMAGES, anyres=True),),
        fake_inputs=FakeInputs(tiny.onevision_image_tokens, tiny.onevision_inputs, tiny.bench_image),
        geometry=PictureGeometry(geometry.handles_onevision, geometry.onevision_geometry),
        vision_macs=cost.vision_macs,
    )
)

__all__ = ["NEXT", "ONEVISION", "LlavaNextAdapter", "LlavaOnevisionAdapter"]
