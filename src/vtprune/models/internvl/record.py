"""The family record, registered when ``vtprune.models`` looks families up."""

from ..fake_batch import Image
from ..family import Architecture, FakeInputs, Family, PictureGeometry, TestModel, register
from . import cost, geometry, tiny
from .adapter import InternVLAdapter

# On the tiny models' 48 px tiles: a wide image (2 tiles + thumbnail), one smaller than a
# tile (1 tile, no thumbnail) and a tall one (3 tiles + thumbnail).
IMAGES = (Image(size=(48, 96)), Image(size=(36, 36)), Image(size=(135, 45)))

FAMILY = register(
    Family(
        adapter=InternVLAdapter,
        test_models=(TestModel("internvl", tiny.tiny_internvl, IMAGES, tiles=True),),
        fake_inputs=FakeInputs(tiny.image_tokens, tiny.batch_inputs, tiny.bench_image),
        geometry=PictureGeometry(geometry.handles, geometry.token_geometry),
        vision_macs=cost.vision_macs,
        architectures=(Architecture("internvl3-8b", cost.internvl3_8b, "InternVLForConditionalGeneration"),),
    )
)

__all__ = ["FAMILY", "InternVLAdapter"]
