"""The family record, registered when ``vtprune.models`` looks families up."""

from ..fake_batch import Image
from ..family import Architecture, FakeInputs, Family, PictureGeometry, TestModel, register
from . import cost, geometry, tiny
from .adapter import Mistral3Adapter

# A wide image, a tall one and a square one, in LLM tokens.
IMAGES = (Image(4, 6), Image(6, 4), Image(5, 5))

FAMILY = register(
    Family(
        adapter=Mistral3Adapter,
        test_models=(TestModel("mistral3", tiny.tiny_mistral3, IMAGES, architecture="tiny-mistral3"),),
        fake_inputs=FakeInputs(tiny.image_tokens, tiny.batch_inputs, tiny.bench_image),
        geometry=PictureGeometry(geometry.handles, geometry.token_geometry),
        vision_macs=cost.vision_macs,
        architectures=(
            Architecture("mistral-small-3.1-24b", cost.mistral_small_3_1_24b, "Mistral3ForConditionalGeneration"),
        ),
        patches_per_image=cost.patches_per_image,
    )
)

__all__ = ["FAMILY", "Mistral3Adapter"]
