"""Training inputs compute what the real prompt computes."""

import pytest
import torch

from vtprune.proving_ground import make_split, prompt, scene_questions
from vtprune.proving_ground.questions import question_words
from vtprune.proving_ground.model import ModelSize, build_model, build_processor
from vtprune.proving_ground.render import render
from vtprune.proving_ground.training.objective import (
    AuxiliaryHeads, LossWeights, forward_packed, packed_losses, patch_targets, scene_targets,
)
from vtprune.proving_ground.training.batches import anchors
from vtprune.proving_ground.training.packing import IGNORE, Packer
from vtprune.proving_ground.training.pixels import pixel_values
from vtprune.proving_ground.training.curriculum import choose_visual_tokens, visible_tokens
from vtprune.proving_ground.training.trainer import cosine_schedule

TINY = ModelSize(vision_hidden=32, vision_layers=1, vision_heads=2, vision_mlp=64,
                 text_hidden=32, text_layers=2, text_heads=2, text_kv_heads=1, text_mlp=64)


def test_fast_pixels_match_the_processor():
    processor = build_processor()
    images = [e.image for e in make_split("test", 3)]
    expected = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    assert torch.allclose(pixel_values(images), expected, atol=1e-5)


def test_packed_questions_equal_single_prompts():
    torch.manual_seed(0)
    processor = build_processor()
    model = build_model(TINY, processor).eval()
    packer = Packer(processor.tokenizer)
    scenes, questions = zip(*(scene_questions("test", i) for i in range(2)))
    images = [render(s) for s in scenes]
    batch = packer.pack([[(qa.question, qa.answer) for qa in per] for per in questions])
    with torch.no_grad():
        _, hidden = forward_packed(model, pixel_values(images), batch)
        rows, cols = (batch.labels != IGNORE).nonzero(as_tuple=True)
        packed = model.lm_head(hidden[rows[0::2], cols[0::2]])  # where each answer is predicted
        k = 0
        for image, per_image in zip(images, questions):
            for qa in per_image:
                inputs = processor(images=[image], text=[prompt(qa.question)], return_tensors="pt")
                single = model(**inputs).logits[0, -1]
                assert torch.allclose(packed[k], single, atol=1e-4), qa.question
                k += 1
    assert k == len(packed)


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    processor = build_processor()
    model = build_model(TINY, processor)
    heads = AuxiliaryHeads(TINY.vision_hidden)
    packer = Packer(processor.tokenizer)
    scenes, questions = zip(*(scene_questions("train", i) for i in range(2)))
    batch = packer.pack([[(qa.question, qa.answer) for qa in per] for per in questions])
    pixels = pixel_values([render(s) for s in scenes])
    scene, patches = scene_targets(list(scenes)), patch_targets(list(scenes))
    words = anchors(batch, questions)
    optimizer = torch.optim.AdamW(list(model.parameters()) + list(heads.parameters()), lr=1e-2)
    weights = LossWeights(grounding=1.0, look_layer=0, count_head=1, read_layer=1, read_heads=(0, 1))
    losses = []
    for _ in range(8):
        out = packed_losses(model, heads, pixels, batch, scene, patches, words, weights)
        optimizer.zero_grad()
        out.total.backward()
        optimizer.step()
        losses.append(out.total.item())
    assert losses[-1] < 0.7 * losses[0]


def test_learning_rate_warms_up_then_decays():
    def lr(step):
        return cosine_schedule(1.0, step, steps=100, warmup=10, floor=0.1)

    assert lr(0) == 0.1 and abs(lr(9) - 1.0) < 1e-9
    assert lr(50) < lr(20) and abs(lr(99) - 0.1) < 1e-3


def test_visual_token_subset_keeps_every_object_token():
    scenes = [scene_questions("test", i)[0] for i in range(3)]
    targets = patch_targets(scenes)
    index = choose_visual_tokens(targets, 128, torch.Generator().manual_seed(0))
    assert index.shape == (3, 128) and bool((index.diff(dim=1) > 0).all())
    for b in range(3):
        occupied = set((targets[b] > 0).any(-1).nonzero().flatten().tolist())
        assert occupied <= set(index[b].tolist())
    assert choose_visual_tokens(targets, 576, torch.Generator()) is None
    assert [visible_tokens(s, 128, 10, 20) for s in (0, 9, 20, 30, 99)] == [128, 128, 352, 576, 576]


def test_a_subset_of_visual_tokens_keeps_their_positions():
    """A packed subset computes what the full prompt computes with those tokens pruned."""
    torch.manual_seed(0)
    processor = build_processor()
    model = build_model(TINY, processor).eval()
    packer = Packer(processor.tokenizer)
    scenes, questions = zip(*(scene_questions("test", i) for i in range(2)))
    pixels = pixel_values([render(s) for s in scenes])
    index = choose_visual_tokens(patch_targets(list(scenes)), 100, torch.Generator().manual_seed(0))
    batch = packer.pack([[(qa.question, qa.answer) for qa in per] for per in questions], index)
    with torch.no_grad():
        _, hidden = forward_packed(model, pixels, batch)
        rows, cols = (batch.labels != IGNORE).nonzero(as_tuple=True)
        packed = model.lm_head(hidden[rows[0::2], cols[0::2]])
        # Reference: the first question of image 0 through the language model with only
        # the kept visual tokens, at their original positions.
        full = packer.pack([[(questions[0][0].question, questions[0][0].answer)]])
        embeds = model.model.get_input_embeddings()(full.input_ids)
        vision = model.model.vision_tower(pixels[:1], output_hidden_states=True).hidden_states[-1][:, 1:]
        features = model.model.multi_modal_projector(vision)
        embeds[:, 3:579] = features
        keep = torch.cat([torch.arange(3), 3 + index[0], torch.arange(579, full.input_ids.shape[1])])
        out = model.model.language_model(
            inputs_embeds=embeds[:, keep], position_ids=full.position_ids[:, keep],
        ).last_hidden_state
        start = 3 + 100
        answer_at = start + (full.labels[0, 579:] != IGNORE).nonzero()[0, 0]
        assert torch.allclose(model.lm_head(out[0, answer_at]), packed[0], atol=1e-4)


def test_patch_targets_mark_each_object_once():
    scenes = [scene_questions("test", i)[0] for i in range(3)]
    targets = patch_targets(scenes)
    for scene, per_image in zip(scenes, targets):
        assert int(per_image[:, 3].sum()) == len(scene.objects)  # one middle patch each
        assert {o.box.middle_patch() for o in scene.objects} == set(per_image[:, 3].nonzero().flatten().tolist())
        assert int((per_image[:, 2] > 0).sum()) == 4 * len(scene.tiles)  # a tile is 2 x 2 patches


def test_grounding_recomputes_the_layers_attention_row():
    """The supervised attention row equals the one eager attention computes."""
    from vtprune.proving_ground.training.grounding import (
        capture_attention_input, even_attention_loss, focus_attention_loss,
    )

    torch.manual_seed(0)
    processor = build_processor()
    model = build_model(TINY, processor).eval()
    with torch.no_grad():  # sharper attention than the initialisation, so the check means something
        for p in model.model.language_model.parameters():
            p.mul_(8.0) if p.dim() == 2 else None
    packer = Packer(processor.tokenizer)
    scenes, questions = zip(*(scene_questions("test", i) for i in range(2)))
    batch = packer.pack([[(qa.question, qa.answer) for qa in per] for per in questions])
    pixels = pixel_values([render(s) for s in scenes])
    rows, cols = (batch.labels != IGNORE).nonzero(as_tuple=True)
    rows, cols = rows[0::2], cols[0::2]  # the positions that predict the answers
    n = len(rows)
    focus = torch.zeros(n, 576, dtype=torch.bool)
    focus[:, 100:140] = True
    layer, head = 1, 1
    even = torch.zeros(n, batch.input_ids.shape[1], dtype=torch.bool)
    even[:, 0] = True
    even[:, batch.image_slice.start + 7] = even[:, batch.image_slice.start + 300] = True
    attention = model.model.language_model.layers[layer].self_attn
    with torch.no_grad(), capture_attention_input(attention) as seen:
        forward_packed(model, pixels, batch)
        loss = focus_attention_loss(attention, seen, batch, rows, cols, focus, head)
        even_loss = even_attention_loss(attention, seen, batch, rows, cols, even, head)
        with pytest.raises(ValueError, match="head must be in 0..1"):
            focus_attention_loss(attention, seen, batch, rows, cols, focus, 2)

    model.model.language_model.config._attn_implementation = "eager"
    with torch.no_grad():
        out = model.model.language_model(
            inputs_embeds=torch.cat([
                model.model.get_input_embeddings()(batch.input_ids)[:, :batch.image_slice.start],
                model.model.multi_modal_projector(model.model.vision_tower(pixels, output_hidden_states=True)
                                                  .hidden_states[-1][:, 1:]),
                model.model.get_input_embeddings()(batch.input_ids)[:, batch.image_slice.stop:],
            ], dim=1),
            # eager attention adds the mask to the scores: give it 0 / -inf, not booleans
            attention_mask=torch.zeros(batch.attention_mask.shape).masked_fill(~batch.attention_mask, float("-inf")),
            position_ids=batch.position_ids, output_attentions=True,
        )
    weights = out.attentions[layer][rows, head, cols]  # (n, L)
    s = batch.image_slice
    expected = -torch.log(weights[:, s.start:s.stop][focus].view(n, -1).sum(-1)).mean()
    assert torch.allclose(loss, expected, atol=1e-4)
    # cross-entropy against an even share over <s> and two visual tokens
    expected_even = -(torch.log(weights[even].view(n, 3)).sum(-1) / 3).mean()
    assert torch.allclose(even_loss, expected_even, atol=1e-4)


def test_anchor_words_sit_where_the_packer_put_them():
    processor = build_processor()
    packer = Packer(processor.tokenizer)
    scenes, questions = zip(*(scene_questions("train", i) for i in range(3)))
    batch = packer.pack([[(qa.question, qa.answer) for qa in per] for per in questions])
    words = anchors(batch, questions)
    assert len(words.rows) >= 6
    tokens = processor.tokenizer.convert_ids_to_tokens(batch.input_ids[words.rows, words.cols].tolist())
    names = {"star", "circle", "square", "triangle", "cross", "tile", "stars", "circles", "squares",
             "triangles", "crosses", "red", "green", "blue", "yellow", "purple", "orange"}
    assert set(tokens) <= names
    assert bool(words.focus.any(dim=1).all())
    # The read hop: each question with anchors, from the token that predicts its answer
    # (":", whose next-token label is the answer) to exactly its anchor words.
    answers = processor.tokenizer.convert_ids_to_tokens(batch.input_ids[words.answer_rows, words.answer_cols].tolist())
    assert set(answers) == {":"}
    assert bool((batch.labels[words.answer_rows, words.answer_cols] != IGNORE).all())
    named = {(int(r), int(c)) for r, c in zip(words.answer_rows, words.first_word)}
    named |= {(int(r), int(c)) for r, c in zip(words.answer_rows, words.last_word)}
    looked = {(int(r), int(c)) for r, c in zip(words.rows, words.cols)}
    counted = {(int(r), int(c)) for r, c in zip(words.count_rows, words.count_cols)}
    assert named == looked | counted  # a zero count is read, with nothing to look at
    assert bool((words.first_word < words.answer_cols).all()) and bool((words.first_word <= words.last_word).all())


def _counting_questions(split, count):
    """(scene, counting QA) pairs from ``split`` whose answer is ``count`` objects."""
    from vtprune.proving_ground.vocabulary import COUNT_WORDS

    found = []
    for i in range(200):
        scene, questions = scene_questions(split, i)
        found += [(scene, qa) for qa in questions if qa.family == "counting" and qa.answer == COUNT_WORDS[count]]
        if len(found) >= 2:
            return found[:2]
    raise AssertionError(f"no counting question answered {count} in the first 200 scenes")


@pytest.mark.parametrize("subset", [None, 100])
@pytest.mark.parametrize("count", [0, 1, 3])
def test_count_head_targets_are_bos_and_the_middle_of_each_counted_object(count, subset):
    processor = build_processor()
    packer = Packer(processor.tokenizer)
    scenes, questions = zip(*((scene, [qa]) for scene, qa in _counting_questions("train", count)))
    index = None if subset is None else choose_visual_tokens(patch_targets(list(scenes)), subset,
                                                             torch.Generator().manual_seed(0))
    batch = packer.pack([[(qa.question, qa.answer) for qa in per] for per in questions], index)
    words = anchors(batch, questions)
    assert words.count_rows.tolist() == [0, 1]
    tokens = processor.tokenizer.convert_ids_to_tokens(batch.input_ids[words.count_rows, words.count_cols].tolist())
    assert all(t == question_words(qa.question)[2] for t, (qa,) in zip(tokens, questions))
    start = batch.image_slice.start
    for b, (scene, (qa,)) in enumerate(zip(scenes, questions)):
        targets = words.count_targets[b].nonzero().flatten().tolist()
        slots = [t - start for t in targets[1:]]
        visual = list(range(576)) if index is None else index[b].tolist()
        middles = sorted(visual[k] for k in slots)
        assert targets[0] == 0  # <s>
        assert middles == sorted(box.middle_patch() for box in qa.focus)
        assert len(middles) == count
    # the look hop has nothing to look at for a zero count, and each box otherwise
    assert len(words.rows) == (0 if count == 0 else 2)


def _three_steps(weights):
    """Total, answer and grounding loss of three AdamW steps of a 3-layer model on two train scenes."""
    size = ModelSize(vision_hidden=32, vision_layers=1, vision_heads=2, vision_mlp=64,
                     text_hidden=32, text_layers=3, text_heads=4, text_kv_heads=2, text_mlp=64)
    torch.manual_seed(0)
    processor = build_processor()
    model = build_model(size, processor)
    heads = AuxiliaryHeads(size.vision_hidden, size.text_hidden)
    packer = Packer(processor.tokenizer)
    scenes, questions = zip(*(scene_questions("train", i) for i in range(2)))
    batch = packer.pack([[(qa.question, qa.answer) for qa in per] for per in questions])
    pixels = pixel_values([render(s) for s in scenes])
    scene, patches = scene_targets(list(scenes)), patch_targets(list(scenes))
    words = anchors(batch, questions)
    optimizer = torch.optim.AdamW(list(model.parameters()) + list(heads.parameters()), lr=1e-2)
    out = []
    for _ in range(3):
        losses = packed_losses(model, heads, pixels, batch, scene, patches, words, weights)
        optimizer.zero_grad()
        losses.total.backward()
        optimizer.step()
        out.append([losses.total.item(), losses.answer.item(), losses.grounding.item()])
    return out


def test_registered_terms_reproduce_the_losses_of_the_unregistered_objective():
    # Recorded with the objective as it was before its grounding terms were registered
    # by name (same seed, model, scenes and routing).
    before = [[32.91579, 4.34656, 25.93568], [32.80426, 4.20158, 26.24756], [34.49707, 4.29406, 28.19282]]
    assert torch.allclose(torch.tensor(_three_steps(LossWeights(grounding=1.0))), torch.tensor(before), atol=2e-5)


def test_the_control_run_has_no_grounding_and_terms_are_checked():
    control = _three_steps(LossWeights(grounding=0.0))
    assert [step[2] for step in control] == [0.0, 0.0, 0.0]
    assert all(abs(total - answer) > 1.0 for total, answer, _ in control)  # the tower losses remain
    assert control[0][1] == pytest.approx(4.34656, abs=2e-5)  # the same first answer loss
    no_read = _three_steps(LossWeights(grounding=1.0, terms=("look", "count", "bind", "locate")))
    assert no_read[0][2] < 25.93568 - 0.1  # the read term's share is gone
    with pytest.raises(ValueError, match="unknown grounding term"):
        _three_steps(LossWeights(grounding=1.0, terms=("look", "lookk")))


def test_settings_carry_their_help_and_the_command_line_is_built_from_them():
    from dataclasses import fields
    import json

    from vtprune.proving_ground import checkpoint_path
    from vtprune.proving_ground.train import build_parser
    from vtprune.proving_ground.training.trainer import TrainSettings, setting_help

    assert setting_help("subset_hold") == "stage 2 steps on that subset"
    with pytest.raises(ValueError, match="no setting 'stepz'"):
        setting_help("stepz")
    assert all(f.metadata.get("help") for f in fields(TrainSettings) if f.name != "size")
    args = build_parser().parse_args(["--steps", "12", "--grounding-terms", "look", "read", "--grounding-weight", "0"])
    assert (args.steps, args.grounding_terms, args.grounding_weight) == (12, ["look", "read"], 0.0)
    # the defaults are still those of the bundled checkpoint's run
    recorded = json.loads((checkpoint_path() / "training.json").read_text())["settings"]
    defaults = TrainSettings()
    for f in fields(TrainSettings):
        if f.name in recorded and f.name != "size":
            assert getattr(defaults, f.name) == recorded[f.name], f.name


def test_the_hops_layers_and_the_model_size_are_settings():
    from vtprune.proving_ground.train import build_parser, model_size
    from vtprune.proving_ground.training.trainer import TrainSettings, _loss_weights

    args = build_parser().parse_args(["--look-layer", "3", "--read-layer", "4", "--bind-layer", "2",
                                      "--size", "text_layers=6"])
    assert (args.bind_layer, args.look_layer, args.read_layer) == (2, 3, 4)
    size = model_size(args.size)
    assert size.text_layers == 6 and size.text_hidden == ModelSize().text_hidden
    weights = _loss_weights(TrainSettings(bind_layer=2, look_layer=3, read_layer=4), step=0)
    assert (weights.bind_layer, weights.look_layer, weights.read_layer) == (2, 3, 4)
    defaults = _loss_weights(TrainSettings(), step=0)
    assert (defaults.bind_layer, defaults.look_layer, defaults.read_layer) == (0, 1, 2)  # the bundled run's
    with pytest.raises(SystemExit, match="--size: expected FIELD=INTEGER"):
        model_size(["text_layer=6"])


def test_stage_2_can_start_from_a_trained_vision_tower(tmp_path):
    from vtprune.proving_ground import load
    from vtprune.proving_ground.train import build_parser
    from vtprune.proving_ground.training.trainer import TrainSettings, train

    assert build_parser().parse_args(["--vision-from", "bundled"]).vision_from == "bundled"
    settings = TrainSettings(vision_from="bundled", steps=1, batch=2, warmup=1, subset_tokens=64, subset_hold=1,
                             subset_ramp=1, eval_every=100, val_images=2, threads=1, grounding_weight=0.0, look_layer=0, read_layer=1,
                             size=ModelSize(text_hidden=32, text_layers=2, text_heads=2, text_kv_heads=1, text_mlp=64))
    model, _, record = train(settings)
    bundled, _ = load()
    for (name, mine), theirs in zip(model.model.vision_tower.state_dict().items(),
                                    bundled.model.vision_tower.state_dict().values()):
        assert torch.equal(mine, theirs), name  # frozen in stage 2: still the bundled tower
    assert record["vision_stage_seconds"] < 60
    with pytest.raises(ValueError, match="vision_from: the vision tower"):
        train(TrainSettings(vision_from="bundled", steps=1, size=TINY))


def test_the_context_loss_asks_every_visual_token_for_the_scene():
    import torch.nn.functional as F

    from vtprune.proving_ground.train import build_parser
    from vtprune.proving_ground.training.objective import AuxiliaryHeads, LossWeights, SCENE_LABELS

    torch.manual_seed(0)
    selected = torch.randn(2, 577, TINY.vision_hidden)
    scene = (torch.rand(2, len(SCENE_LABELS)) > 0.7).float()
    patches = torch.zeros(2, 576, 4, dtype=torch.long)
    patches[:, :5, 0] = 1
    heads = AuxiliaryHeads(TINY.vision_hidden, context=True)
    losses = heads.losses(selected, scene, patches)
    head = heads.context
    by_hand = torch.stack([
        F.binary_cross_entropy(torch.sigmoid(head.out(head.norm(selected[b, t]))), scene[b])
        for b in range(2) for t in range(1, 577)
    ]).mean()
    torch.testing.assert_close(losses.context, by_hand, rtol=1e-5, atol=1e-6)
    plain = LossWeights().tower_total(losses)
    assert LossWeights(context=0.5).tower_total(losses).item() == pytest.approx(plain.item() + 0.5 * by_hand.item(), rel=1e-6)
    without = AuxiliaryHeads(TINY.vision_hidden).losses(selected, scene, patches)
    assert without.context is None and torch.isfinite(LossWeights(context=0.5).tower_total(without))
    args = build_parser().parse_args(["--context-weight", "0.5", "--freeze-vision", "no"])
    assert (args.context_weight, args.freeze_vision) == (0.5, False)
    assert build_parser().parse_args([]).freeze_vision is True
