"""Question families over scenes, each answered by one word.

Each family has two entry points:

* ``plan(rng, turn)`` fixes the answer first and returns the scene constraints
  that make it true plus a function that asks the question of the resulting scene.
  ``turn`` counts the family's questions in a split; families with few answers
  (existence, counting, relation, global) cycle through them with it, so every
  window of a split is exactly balanced (existence: yes, no, yes, no, ...); the
  others draw their answer uniformly.
* ``candidates(scene)`` lists every well-posed question of the family the scene
  supports. Training uses it to ask several questions of one image.

What each family stresses in a pruning method:

* ``attribute``: colour or shape of one small object named in the prompt; a method
  that ignores the prompt keeps the named object only by chance.
* ``existence``: "is there a <colour> <shape>?", half yes; the no cases are mostly
  adversarial (the shape and the colour both occur, on different objects).
* ``counting`` and ``relation``: need every object of a kind, or two objects
  anywhere in the image: they punish methods that lose coverage.
* ``reading``: the glyph on the tile of a named colour; fine detail in 4 tokens.
* ``global``: the background colour; robust to almost any pruning.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations
from typing import Callable

import numpy as np

from .scenes import Box, Plan, Scene, relation_between
from .vocabulary import (
    BACKGROUND_COLOURS, COUNT_WORDS, DIRECTIONS, GLYPHS, OBJECT_COLOURS, SHAPE_PLURALS, SHAPES,
)

FAMILIES: tuple[str, ...] = ("attribute", "existence", "counting", "relation", "reading", "global")

COLOURS = tuple(OBJECT_COLOURS)


@dataclass(frozen=True)
class QA:
    """A question, its one-word answer, and the boxes the question is about.

    ``focus`` lists where the evidence is (the named object, the counted objects, the
    two related objects, the tile); it is empty when the evidence is an absence or the
    whole image (existence "no", counting "zero", global).

    ``anchors`` ties words of the question to what they name: (index of the word in
    :func:`question_words`, its boxes); relation questions have one per object, and
    a counting question has its counted word even when it counts nothing.
    """

    question: str
    answer: str
    family: str
    focus: tuple[Box, ...] = ()
    anchors: tuple[tuple[int, tuple[Box, ...]], ...] = ()


def question_words(question: str) -> list[str]:
    """The words of a question as the tokenizer splits them ("?" is a word)."""
    return question.replace("?", " ?").split()


Asker = Callable[[Scene], QA]


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return str(options[int(rng.integers(len(options)))])


# ---------------------------------------------------------------- attribute

def _colour_of(scene: Scene, shape: str) -> QA:
    (obj,) = scene.find(shape=shape)
    return QA(f"what colour is the {shape}?", obj.colour, "attribute", (obj.box,), ((4, (obj.box,)),))


def _shape_of(scene: Scene, colour: str) -> QA:
    (obj,) = scene.find(colour=colour)
    return QA(f"what shape is the {colour} object?", obj.shape, "attribute", (obj.box,), ((4, (obj.box,)),))


def plan_attribute(rng: np.random.Generator, turn: int) -> tuple[Plan, Asker]:
    shape, colour = _pick(rng, SHAPES), _pick(rng, COLOURS)
    if rng.random() < 0.5:  # the shape is unique: ask its colour
        return Plan([(shape, colour)], allowed=lambda s, c: s != shape), lambda sc: _colour_of(sc, shape)
    return Plan([(shape, colour)], allowed=lambda s, c: c != colour), lambda sc: _shape_of(sc, colour)


def candidates_attribute(scene: Scene) -> list[QA]:
    out = [_colour_of(scene, s) for s in SHAPES if scene.count(shape=s) == 1]
    return out + [_shape_of(scene, c) for c in COLOURS if scene.count(colour=c) == 1]


# ---------------------------------------------------------------- existence

def _exists(scene: Scene, shape: str, colour: str) -> QA:
    found = scene.find(shape, colour)
    answer = "yes" if found else "no"
    article = "an" if colour[0] in "aeiou" else "a"
    boxes = tuple(o.box for o in found)
    return QA(f"is there {article} {colour} {shape}?", answer, "existence", boxes, ((4, boxes),) if boxes else ())


def plan_existence(rng: np.random.Generator, turn: int) -> tuple[Plan, Asker]:
    shape, colour = _pick(rng, SHAPES), _pick(rng, COLOURS)
    ask = lambda sc: _exists(sc, shape, colour)  # noqa: E731
    if turn % 2 == 0:
        return Plan([(shape, colour)]), ask
    # "no": the exact kind is absent; usually its shape and its colour still occur on
    # other objects, so that seeing "a star" and "something blue" is not enough.
    decoys = []
    if rng.random() < 0.75:
        decoys.append((shape, _pick(rng, [c for c in COLOURS if c != colour])))
    if rng.random() < 0.75:
        decoys.append((_pick(rng, [s for s in SHAPES if s != shape]), colour))
    return Plan(decoys, allowed=lambda s, c: (s, c) != (shape, colour)), ask


def candidates_existence(scene: Scene) -> list[QA]:
    return [_exists(scene, s, c) for s in SHAPES for c in COLOURS]


# ---------------------------------------------------------------- counting

def _count_shape(scene: Scene, shape: str) -> QA:
    found = scene.find(shape=shape)
    boxes = tuple(o.box for o in found)
    return QA(f"how many {SHAPE_PLURALS[shape]} are there?", COUNT_WORDS[len(found)], "counting", boxes, ((2, boxes),))


def _count_colour(scene: Scene, colour: str) -> QA:
    found = scene.find(colour=colour)
    boxes = tuple(o.box for o in found)
    return QA(f"how many {colour} objects are there?", COUNT_WORDS[len(found)], "counting", boxes, ((2, boxes),))


def plan_counting(rng: np.random.Generator, turn: int) -> tuple[Plan, Asker]:
    n = turn % len(COUNT_WORDS)
    if rng.random() < 0.5:
        shape = _pick(rng, SHAPES)
        forced = [(shape, _pick(rng, COLOURS)) for _ in range(n)]
        return Plan(forced, allowed=lambda s, c: s != shape), lambda sc: _count_shape(sc, shape)
    colour = _pick(rng, COLOURS)
    forced = [(_pick(rng, SHAPES), colour) for _ in range(n)]
    return Plan(forced, allowed=lambda s, c: c != colour), lambda sc: _count_colour(sc, colour)


def candidates_counting(scene: Scene) -> list[QA]:
    top = len(COUNT_WORDS) - 1
    out = [_count_shape(scene, s) for s in SHAPES if scene.count(shape=s) <= top]
    return out + [_count_colour(scene, c) for c in COLOURS if scene.count(colour=c) <= top]


# ---------------------------------------------------------------- relation

def _relate(scene: Scene, a: tuple[str, str], b: tuple[str, str]) -> QA | None:
    """Where the unique object of kind ``a`` is relative to the unique one of kind ``b``."""
    found_a, found_b = scene.find(*a), scene.find(*b)
    if len(found_a) != 1 or len(found_b) != 1:
        return None
    # Judged on the cells (as the sampler placed them); the drawn shapes sit at most a
    # few pixels off their cell centres, far below the relation's margins.
    direction = relation_between(found_a[0].cell, found_b[0].cell)
    if direction is None:
        return None
    question = f"where is the {a[1]} {a[0]} relative to the {b[1]} {b[0]}?"
    box_a, box_b = found_a[0].box, found_b[0].box
    return QA(question, direction, "relation", (box_a, box_b), ((4, (box_a,)), (9, (box_b,))))


def plan_relation(rng: np.random.Generator, turn: int) -> tuple[Plan, Asker]:
    a = (_pick(rng, SHAPES), _pick(rng, COLOURS))
    b = a
    while b == a:
        b = (_pick(rng, SHAPES), _pick(rng, COLOURS))
    direction = DIRECTIONS[turn % len(DIRECTIONS)]
    plan = Plan([a, b], allowed=lambda s, c: (s, c) not in (a, b), relation=(0, 1, direction))
    return plan, lambda sc: _relate(sc, a, b)  # type: ignore[return-value]


def candidates_relation(scene: Scene) -> list[QA]:
    kinds = sorted({(o.shape, o.colour) for o in scene.objects})
    out = [_relate(scene, a, b) for a, b in permutations(kinds, 2)]
    return [qa for qa in out if qa is not None]


# ---------------------------------------------------------------- reading

def _read(scene: Scene, colour: str) -> QA:
    (tile,) = [t for t in scene.tiles if t.colour == colour]
    return QA(f"what is written on the {colour} tile?", tile.glyph, "reading", (tile.box,), ((6, (tile.box,)),))


def plan_reading(rng: np.random.Generator, turn: int) -> tuple[Plan, Asker]:
    colour, glyph = _pick(rng, COLOURS), _pick(rng, GLYPHS)
    return Plan(tile=(colour, glyph)), lambda sc: _read(sc, colour)


def candidates_reading(scene: Scene) -> list[QA]:
    return [_read(scene, t.colour) for t in scene.tiles]


# ---------------------------------------------------------------- global

def _background(scene: Scene) -> QA:
    return QA("what colour is the background?", scene.background, "global")


def plan_global(rng: np.random.Generator, turn: int) -> tuple[Plan, Asker]:
    return Plan(background=tuple(BACKGROUND_COLOURS)[turn % len(BACKGROUND_COLOURS)]), _background


def candidates_global(scene: Scene) -> list[QA]:
    return [_background(scene)]


PLANNERS: dict[str, Callable[[np.random.Generator, int], tuple[Plan, Asker]]] = {
    "attribute": plan_attribute,
    "existence": plan_existence,
    "counting": plan_counting,
    "relation": plan_relation,
    "reading": plan_reading,
    "global": plan_global,
}

CANDIDATES: dict[str, Callable[[Scene], list[QA]]] = {
    "attribute": candidates_attribute,
    "existence": candidates_existence,
    "counting": candidates_counting,
    "relation": candidates_relation,
    "reading": candidates_reading,
    "global": candidates_global,
}


def balanced_choice(rng: np.random.Generator, options: list[QA]) -> QA | None:
    """One of ``options``: first an answer uniformly among those present, then a question."""
    if not options:
        return None
    answers = sorted({qa.answer for qa in options})
    answer = answers[int(rng.integers(len(answers)))]
    matching = [qa for qa in options if qa.answer == answer]
    return matching[int(rng.integers(len(matching)))]
