"""The closed world of the proving ground: every scene element and every word.

Object colours are saturated and background colours muted (or neutral), so an object
never vanishes into its background and a colour word names exactly one role. All
answers are single words of the tokenizer's vocabulary.
"""

from __future__ import annotations

# Object and tile colours: name -> nominal RGB (each object jitters around it).
OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "green": (30, 170, 60),
    "blue": (40, 80, 235),
    "yellow": (245, 215, 30),
    "purple": (150, 50, 200),
    "orange": (250, 135, 20),
}

# Background colours: name -> nominal RGB (each background gets a gradient and grain).
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (22, 22, 26),
    "white": (236, 236, 232),
    "gray": (128, 128, 128),
    "brown": (112, 76, 48),
    "pink": (238, 168, 192),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
SHAPE_PLURALS: dict[str, str] = {s: ("crosses" if s == "cross" else s + "s") for s in SHAPES}

# Glyphs written on tiles: letters and digits that stay distinct in a 5 x 7 bitmap.
GLYPHS: tuple[str, ...] = ("A", "C", "E", "F", "H", "K", "L", "M", "P", "R", "T", "U", "X", "Y", "3", "7")

COUNT_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four")
DIRECTIONS: tuple[str, ...] = ("left", "right", "above", "below")
YES_NO: tuple[str, ...] = ("yes", "no")

# Words of the question templates and the LLaVA-1.5 prompt around them.
TEMPLATE_WORDS: tuple[str, ...] = (
    "USER", "ASSISTANT", ":", "?",
    "what", "colour", "shape", "is", "the", "object", "there", "a", "an", "how", "many", "are",
    "objects", "where", "relative", "to", "written", "on", "tile", "background",
)

ANSWER_WORDS: tuple[str, ...] = (
    tuple(OBJECT_COLOURS) + tuple(BACKGROUND_COLOURS) + SHAPES + GLYPHS + COUNT_WORDS + DIRECTIONS + YES_NO
)


def all_words() -> list[str]:
    """Every word the tokenizer knows, in a fixed order (ids depend on it)."""
    words: list[str] = []
    for word in TEMPLATE_WORDS + tuple(SHAPE_PLURALS.values()) + ANSWER_WORDS:
        if word not in words:
            words.append(word)
    return words
