"""One loader for every command: the default device and dtype, and a checkpoint with
its processor ready for batched generation."""

from __future__ import annotations

import pytest
import torch

from vtprune.loading import default_device, default_dtype, load_model
from viz.checkpoints import save_tiny_llava


def test_the_default_device_is_cuda_when_there_is_one():
    assert default_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert default_device("cpu") == torch.device("cpu")


def test_the_default_dtype_is_bfloat16_on_cuda_and_float32_elsewhere():
    assert default_dtype(None, "cuda") == torch.bfloat16
    assert default_dtype(None, torch.device("cpu")) == torch.float32
    assert default_dtype("float16", "cpu") == torch.float16 and default_dtype("torch.float16", "cpu") == torch.float16
    assert default_dtype(torch.float64, "cuda") == torch.float64 and default_dtype("auto", "cpu") == "auto"
    with pytest.raises(ValueError, match="not a torch dtype"):
        default_dtype("cuda", "cpu")


def test_a_checkpoint_loads_ready_for_batched_generation(tmp_path):
    path = save_tiny_llava(tmp_path / "model")
    model, processor = load_model(str(path), device="cpu", dtype="float64")
    parameter = next(model.parameters())
    assert parameter.dtype == torch.float64 and parameter.device == torch.device("cpu")
    assert not model.training and model.config._attn_implementation == "sdpa"
    assert processor.tokenizer.padding_side == "left"


def test_without_an_id_it_is_the_bundled_model(monkeypatch):
    calls = []
    monkeypatch.setattr("vtprune.proving_ground.load", lambda **kw: calls.append(kw) or ("model", "processor"))
    assert load_model(device="cpu") == ("model", "processor")
    assert calls == [{"device": torch.device("cpu"), "dtype": torch.float32}]
