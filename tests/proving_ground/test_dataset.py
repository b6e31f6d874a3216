"""The synthetic scenes and questions: deterministic, balanced, consistent with the scene."""

from collections import Counter

import numpy as np
import pytest

from vtprune.proving_ground import CORRUPTIONS, FAMILIES, make_split, scene_questions
from vtprune.proving_ground.scenes import GRID, IMAGE_SIZE, PATCH, Box, relation_between
from vtprune.proving_ground.vocabulary import COUNT_WORDS, all_words


@pytest.fixture(scope="module")
def test_examples():
    return make_split("test", 120)


def test_same_seed_same_images_and_questions(test_examples):
    again = make_split("test", 12)
    for a, b in zip(test_examples[:12], again):
        assert a.image.tobytes() == b.image.tobytes()
        assert (a.question, a.answer, a.family, a.scene) == (b.question, b.answer, b.family, b.scene)


def test_windows_of_one_stream_agree(test_examples):
    window = make_split("test", 6, seed_offset=30)
    assert [e.question for e in window] == [e.question for e in test_examples[30:36]]
    assert window[0].image.tobytes() == test_examples[30].image.tobytes()


def test_splits_differ():
    train, test = make_split("train", 6), make_split("test", 6)
    assert all(a.image.tobytes() != b.image.tobytes() for a, b in zip(train, test))


def test_every_family_in_turn(test_examples):
    assert [e.family for e in test_examples[:6]] == list(FAMILIES)
    assert Counter(e.family for e in test_examples) == {f: 20 for f in FAMILIES}


def test_existence_is_half_no():
    examples = [e for e in make_split("test", 240) if e.family == "existence"]
    assert Counter(e.answer for e in examples) == {"yes": 20, "no": 20}


def test_answers_spread_over_their_family(test_examples):
    for family, at_least in [("counting", 4), ("relation", 4), ("global", 4), ("attribute", 6), ("reading", 8)]:
        answers = {e.answer for e in test_examples if e.family == family}
        assert len(answers) >= at_least, (family, answers)


def test_answers_are_one_vocabulary_word(test_examples):
    words = set(all_words())
    for e in test_examples:
        assert e.answer in words and " " not in e.answer
        assert all(w in words for w in e.question.replace("?", " ?").split())


def test_images_have_the_model_size(test_examples):
    assert {e.image.size for e in test_examples} == {(IMAGE_SIZE, IMAGE_SIZE)}
    assert {e.image.mode for e in test_examples} == {"RGB"}


def test_answers_agree_with_the_scene(test_examples):
    for e in test_examples:
        scene = e.scene
        q = e.question
        if e.family == "counting":
            counted = [o for o in scene.objects if o.shape + ("es" if o.shape == "cross" else "s") in q.split()
                       or f" {o.colour} objects" in q]
            assert COUNT_WORDS[len(counted)] == e.answer, q
            assert len(e.focus) == len(counted)
        elif e.family == "global":
            assert e.answer == scene.background
        elif e.family == "reading":
            (tile,) = [t for t in scene.tiles if f" {t.colour} tile" in q]
            assert tile.glyph == e.answer and e.focus == (tile.box,)
        elif e.family == "relation":
            a, b = (o for box in e.focus for o in scene.objects if o.box == box)
            assert relation_between(a.cell, b.cell) == e.answer
        elif e.family == "existence":
            colour, shape = q.rstrip("?").split()[-2:]
            assert (scene.count(shape, colour) > 0) == (e.answer == "yes")
        elif e.family == "attribute":
            (box,) = e.focus
            (obj,) = [o for o in scene.objects if o.box == box]
            assert e.answer in (obj.colour, obj.shape)


def test_objects_are_small_and_inside_the_image(test_examples):
    for e in test_examples:
        for o in e.scene.objects:
            assert 0 <= o.cell.x0 <= o.box.x0 < o.box.x1 <= o.cell.x1 <= IMAGE_SIZE
            assert 0 <= o.cell.y0 <= o.box.y0 < o.box.y1 <= o.cell.y1 <= IMAGE_SIZE
            assert len(o.cell.patches()) in (4, 9)  # of GRID * GRID visual tokens
        assert 5 <= len(e.scene.objects) <= 9 and 1 <= len(e.scene.tiles) <= 3
    assert GRID * GRID == 576


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_corruption_changes_pixels_not_answers(test_examples, corruption):
    corrupted = make_split("test", 12, corruption=corruption)
    for clean, bad in zip(test_examples[:12], corrupted):
        assert (bad.question, bad.answer, bad.scene) == (clean.question, clean.answer, clean.scene)
        assert bad.corruption == corruption
        assert bad.image.tobytes() != clean.image.tobytes()


def test_occlusion_leaves_the_focus_visible(test_examples):
    corrupted = make_split("test", 12, corruption="occlusion")
    for clean, bad in zip(test_examples[:12], corrupted):
        a, b = np.asarray(clean.image), np.asarray(bad.image)
        for box in clean.focus:
            assert np.array_equal(a[box.y0:box.y1, box.x0:box.x1], b[box.y0:box.y1, box.x0:box.x1])


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="split"):
        make_split("dev", 1)
    with pytest.raises(ValueError, match="corruption"):
        make_split("test", 1, corruption="rain")


def test_scene_questions_ask_every_family_once():
    for index in range(12):
        _, questions = scene_questions("train", index)
        families = [qa.family for qa in questions]
        assert len(set(families)) == len(families) >= 5


def test_middle_patch_of_hand_built_boxes():
    # A large object's 3 x 3 patches (columns 4-6, rows 2-4): the centre one.
    assert Box(33, 17, 55, 39).middle_patch() == 3 * GRID + 5
    # A small object's 2 x 2 (columns 10-11, row 0-1): the top-left one of its middle four.
    assert Box(81, 1, 96, 15).middle_patch() == 0 * GRID + 10
    # One patch: itself.
    assert Box(8, 8, 16, 16).middle_patch() == GRID + 1


def test_middle_patch_holds_each_objects_centre_or_touches_it(test_examples):
    for example in test_examples:
        for obj in example.scene.objects:
            middle = obj.box.middle_patch()
            assert middle in obj.box.patches()
            row, col = divmod(middle, GRID)
            cx, cy = obj.box.centre
            # the centre lies in the middle patch, or (a small object's, drawn at most
            # 2 px off its cell) at most 2 px past its right or bottom edge
            assert col * PATCH <= cx <= (col + 1) * PATCH + 2 and row * PATCH <= cy <= (row + 1) * PATCH + 2
