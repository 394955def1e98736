"""Wide and tall pictograms for what ``media.crops`` changes (tests/unit/test_default_model.py,
benchmarks/crops.py): a moderated object drawn as a square at one end of a benign picture, where
the centre square the model was trained on never reaches; and benign pictures of the same shapes."""

from __future__ import annotations

import random

from moderator.pictograms.dataset import BENIGN
from moderator.pictograms.draw import render
from tests.scenes import encode

COLOURS = ("black", "red", "blue", "brown", "green")
ENDS = ((427, 240), (480, 240), (240, 427))  # 16:9, 2:1, 9:16
SHAPES = ((320, 240), (427, 240), (480, 240), (240, 427))  # and 4:3


def at_an_end(obj: str, size: tuple[int, int], rng: random.Random) -> tuple[bytes, bytes]:
    """A benign picture of ``size`` with ``obj`` drawn as a square at one end (PNG), and that
    square alone."""
    w, h = size
    side = min(w, h)
    square = render(obj, rng.choice(COLOURS), 1, "beige", rng, (side, side))
    picture = render(rng.choice(BENIGN), rng.choice(COLOURS), 1, "beige", rng, size)
    end = rng.choice((0, max(w, h) - side))
    picture.paste(square, (end, 0) if w > h else (0, end))
    return encode(picture, "PNG"), encode(square, "PNG")


def benign(size: tuple[int, int], rng: random.Random) -> bytes:
    """One to three benign pictograms on a picture of ``size`` (PNG)."""
    return encode(render(rng.choice(BENIGN), rng.choice(COLOURS), rng.choice((1, 1, 2, 3)), "beige", rng, size), "PNG")
