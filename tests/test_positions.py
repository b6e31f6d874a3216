"""Position ids the language model receives, in both position modes."""

from __future__ import annotations

import pytest
import torch

import vtprune
from vtprune.testing import IMAGE, Image, make_batch, tiny_llava, tiny_qwen2_vl

from helpers import greedy


class Recorder:
    """Records the position ids and mask the language model gets at each call (a hook
    registered after vtprune's sees what vtprune passes on)."""

    def __init__(self, model):
        self.calls = []
        self.handle = model.model.language_model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        self.calls.append((kwargs["position_ids"].clone(), kwargs.get("attention_mask")))

    def remove(self):
        self.handle.remove()


@pytest.fixture(scope="module")
def llava():
    return tiny_llava()


@pytest.fixture(scope="module", params=["2", "2.5"])
def qwen(request):
    return tiny_qwen2_vl(version=request.param)


def test_llava_original_positions_keep_gaps_and_continue(llava):
    batch = make_batch(llava, [[3, IMAGE, 4]])  # 3 + 64 + 4 = 71 tokens
    handle = vtprune.prune(llava, "uniform", keep=16)
    recorder = Recorder(llava)
    greedy(llava, batch, tokens=3)
    recorder.remove()
    handle.remove()
    prefill = recorder.calls[0][0][0]
    kept_image = handle.last_keep[0][0] + 3
    expected = torch.cat((torch.arange(3), kept_image, torch.arange(67, 71)))
    assert prefill.tolist() == expected.tolist()
    assert [c[0].item() for c in recorder.calls[1:]] == [71, 72]


def test_llava_compact_positions_are_consecutive(llava):
    batch = make_batch(llava, [[3, IMAGE, 4]])
    handle = vtprune.prune(llava, "uniform", keep=16, positions="compact")
    recorder = Recorder(llava)
    tokens = greedy(llava, batch, tokens=3)
    recorder.remove()
    assert recorder.calls[0][0][0].tolist() == list(range(23))
    assert [c[0].item() for c in recorder.calls[1:]] == [23, 24]
    assert torch.equal(greedy(llava, batch, tokens=3, use_cache=False), tokens)
    handle.remove()


def test_qwen_original_positions_and_decoding(qwen):
    batch = make_batch(qwen, [[5, Image(4, 6), 7]])
    handle = vtprune.prune(qwen, "uniform", keep=6)
    recorder = Recorder(qwen)
    greedy(qwen, batch, tokens=3)
    recorder.remove()
    handle.remove()
    prefill = recorder.calls[0][0]  # (4, 1, L'): generate's text row, then M-RoPE
    kept = handle.last_keep[0][0].tolist()
    assert kept == [7, 9, 11, 19, 21, 23]  # rows 1 and 3, columns 1, 3, 5 of 4 x 6
    rows = [6 + k // 6 for k in kept]
    cols = [6 + k % 6 for k in kept]
    text_before, text_after = list(range(6)), list(range(12, 20))
    assert prefill[1, 0].tolist() == text_before + [6] * 6 + text_after
    assert prefill[2, 0].tolist() == text_before + rows + text_after
    assert prefill[3, 0].tolist() == text_before + cols + text_after
    # Decoding continues where the unpruned prompt ends: M-RoPE id 20, text id 38.
    assert [c[0][1:, 0, 0].tolist() for c in recorder.calls[1:]] == [[20] * 3, [21] * 3]
    assert [int(c[0][0, 0, 0]) for c in recorder.calls[1:]] == [38, 39]


def test_qwen_compact_positions_shrink_the_image(qwen):
    batch = make_batch(qwen, [[5, Image(4, 6), 7]])
    handle = vtprune.prune(qwen, "uniform", keep=6, positions="compact")
    recorder = Recorder(qwen)
    tokens = greedy(qwen, batch, tokens=3)
    recorder.remove()
    prefill = recorder.calls[0][0]
    # Kept rows {1, 3} -> 0, 1; kept columns {1, 3, 5} -> 0, 1, 2: the image now spans
    # max(2, 3) = 3 ids instead of 6, so the text after it moves back by 3.
    text_before, text_after = list(range(6)), list(range(9, 17))
    assert prefill[1, 0].tolist() == text_before + [6] * 6 + text_after
    assert prefill[2, 0].tolist() == text_before + [6, 6, 6, 7, 7, 7] + text_after
    assert prefill[3, 0].tolist() == text_before + [6, 7, 8, 6, 7, 8] + text_after
    assert prefill[0, 0].tolist() == list(range(20))  # generate's 1-D text row, renumbered
    assert [c[0][1:, 0, 0].tolist() for c in recorder.calls[1:]] == [[17] * 3, [18] * 3]
    assert [int(c[0][0, 0, 0]) for c in recorder.calls[1:]] == [20, 21]
    assert torch.equal(greedy(qwen, batch, tokens=3, use_cache=False), tokens)
    handle.remove()


@pytest.mark.parametrize("build,images", [(tiny_llava, (IMAGE, IMAGE)), (tiny_qwen2_vl, (Image(4, 6), Image(6, 2)))])
def test_compact_batch_equals_singles(build, images):
    model = build()
    prompts = [[2, images[0], 5], [6, images[1], 1, images[0], 3], [4]]
    vtprune.prune(model, "random", keep=0.3, positions="compact")
    batched = greedy(model, make_batch(model, prompts), tokens=6)
    for i, prompt in enumerate(prompts):
        assert torch.equal(greedy(model, make_batch(model, [prompt], seeds=[i]), tokens=6)[0], batched[i])
    assert torch.equal(greedy(model, make_batch(model, prompts), tokens=6, use_cache=False), batched)
