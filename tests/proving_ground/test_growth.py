"""Block expansion of the proving-ground language model (training.growth)."""

import pytest
import torch

from vtprune.proving_ground import load, make_split, prompt
from vtprune.proving_ground.training.growth import grow_front, identity_copy


@pytest.fixture(scope="module")
def bundled_and_grown():
    original, processor = load()
    grown, _ = load()
    grow_front(grown, 3)
    return original, grown, processor


def _inputs(processor, count=3):
    examples = make_split("test", count)
    inputs = processor(images=[e.image for e in examples], text=[prompt(e.question) for e in examples],
                       return_tensors="pt", padding=True)
    return inputs


def test_an_identity_copy_leaves_the_residual_stream_unchanged():
    model, _ = load()
    layer = model.model.language_model.layers[1]
    copy = identity_copy(layer)
    assert torch.count_nonzero(copy.self_attn.o_proj.weight) == 0
    assert torch.count_nonzero(copy.mlp.down_proj.weight) == 0
    assert torch.equal(copy.self_attn.q_proj.weight, layer.self_attn.q_proj.weight)  # the rest is the layer's
    assert torch.count_nonzero(layer.self_attn.o_proj.weight) > 0  # the source is untouched


def test_the_grown_model_computes_what_the_original_computes(bundled_and_grown):
    original, grown, processor = bundled_and_grown
    layers = grown.model.language_model.layers
    assert grown.config.text_config.num_hidden_layers == len(layers) == 7
    assert [layer.self_attn.layer_idx for layer in layers] == list(range(7))
    for old, new in zip(original.model.language_model.layers, layers[3:]):
        assert torch.equal(old.mlp.down_proj.weight, new.mlp.down_proj.weight)
    inputs = _inputs(processor)
    with torch.no_grad():
        expected = original(**inputs).logits
        got = grown(**inputs).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_the_grown_model_decodes_with_and_without_its_cache(bundled_and_grown):
    original, grown, processor = bundled_and_grown
    inputs = _inputs(processor)
    settings = dict(max_new_tokens=3, do_sample=False)
    expected = original.generate(**inputs, **settings)
    assert torch.equal(grown.generate(**inputs, **settings), expected)
    assert torch.equal(grown.generate(**inputs, **settings, use_cache=False), expected)


def test_growth_checks_its_arguments():
    model, _ = load()
    with pytest.raises(ValueError, match="grow_front: expected a number of layers >= 0"):
        grow_front(model, -1)
    with pytest.raises(ValueError, match=r"grow_front: source layer must be in \[0, 3\]"):
        grow_front(model, 1, source=4)
    grow_front(model, 0)
    assert len(model.model.language_model.layers) == model.config.text_config.num_hidden_layers == 4


def test_stage_2_can_start_from_a_whole_checkpoint_and_grow_it():
    from vtprune.proving_ground.model import ModelSize
    from vtprune.proving_ground.train import build_parser
    from vtprune.proving_ground.training.trainer import TrainSettings, train

    args = build_parser().parse_args(["--init-from", "bundled", "--grow-front", "2", "--grow-source", "1"])
    assert (args.init_from, args.grow_front, args.grow_source) == ("bundled", 2, 1)
    # lr 0: the weights stay as loaded and grown, so they can be compared with the checkpoint
    settings = TrainSettings(init_from="bundled", grow_front=2, grow_source=1, steps=1, batch=2, lr=0.0, warmup=1,
                             subset_tokens=576, subset_hold=0, subset_ramp=0, grounding_weight=0.0,
                             eval_every=100, val_images=2, threads=1)
    model, _, record = train(settings)
    bundled, _ = load()
    assert record["settings"]["size"]["text_layers"] == 6 and record["vision_stage_seconds"] < 60
    layers = model.model.language_model.layers
    assert all(torch.count_nonzero(layer.mlp.down_proj.weight) == 0 for layer in layers[:2])
    source = bundled.model.language_model.layers[1]
    assert all(torch.equal(layer.self_attn.q_proj.weight, source.self_attn.q_proj.weight) for layer in layers[:2])
    for old, new in zip(bundled.model.language_model.layers, layers[2:]):
        assert torch.equal(old.self_attn.o_proj.weight, new.self_attn.o_proj.weight)
    assert torch.equal(model.model.multi_modal_projector.linear_1.weight,
                       bundled.model.multi_modal_projector.linear_1.weight)
    with pytest.raises(ValueError, match="init_from and vision_from: give one"):
        train(TrainSettings(init_from="bundled", vision_from="bundled"))
    with pytest.raises(ValueError, match="size: a model started from init_from"):
        train(TrainSettings(init_from="bundled", size=ModelSize(text_layers=6)))
    with pytest.raises(ValueError, match="grow_front: expected a number of layers >= 0"):
        train(TrainSettings(grow_front=-2))
    with pytest.raises(ValueError, match="grow_source: expected a decoder layer >= 0"):
        train(TrainSettings(grow_front=1, grow_source=-1))
