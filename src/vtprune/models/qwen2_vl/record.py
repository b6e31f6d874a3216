"""The family record, registered when ``vtprune.models`` looks families up."""

from functools import partial

from ..fake_batch import Image
from ..family import Architecture, FakeInputs, Family, PictureGeometry, TestModel, register
from . import cost, geometry, tiny
from .adapter import Qwen2VLAdapter, attention_received

# A wide image, a tall one and a square one, in LLM tokens.
IMAGES = (Image(4, 6), Image(6, 4), Image(5, 5))

FAMILY = register(
    Family(
        adapter=Qwen2VLAdapter,
        test_models=(
            TestModel("qwen2_vl", partial(tiny.tiny_qwen2_vl, version="2"), IMAGES),
            TestModel("qwen2_5_vl", partial(tiny.tiny_qwen2_vl, version="2.5"), IMAGES, architecture="tiny-qwen2.5-vl"),
        ),
        fake_inputs=FakeInputs(tiny.image_tokens, tiny.batch_inputs, tiny.bench_image),
        geometry=PictureGeometry(geometry.handles, geometry.token_geometry),
        vision_macs=cost.vision_macs,
        architectures=(Architecture("qwen2.5-vl-7b", cost.qwen2_5_vl_7b, "Qwen2_5_VLForConditionalGeneration"),),
    )
)

__all__ = ["FAMILY", "Qwen2VLAdapter", "attention_received"]
