"""The family record, registered when ``vtprune.models`` looks families up."""

from ..fake_batch import Image
from ..family import Architecture, FakeInputs, Family, PictureGeometry, TestModel, register
from . import cost, geometry, tiny
from .adapter import Qwen3VLAdapter

# A wide image, a tall one and a square one, in LLM tokens.
IMAGES = (Image(4, 6), Image(6, 4), Image(5, 5))

FAMILY = register(
    Family(
        adapter=Qwen3VLAdapter,
        test_models=(TestModel("qwen3_vl", tiny.tiny_qwen3_vl, IMAGES),),
        fake_inputs=FakeInputs(tiny.image_tokens, tiny.batch_inputs, tiny.bench_image),
        geometry=PictureGeometry(geometry.handles, geometry.token_geometry),
        vision_macs=cost.vision_macs,
        architectures=(Architecture("qwen3-vl-8b", cost.qwen3_vl_8b, "Qwen3VLForConditionalGeneration"),),
    )
)

__all__ = ["FAMILY", "Qwen3VLAdapter"]
