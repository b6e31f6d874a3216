"""``vtprune show``: a PNG of the expected size and content from a saved tiny LLaVA, stage
panels for in-LLM methods, the bundled model by default, and clear errors."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from vtprune import preflight
from vtprune.cli import main
from vtprune.testing import tiny_llava, tiny_qwen2_vl
from vtprune.viz import geometry_for
from vtprune.viz.draw import CAPTION_HEIGHT, MARGIN
from vtprune.viz.show import build_prompt, draw, select

from .checkpoints import save_tiny_llava, tiny_llava_processor, tiny_qwen_image_processor

GREY = 200


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    return save_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


@pytest.fixture
def grey_png(tmp_path):
    path = tmp_path / "grey.png"
    Image.new("RGB", (300, 200), (GREY, GREY, GREY)).save(path)
    return path


def test_methods_by_budgets_grid(llava_dir, grey_png, tmp_path, capsys):
    out = tmp_path / "show.png"
    code = main([
        "show", str(grey_png), "--prompt", "w5 w6 w7", "--method", "uniform", "--method", "random",
        "--keep", "0.25", "8", "--model", str(llava_dir), "--out", str(out), "--panel-size", "240",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "uniform keep=0.25: 16/64" in printed and "random keep=8: 8/64" in printed

    with Image.open(out) as png:
        assert png.format == "PNG"
        png.verify()
    picture = Image.open(out).convert("RGB")
    # Panels of 240 x 160 (300 x 200 shrunk) over a caption strip; 2 methods x 2 budgets.
    cell_w, cell_h = 240 + MARGIN, 160 + CAPTION_HEIGHT + MARGIN
    grid_w, grid_h = 2 * cell_w + MARGIN, 2 * cell_h + MARGIN
    assert picture.width >= grid_w and picture.height > grid_h
    # Under the panels: the original image, untouched (grey), then the prompt and the legend.
    original = np.asarray(picture.crop((MARGIN, grid_h + MARGIN, MARGIN + 240, grid_h + MARGIN + 160)))
    assert (original == GREY).all()

    # The processor resizes 300 x 200 to 48 x 32 and crops the middle 32 x 32: original
    # x in [50, 250), shown at [40, 200). Left of it no token saw; inside, a quarter of
    # the pixels are kept (16 of 64 tokens) and the rest dimmed.
    panel = np.asarray(picture.crop((MARGIN, MARGIN, MARGIN + 240, MARGIN + 160)))[..., 0]
    assert (panel[:, :39] < 120).all()
    seen = panel[:, 41:199]
    assert set(np.unique(seen)) <= {GREY, 60}
    assert (seen == GREY).mean() == pytest.approx(0.25, abs=0.02)
    # keep=8 in the second column keeps 8 of 64.
    panel = np.asarray(picture.crop((MARGIN + cell_w, MARGIN, MARGIN + cell_w + 240, MARGIN + 160)))[..., 0]
    assert (panel[:, 41:199] == GREY).mean() == pytest.approx(8 / 64, abs=0.02)


def test_stages_of_an_in_llm_method(llava_dir, grey_png, tmp_path, capsys):
    out = tmp_path / "stages.png"
    code = main([
        "show", str(grey_png), "--prompt", "w5 w6", "--method", "fastv", "--keep", "16",
        "--model", str(llava_dir), "--out", str(out), "--panel-size", "240", "--stages",
    ])
    assert code == 0
    assert "stages: pre_llm 64, llm:2 16" in capsys.readouterr().out
    picture = Image.open(out).convert("RGB")
    # One row: the LLM input (all 64 kept), then after layer 2 (16 kept), inside the grid's margins.
    row_w, row_h = 2 * (240 + MARGIN) + MARGIN, 160 + CAPTION_HEIGHT + 2 * MARGIN
    assert picture.width >= row_w + 2 * MARGIN and picture.height > row_h + 2 * MARGIN  # the key under it
    first = np.asarray(picture)[2 * MARGIN : 2 * MARGIN + 160, 2 * MARGIN + 41 : 2 * MARGIN + 199, 0]
    second_left = 3 * MARGIN + 240
    second = np.asarray(picture)[2 * MARGIN : 2 * MARGIN + 160, second_left + 41 : second_left + 199, 0]
    assert (first == GREY).all()
    assert (second == GREY).mean() == pytest.approx(16 / 64, abs=0.02)


def test_merging_method_outlines_its_groups(llava_dir, grey_png, tmp_path):
    out = tmp_path / "merge.png"
    code = main([
        "show", str(grey_png), "--prompt", "w5", "--method", "visionzip", "--keep", "16",
        "--model", str(llava_dir), "--out", str(out), "--panel-size", "240",
    ])
    assert code == 0
    panel = np.asarray(Image.open(out).convert("RGB"))[MARGIN : MARGIN + 160, MARGIN + 41 : MARGIN + 199]
    grey = (panel[..., 0] == panel[..., 1]) & (panel[..., 1] == panel[..., 2])
    assert 0.02 < (~grey).mean() < 0.6  # coloured group outlines, on a grey picture


def test_default_model_is_the_proving_ground(grey_png, tmp_path, monkeypatch):
    calls = []

    def load(device, dtype):
        calls.append((device, dtype))
        model = tiny_llava()
        return model, tiny_llava_processor(model)

    monkeypatch.setitem(sys.modules, "vtprune.proving_ground", types.SimpleNamespace(load=load))
    monkeypatch.setattr(preflight, "proving_ground_config", lambda path=None: tiny_llava().config)
    out = tmp_path / "default.png"
    code = main(["show", str(grey_png), "--prompt", "w5", "--method", "uniform", "--out", str(out), "--device", "cpu"])
    assert code == 0
    assert calls == [(torch.device("cpu"), torch.float32)]
    picture = Image.open(out)  # 300 x 200 at 448 px, over the key
    assert picture.width >= 448 + 2 * MARGIN and picture.height > 299 + CAPTION_HEIGHT + 2 * MARGIN


def test_errors_are_reported_before_loading(grey_png, tmp_path, capsys):
    missing = tmp_path / "no-model"
    assert main(["show", str(grey_png), "--prompt", "w5", "--method", "nosuch", "--model", str(missing)]) == 2
    assert "method must be one of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["show", str(grey_png), "--prompt", "w5", "--method", "uniform", "--keep", "1.5", "--model", str(missing)])
    assert "argument --keep: must be a token count" in capsys.readouterr().err
    assert main(["show", str(tmp_path / "none.png"), "--prompt", "w5", "--method", "uniform"]) == 2
    assert "could not be read" in capsys.readouterr().err
    assert main(["show", str(grey_png), "--prompt", "w5", "--method", "uniform", "--model", str(missing)]) == 2
    assert "could not be loaded" in capsys.readouterr().err


def test_prompt_uses_the_chat_template_if_the_processor_has_one():
    processor = tiny_llava_processor(tiny_llava())
    assert build_prompt(processor, "w5 w6") == "USER: <image>\nw5 w6 ASSISTANT:"
    processor.chat_template = (
        "{% for m in messages %}[{{ m['role'] }}]{% for p in m['content'] %}"
        "{% if p['type'] == 'image' %}<image>{% else %}{{ p['text'] }}{% endif %}{% endfor %}{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    assert build_prompt(processor, "w5 w6") == "[user]<image>w5 w6[assistant]"


def test_qwen_selection_drawn_on_its_dynamic_grid():
    # The Qwen2-VL processor's text half needs torchvision here, so the prompt is built by
    # hand around the image processor's output, as the processor would.
    model = tiny_qwen2_vl()
    image_processor = tiny_qwen_image_processor()
    image = Image.new("RGB", (90, 60), (GREY, GREY, GREY))
    pixels = image_processor(image, return_tensors="pt")
    tokens = int(pixels["image_grid_thw"].prod()) // 4
    config = model.config
    ids = [5, 6, config.vision_start_token_id] + [config.image_token_id] * tokens + [config.vision_end_token_id, 7]
    types_ = [0, 0, 0] + [1] * tokens + [0, 0]
    inputs = dict(
        input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        mm_token_type_ids=torch.tensor([types_]), **pixels,
    )
    selection = select(model, inputs, "uniform", 0.25)
    geometry = geometry_for(image_processor, image)
    # smart_resize(60, 90, 8): 64 x 88 is over max_pixels (64 tokens), so 48 x 72: 6 x 9 tokens.
    assert (geometry.sections[0].rows, geometry.sections[0].cols) == (6, 9) and selection.tokens == 54
    picture = draw(image, geometry, [selection], [0.25])
    panel = np.asarray(picture)[MARGIN : MARGIN + 60, MARGIN : MARGIN + 90, 0]
    for index in range(54):
        left, top, right, bottom = geometry.pixel_box(index)
        expected = GREY if index in selection.kept.tolist() else 60
        assert (panel[top:bottom, left:right] == expected).all(), f"token {index}"
