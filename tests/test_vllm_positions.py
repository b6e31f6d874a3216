"""Position ids of served prompts (vtprune.vllm.positions): pure torch, no vLLM needed."""

from __future__ import annotations

import torch

from vtprune.vllm.positions import CHANNELS, decode, encode, place, provisional


def test_provisional_ids_put_placeholders_at_the_image_start_and_resume_after_its_span():
    # 3 text, image of 4 placeholders spanning 10 ids, 2 text, image of 2 spanning 2, 1 text
    ids, delta = provisional(12, [(3, 4, 10), (9, 2, 2)])
    expected = torch.tensor([0, 1, 2, 3, 3, 3, 3, 13, 14, 15, 15, 17])
    assert torch.equal(ids, expected.expand(3, 12))
    assert delta == 18 - 12  # the next decoded token takes id 18


def test_provisional_ids_of_text_only_are_a_range():
    ids, delta = provisional(5, [])
    assert torch.equal(ids[1], torch.arange(5)) and delta == 0


def test_offsets_survive_the_channels_in_half_precision():
    offsets = torch.tensor([[0, 1, 255, 256, 4095, 65535]] * 3)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        channels = encode(offsets, 65535, dtype)
        assert channels.shape == (6, CHANNELS) and channels.dtype == dtype
        assert torch.equal(decode(channels), offsets.T)


def test_place_moves_only_the_image_rows_of_the_step():
    positions = torch.tensor([[5, 6, 6, 6, 9, 10, 0, 0]]).expand(3, 8).clone()  # 2 padded slots
    rows = torch.tensor([False, True, True, True, False, False])
    offsets = torch.tensor([[0, 0, 0], [0, 1, 2], [0, 2, 1]])
    moved = place(positions, rows, offsets)
    assert moved[0].tolist() == [5, 6, 6, 6, 9, 10, 0, 0]
    assert moved[1].tolist() == [5, 6, 7, 8, 9, 10, 0, 0]
    assert moved[2].tolist() == [5, 6, 8, 7, 9, 10, 0, 0]
    assert positions[1].tolist() == [5, 6, 6, 6, 9, 10, 0, 0]  # not in place


def test_an_item_with_known_ids_keeps_them():
    video = torch.tensor([[0, 0, 2, 2], [0, 1, 0, 1], [0, 0, 0, 0]])  # 2 frames of 2x1
    ids, delta = provisional(7, [(1, 4, 3, video), (5, 1, 4)])
    assert ids[:, 0].tolist() == [0, 0, 0]
    assert ids[:, 1:5].tolist() == (video + 1).tolist()
    assert ids[:, 5].tolist() == [4, 4, 4]  # after the video's 3 ids
    assert ids[:, 6].tolist() == [8, 8, 8] and delta == 9 - 7
