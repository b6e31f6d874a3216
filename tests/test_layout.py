"""Image layout bookkeeping on a hand-built batch."""

from __future__ import annotations

import torch

from vtprune.runtime.layout import ROW_KEY, ImageLayout, row_end_keys


def test_images_are_numbered_through_the_batch():
    # Row 0: image A (4 tokens) at 1..4. Row 1: image B (2 tokens) at 0..1, image C (6) at 3..8.
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, 1:5] = True
    mask[1, 0:2] = True
    mask[1, 3:9] = True
    layout = ImageLayout(mask, (4, 2, 6), ((2, 2), (1, 2), (2, 3)))
    assert layout.flat_positions.tolist() == [1, 2, 3, 4, 10, 11, 13, 14, 15, 16, 17, 18]
    assert layout.sample_of_image.tolist() == [0, 1, 1]
    assert layout.ordinal_of_image.tolist() == [0, 0, 1]
    assert layout.image_positions([2]).tolist() == [[13, 14, 15, 16, 17, 18]]
    assert layout.groups() == {((2, 2), 4): [0], ((1, 2), 2): [1], ((2, 3), 6): [2]}


def test_equal_grids_form_one_group():
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[0, 2:6] = True
    mask[2, 0:4] = True
    layout = ImageLayout(mask, (4, 4), ((2, 2), (2, 2)))
    assert layout.groups() == {((2, 2), 4): [0, 1]}
    assert layout.image_positions([0, 1]).tolist() == [[2, 3, 4, 5], [12, 13, 14, 15]]
    assert layout.sample_of_image.tolist() == [0, 2]


def test_row_end_keys_name_the_unit_and_row_a_newline_closes():
    keys = row_end_keys(torch.tensor([0, 2, 1]), torch.tensor([3, 0, -1]))
    assert keys.tolist() == [3, 2 * ROW_KEY, -2]  # -2: closes no row (an untiled image)
