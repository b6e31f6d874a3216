"""Token geometry against the real image processors: every token's patch, as the
processor built it, holds the pixels of the box the geometry gives it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import (
    CLIPImageProcessor,
    LlavaImageProcessor,
    LlavaNextConfig,
    LlavaNextImageProcessor,
    Qwen2VLImageProcessor,
)
from transformers.models.llava_next.modeling_llava_next import LlavaNextModel

from vtprune.viz import TokenGeometry, geometry_for, grid_geometry

from .coordinates import RAW, check_patch, coordinate_image


def patches_of(image: np.ndarray, patch: int) -> list[np.ndarray]:
    """A (3, H, W) processed image cut into patch x patch blocks, raster order."""
    _, height, width = image.shape
    return [
        image[:, r : r + patch, c : c + patch] for r in range(0, height, patch) for c in range(0, width, patch)
    ]


def check_single_grid(processor, size: tuple[int, int], patch: int) -> TokenGeometry:
    image = coordinate_image(*size)
    pixels = processor(image, **RAW)["pixel_values"][0]
    geometry = geometry_for(processor, image, patch_size=patch)
    blocks = patches_of(pixels, patch)
    assert geometry.num_tokens == len(blocks)
    for index, block in enumerate(blocks):
        check_patch(block, geometry.box(index), f"{size} token {index}")
    return geometry


@pytest.mark.parametrize("size", [(500, 375), (500, 377), (300, 640), (336, 336), (150, 100)])
def test_llava_clip_processor_resize_and_center_crop(size):
    processor = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    geometry = check_single_grid(processor, size, patch=14)
    assert geometry.kind == "llava" and geometry.sections[0].rows == 24
    # Landscape: the crop keeps the middle; the side strips feed no token.
    if size == (500, 375):
        covered = geometry.coverage()
        columns = np.nonzero(covered.any(axis=0))[0]
        assert covered[:, 0].sum() == 0 and covered.all(axis=0).sum() == columns.size
        # Resized to 448 x 336 and cropped 56 px each side: x in [56, 392) * 500/448 = [62.5, 437.5).
        assert geometry.sections[0].x_spans[0][0] == 62.5 and geometry.sections[0].x_spans[-1][1] == 437.5
        assert (columns[0], columns[-1]) == (62, 436)  # by pixel centres


def test_llava_pad_to_square_then_resize():
    processor = LlavaImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, do_pad=True
    )
    geometry = check_single_grid(processor, (90, 40), patch=4)
    # 40 rows centred on a 90 x 90 square: the top and bottom token rows see only padding.
    spans = geometry.sections[0].y_spans
    assert spans[0][0] == spans[0][1] == 0.0 and spans[-1][0] == spans[-1][1] == 40.0
    assert geometry.sections[0].x_spans[0] == (0.0, 90 / 8)


def test_llava_center_crop_larger_than_the_resized_image_pads():
    # Shortest edge 32 but a 40-pixel crop: the processor pads 4 pixels on each side.
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 40, "width": 40})
    geometry = check_single_grid(processor, (37, 64), patch=4)
    assert geometry.sections[0].x_spans[0] == (0.0, 0.0)


@pytest.mark.parametrize("size", [(500, 375), (260, 700), (336, 336), (1000, 300)])
def test_llava_next_base_grid_then_unpadded_tiles(size):
    processor = LlavaNextImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    processor.image_grid_pinpoints = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    image = coordinate_image(*size)
    out = processor(image, **RAW)
    pixels = out["pixel_values"][0]  # (1 + tiles, 3, 336, 336): base image, then tiles
    geometry = geometry_for(processor, image, patch_size=14)

    # Which (view, patch) each visual token is, by the model's own packing code run on ids.
    config = LlavaNextConfig(
        vision_config=dict(image_size=336, patch_size=14), image_grid_pinpoints=processor.image_grid_pinpoints
    )
    views, per_view = pixels.shape[0], 24 * 24
    ids = torch.arange(views * per_view, dtype=torch.float64).view(views, per_view, 1)
    model = type("Packer", (), {"config": config})()
    packed, _ = LlavaNextModel.pack_image_features(model, [ids], torch.tensor([size[::-1]]), "default", None)
    packed = packed[0].view(-1).long().tolist()  # one image
    assert geometry.num_tokens == len(packed)
    assert geometry.sections[0].size == per_view and geometry.sections[1].start == per_view

    for index, view_patch in enumerate(packed):
        view, patch = divmod(view_patch, per_view)
        row, col = divmod(patch, 24)
        block = pixels[view][:, row * 14 : (row + 1) * 14, col * 14 : (col + 1) * 14]
        check_patch(block, geometry.box(index), f"{size} token {index} (view {view})")


def test_llava_next_newline_count_matches_the_processor():
    # The processor's own token count is base + unpadded grid + one newline per row.
    from transformers import LlavaNextProcessor

    image_processor = LlavaNextImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    image_processor.image_grid_pinpoints = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    processor = LlavaNextProcessor.__new__(LlavaNextProcessor)
    processor.image_processor, processor.patch_size, processor.num_additional_image_tokens = image_processor, 14, 1
    for size in [(500, 375), (260, 700), (1000, 300)]:
        geometry = geometry_for(processor, size)
        high = geometry.sections[1]
        expected = processor._get_number_of_features(size[1], size[0], 336, 336) - 1  # minus the CLS token
        assert geometry.num_tokens + high.rows == expected


@pytest.mark.parametrize("size", [(500, 375), (90, 200), (40, 30), (1500, 1100)])
def test_qwen2_vl_smart_resize_grid(size):
    processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=28 * 28 * 256)
    image = coordinate_image(*size)
    out = processor(image, **RAW)
    _, grid_h, grid_w = out["image_grid_thw"][0].tolist()
    geometry = geometry_for(processor, image)
    section = geometry.sections[0]
    assert (section.rows, section.cols) == (grid_h // 2, grid_w // 2)
    # patchify's order: per LLM token, its 2 x 2 patches, each (channel, time, 14, 14).
    patches = out["pixel_values"].reshape(section.size, 2, 2, 3, 2, 14, 14)[:, :, :, :, 0]
    blocks = patches.transpose(0, 3, 1, 4, 2, 5).reshape(section.size, 3, 28, 28)
    for index, block in enumerate(blocks):
        check_patch(block, geometry.box(index), f"{size} token {index}")


def test_geometry_from_a_plain_grid_and_pixel_boxes():
    geometry = grid_geometry((10, 6), rows=3, cols=4)
    assert geometry.num_tokens == 12
    assert geometry.box(5) == (2.5, 2.0, 5.0, 4.0)
    # Pixel centres decide: pixel 2 (centre 2.5) belongs to column 1, not column 0.
    assert geometry.pixel_box(0) == (0, 0, 2, 2) and geometry.pixel_box(5) == (2, 2, 5, 4)
    assert geometry.tokens_at(9.9, 5.9) == [11]
    assert geometry.coverage().all()
    small = geometry.resized(5, 3)
    assert small.box(5) == (1.25, 1.0, 2.5, 2.0)


def test_patch_size_is_required_for_llava_style_processors():
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    with pytest.raises(ValueError, match="patch_size"):
        geometry_for(processor, (64, 64))


@pytest.mark.parametrize("size", [(30, 60), (48, 48), (70, 20), (20, 20)])
def test_anyres_geometry_matches_the_models_grids(size):
    """LLaVA-NeXT and OneVision (with its shrinking): the geometry's grids are the ones
    the model packs (the adapter reads them from the model's own pack_image_features)."""
    import vtprune
    from transformers import LlavaNextImageProcessor, LlavaOnevisionImageProcessor
    from vtprune.testing import ANYRES_PINPOINTS, tiny_llava_next, tiny_llava_onevision

    for build, image_processor, aspect in [
        (tiny_llava_next, LlavaNextImageProcessor(size={"shortest_edge": 24}, crop_size={"height": 24, "width": 24},
                                                  image_grid_pinpoints=ANYRES_PINPOINTS), None),
        (tiny_llava_onevision, LlavaOnevisionImageProcessor(size={"height": 24, "width": 24},
                                                            image_grid_pinpoints=ANYRES_PINPOINTS), "anyres_max_2"),
    ]:
        processor = SimpleNamespace(image_processor=image_processor, patch_size=4)
        if aspect:
            processor.vision_aspect_ratio = aspect
        geometry = geometry_for(processor, (size[1], size[0]))
        _, rows, cols = vtprune.models.adapter_for(build()).image_grids(size, True)
        base, high = geometry.sections
        assert (base.rows, base.cols, high.rows, high.cols) == (6, 6, rows, cols)
