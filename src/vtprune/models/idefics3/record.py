"""The family records, registered when ``vtprune.models`` looks families up."""

from ..fake_batch import Image
from ..family import Architecture, FakeInputs, Family, PictureGeometry, TestModel, register
from . import cost, geometry, tiny
from .adapter import Idefics3Adapter, SmolVLMAdapter

# An image of 1 x 2 sub-images, one of 2 x 2 and one not split: 3, 5 and 1 units.
IMAGES = (Image(1, 2), Image(2, 2), Image())
FAKE_INPUTS = FakeInputs(tiny.image_tokens, tiny.batch_inputs, tiny.bench_image)

IDEFICS3 = register(
    Family(
        adapter=Idefics3Adapter,
        test_models=(TestModel("idefics3", tiny.tiny_idefics3, IMAGES, anyres=True),),
        fake_inputs=FAKE_INPUTS,
        geometry=PictureGeometry(geometry.handles_idefics3, geometry.token_geometry),
        vision_macs=cost.vision_macs,
        patches_per_image=cost.patches_per_image,
        architectures=(Architecture("smolvlm-2b", cost.smolvlm_2b, "Idefics3ForConditionalGeneration"),),
    )
)
SMOLVLM = register(
    Family(
        adapter=SmolVLMAdapter,
        test_models=(TestModel("smolvlm", tiny.tiny_smolvlm, IMAGES, anyres=True),),
        fake_inputs=FAKE_INPUTS,
        geometry=PictureGeometry(geometry.handles_smolvlm, geometry.token_geometry),
        vision_macs=cost.vision_macs,
        patches_per_image=cost.patches_per_image,
    )
)

__all__ = ["IDEFICS3", "SMOLVLM", "Idefics3Adapter", "SmolVLMAdapter"]
