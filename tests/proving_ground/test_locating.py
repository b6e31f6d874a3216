"""The locating losses: targets where the objects are, on the layers that carry them."""

import torch
import torch.nn.functional as F

from vtprune.proving_ground import scene_questions
from vtprune.proving_ground.model import ModelSize, build_model, build_processor
from vtprune.proving_ground.render import render
from vtprune.proving_ground.scenes import Box, relation_between
from vtprune.proving_ground.training.batches import anchors
from vtprune.proving_ground.training.locating import LocationHeads, box_centre, capture_layer_outputs, location_loss
from vtprune.proving_ground.training.objective import forward_packed, patch_coordinates
from vtprune.proving_ground.training.packing import Packer
from vtprune.proving_ground.training.pixels import pixel_values

TINY = ModelSize(vision_hidden=32, vision_layers=1, vision_heads=2, vision_mlp=64,
                 text_hidden=32, text_layers=3, text_heads=2, text_kv_heads=1, text_mlp=64)


def test_a_patch_sized_box_is_centred_on_its_patch_coordinates():
    coordinates = patch_coordinates(24)
    for row, col in ((0, 0), (3, 17), (23, 23)):
        box = Box(col * 8, row * 8, col * 8 + 8, row * 8 + 8)
        assert torch.allclose(torch.tensor(box_centre(box)), coordinates[row * 24 + col])
    # a 2 x 2 cell: halfway between its patches
    assert torch.allclose(torch.tensor(box_centre(Box(0, 0, 16, 16))), (coordinates[0] + coordinates[25]) / 2)


def _packed(count: int = 6):
    processor = build_processor()
    scenes, questions = zip(*(scene_questions("train", i, per_family=2) for i in range(count)))
    packer = Packer(processor.tokenizer)
    batch = packer.pack([[(qa.question, qa.answer) for qa in per] for per in questions])
    return processor, scenes, questions, batch


def test_targets_are_the_named_objects_and_the_relation_offsets():
    processor, scenes, questions, batch = _packed()
    words = anchors(batch, questions)
    expected_where, expected_offsets = [], []
    for b, per in enumerate(questions):
        for qa in per:
            expected_where += [(b, box_centre(boxes[0])) for _, boxes in qa.anchors if len(boxes) == 1]
            if qa.family == "relation":
                (_, (first,)), (_, (second,)) = qa.anchors
                expected_offsets.append((b, qa.answer, first, second))
    assert words.where_rows.tolist() == [b for b, _ in expected_where]
    assert torch.allclose(words.where_xy, torch.tensor([xy for _, xy in expected_where]))
    assert len(words.offset_rows) == len(expected_offsets) > 0
    for k, (b, answer, first, second) in enumerate(expected_offsets):
        dx, dy = words.offset_xy[k].tolist()
        assert int(words.offset_rows[k]) == b
        # the offset's dominant axis and sign give the answer
        assert {"left": dx < 0 and abs(dx) > abs(dy), "right": dx > 0 and abs(dx) > abs(dy),
                "above": dy < 0 and abs(dy) > abs(dx), "below": dy > 0 and abs(dy) > abs(dx)}[answer]
        assert relation_between(first, second) in (answer, None)
    # the offset is asked at the token that predicts the relation answer
    tokens = processor.tokenizer.convert_ids_to_tokens(batch.input_ids[words.offset_rows, words.offset_cols].tolist())
    assert set(tokens) == {":"}
    answers = processor.tokenizer.convert_ids_to_tokens(batch.labels[words.offset_rows, words.offset_cols].tolist())
    assert set(answers) <= {"left", "right", "above", "below"}


def test_loss_reads_the_outputs_of_the_look_and_read_layers():
    torch.manual_seed(0)
    processor, scenes, questions, batch = _packed(3)
    model = build_model(TINY, processor).eval()
    pixels = pixel_values([render(s) for s in scenes])
    words = anchors(batch, questions)
    heads = LocationHeads(TINY.text_hidden)
    layers = model.model.language_model.layers
    with torch.no_grad(), capture_layer_outputs(layers, (1, 2)) as outputs:
        forward_packed(model, pixels, batch)
        loss = location_loss(heads, outputs[1], outputs[2], words)
    # the same hidden states as the model reports (hidden_states[i + 1] is layer i's output;
    # the last one is after the final norm, so compare the layer before it)
    with torch.no_grad():
        embeds = model.model.get_input_embeddings()(batch.input_ids)
        s = batch.image_slice
        vision = model.model.vision_tower(pixels, output_hidden_states=True).hidden_states[-1][:, 1:]
        embeds[:, s] = model.model.multi_modal_projector(vision)
        states = model.model.language_model(
            inputs_embeds=embeds, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
            output_hidden_states=True,
        ).hidden_states
        assert torch.allclose(outputs[1], states[2], atol=1e-5)
        expected = (F.mse_loss(heads.where(states[2][words.where_rows, words.where_cols]), words.where_xy)
                    + F.mse_loss(heads.offset(outputs[2][words.offset_rows, words.offset_cols]), words.offset_xy))
    assert torch.allclose(loss, expected, atol=1e-5)
