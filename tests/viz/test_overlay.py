"""Overlays of known keep sets: kept patches clear, pruned dimmed, unseen pixels dimmed
further, merge groups outlined, at patch positions worked out by hand for each grid kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessor, LlavaNextImageProcessor, Qwen2VLImageProcessor

from vtprune.viz import geometry_for, overlay, overlay_stages
from vtprune.viz.draw import CAPTION_HEIGHT, HATCH_PERIOD, MARGIN, group_colour

GREY = 200
KEPT, PRUNED, UNSEEN = (GREY,) * 3, (60,) * 3, (30,) * 3  # 200, 200 * 0.3, 200 * 0.15


def grey_image(width: int = 500, height: int = 375) -> Image.Image:
    return Image.new("RGB", (width, height), (GREY, GREY, GREY))


def test_plain_grid_tuple():
    picture = overlay(grey_image(80, 40), torch.tensor([0, 7]), (2, 4))  # cells of 20 x 20
    assert picture.size == (80, 40)
    assert picture.getpixel((10, 10)) == KEPT  # token 0
    assert picture.getpixel((70, 30)) == KEPT  # token 7
    assert picture.getpixel((30, 10)) == PRUNED  # token 1
    assert picture.getpixel((10, 30)) == PRUNED  # token 4


def test_llava_grid_with_center_crop():
    # 500 x 375 -> resized 448 x 336, cropped to x in [56, 392): original x in [62.5, 437.5),
    # each of the 24 x 24 tokens 15.625 x 15.625 original pixels.
    processor = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    processor.patch_size = 14  # as LlavaProcessor carries it
    picture = overlay(grey_image(), [0, 575], processor)
    assert picture.getpixel((70, 8)) == KEPT  # token (0, 0): x 62.5..78.1, y 0..15.6
    assert picture.getpixel((430, 370)) == KEPT  # token (23, 23): x 421.9..437.5, y 359.4..375
    assert picture.getpixel((85, 8)) == PRUNED  # token (0, 1)
    assert picture.getpixel((430, 350)) == PRUNED  # token (22, 23)
    # Left of the crop: seen by no token (between the hatch stripes, and on one).
    assert picture.getpixel((20, 8)) == UNSEEN and (20 + 8) % HATCH_PERIOD >= 2
    assert picture.getpixel((20, 4)) == (110,) * 3 and (20 + 4) % HATCH_PERIOD < 2


def test_qwen_dynamic_grid():
    # smart_resize(375, 500, 28) = 364 x 504: a 13 x 18 token grid, each token
    # 500/504 * 28 = 27.78 wide and 375/364 * 28 = 28.85 tall.
    processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=28 * 28 * 256)
    geometry = geometry_for(processor, grey_image())
    assert (geometry.sections[0].rows, geometry.sections[0].cols) == (13, 18)
    picture = overlay(grey_image(), [0, 117, 233], geometry)
    assert picture.getpixel((10, 10)) == KEPT  # token (0, 0)
    assert picture.getpixel((263, 187)) == KEPT  # token (6, 9): x 250..277.8, y 173.1..201.9
    assert picture.getpixel((495, 370)) == KEPT  # token (12, 17)
    assert picture.getpixel((245, 187)) == PRUNED  # token (6, 8)
    assert picture.getpixel((263, 205)) == PRUNED  # token (7, 9)


def test_llava_next_base_and_high_resolution_panels():
    # 500 x 375 -> best pinpoint 672 x 672, content 672 x 504 centred (84 px padding above
    # and below): a 48 x 48 tile grid unpadded to 36 x 48, tokens 500/672 * 14 = 10.42 px.
    processor = LlavaNextImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    processor.image_grid_pinpoints = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    geometry = geometry_for(processor, grey_image(), patch_size=14)
    high = geometry.sections[1]
    assert (high.rows, high.cols, high.start) == (36, 48, 576)
    last = 576 + 36 * 48 - 1
    picture = overlay(grey_image(), [0, 576, last], geometry)
    # Two panels, each captioned, in one row with margins.
    assert picture.size == (2 * (500 + MARGIN) + MARGIN, 375 + CAPTION_HEIGHT + 2 * MARGIN)
    base = lambda x, y: picture.getpixel((MARGIN + x, MARGIN + y))  # noqa: E731
    tiles = lambda x, y: picture.getpixel((2 * MARGIN + 500 + x, MARGIN + y))  # noqa: E731
    assert base(10, 7) == KEPT  # base token (0, 0): 20.8 x 15.6 px
    assert base(30, 7) == PRUNED  # base token (0, 1)
    assert base(495, 370) == PRUNED  # base token (23, 23)
    assert tiles(5, 5) == KEPT  # high-res token (0, 0)
    assert tiles(15, 5) == PRUNED  # high-res token (0, 1)
    assert tiles(495, 370) == KEPT  # high-res token (35, 47)


def test_merge_groups_are_outlined_in_their_colour():
    # 4 x 4 cells of 20 px; tokens 1 and 2 merged into kept token 0, token 6 into kept 7.
    merge = torch.full((16,), -1)
    merge[[1, 2]] = 0
    merge[6] = 7
    picture = overlay(grey_image(80, 80), [0, 7], (4, 4), merge=merge)
    first, second = group_colour(0), group_colour(7)
    assert picture.getpixel((30, 0)) == first  # top edge of token 1
    assert picture.getpixel((59, 10)) == first  # right edge of token 2, the group's end
    assert picture.getpixel((30, 19)) == first  # bottom edge of the group
    assert picture.getpixel((19, 10)) == KEPT  # tokens 0 and 1 share a group: no line between
    assert picture.getpixel((10, 10)) == KEPT and picture.getpixel((30, 10)) == PRUNED
    assert picture.getpixel((40, 30)) == second  # left edge of token 6, the group's start
    assert picture.getpixel((50, 50)) == PRUNED  # token 10, in no group


def test_stages_one_panel_each_with_caption():
    stages = {"pre_llm": torch.arange(8), "llm:2": torch.tensor([0, 7])}
    picture = overlay_stages(grey_image(200, 100), stages, (2, 4), title="fastv")  # cells of 50 px
    assert picture.size == (2 * (200 + MARGIN) + MARGIN, 100 + CAPTION_HEIGHT + 2 * MARGIN)
    assert picture.getpixel((MARGIN + 75, MARGIN + 25)) == KEPT  # token 1 kept at the LLM input
    assert picture.getpixel((2 * MARGIN + 200 + 75, MARGIN + 25)) == PRUNED  # ...and dropped at layer 2
    caption = picture.crop((MARGIN, MARGIN + 100, MARGIN + 200, MARGIN + 100 + CAPTION_HEIGHT))
    assert min(caption.convert("L").getdata()) < 100  # the caption text is drawn


def test_a_caption_wider_than_the_picture_widens_it():
    picture = overlay(grey_image(40, 20), [0], (1, 2), caption="a caption much wider than forty pixels")
    assert picture.width > 40 and picture.height == 20 + CAPTION_HEIGHT
    assert picture.getpixel((10, 10)) == KEPT and picture.getpixel((30, 10)) == PRUNED


def test_side_resizes_the_picture_and_keeps_the_cells():
    picture = overlay(grey_image(800, 400), [0], (2, 4), side=200)
    assert picture.size == (200, 100)
    assert picture.getpixel((25, 25)) == KEPT and picture.getpixel((75, 25)) == PRUNED
    picture = overlay(grey_image(8, 4), [5], (2, 4), side=80)  # enlarged: cells of 20 px
    assert picture.size == (80, 40)
    assert picture.getpixel((30, 30)) == KEPT and picture.getpixel((10, 30)) == PRUNED


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="keep_indices"):
        overlay(grey_image(80, 40), [8], (2, 4))
    with pytest.raises(ValueError, match="merge"):
        overlay(grey_image(80, 40), [0], (2, 4), merge=[0, 1])
    with pytest.raises(TypeError, match="grid"):
        overlay(grey_image(80, 40), [0], "2x4")


def test_the_key_shows_the_original_the_prompt_and_a_legend():
    from vtprune.viz import legend, with_key
    from vtprune.viz.draw import LEGEND, SWATCH

    assert [kind for kind, _ in LEGEND] == ["kept", "pruned", "unseen", "merged"]
    full, plain = legend(), legend(merged=False)
    assert full.height > plain.height  # one line per entry; no merge outline line without merging
    picture = Image.new("RGB", (100, 50), (10, 20, 30))
    original = Image.new("RGB", (40, 30), (200, 100, 50))
    keyed = with_key(picture, prompt="what colour is the square?", original=original)
    assert keyed.height > picture.height + original.height and keyed.width >= picture.width
    assert keyed.crop((0, 0, 100, 50)).tobytes() == picture.tobytes()  # the picture stays on top
    pixels = np.asarray(keyed)[picture.height:]
    assert ((pixels == (200, 100, 50)).all(-1)).sum() == 40 * 30  # the original, whole
    with_prompt, without = with_key(picture, prompt="q"), with_key(picture)
    assert with_prompt.height > without.height
    # The swatches are drawn the way the panels are: kept bright, pruned and unseen darker.
    swatches = np.asarray(full)[4 : 4 + SWATCH[1], 4 : 4 + SWATCH[0]].astype(float)
    assert swatches.mean() > np.asarray(full)[4 + SWATCH[1] + 6 : 4 + 2 * SWATCH[1] + 6, 4 : 4 + SWATCH[0]].mean()
