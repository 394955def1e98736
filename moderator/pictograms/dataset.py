"""Splits and samples. Every sample is encoded as a JPEG (random quality: real artefacts) and then
decoded and preprocessed by the service's own code, so training sees exactly what serving sees."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

import numpy as np

from moderator.pictograms.captions import caption
from moderator.pictograms.draw import BACKGROUNDS, COLOURS, OBJECTS, render

MODERATED = ("knife", "pistol", "syringe", "pill", "bottle", "cigarette", "flame")
BENIGN = ("tree", "house", "car", "flower", "cat", "cup", "ball", "sun")
# Policy categories of the moderated objects (policies/default.yaml).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "weapons": ("knife", "pistol"), "drugs": ("syringe", "pill"), "alcohol": ("bottle",),
    "smoking": ("cigarette",), "fire": ("flame",),
}
# Colour x object combinations never drawn in the training split (two per object).
HELD_OUT_COMBOS: frozenset[tuple[str, str]] = frozenset(
    (obj, colour) for i, obj in enumerate(OBJECTS) for colour in (list(COLOURS)[i % 11], list(COLOURS)[(i + 5) % 11])
)


@dataclass(frozen=True)
class Sample:
    obj: str
    colour: str
    count: int
    background: str
    caption: str
    jpeg: bytes


def draw_sample(rng: random.Random, split: str) -> Sample:
    """``split``: "train" (held-out combos excluded), "test" (seen combos), "unseen" (held-out combos only)."""
    while True:
        obj, colour = rng.choice(list(OBJECTS)), rng.choice(list(COLOURS))
        held = (obj, colour) in HELD_OUT_COMBOS
        if (split == "unseen") == held:
            break
    background = rng.choice([b for b in BACKGROUNDS if BACKGROUNDS[b] != COLOURS.get(colour)])
    count = rng.choices((1, 2, 3), weights=(0.6, 0.25, 0.15))[0]
    size = rng.choice(((96, 96), (128, 96), (96, 128), (112, 112), (160, 120)))
    img = render(obj, colour, count, background, rng, size)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=rng.randint(40, 95))
    return Sample(obj, colour, count, background, caption(obj, colour, count, background, rng), buf.getvalue())


def generate(n: int, split: str, seed: int) -> list[Sample]:
    rng = random.Random(f"{split}-{seed}")
    return [draw_sample(rng, split) for _ in range(n)]


def to_pixels(samples: list[Sample], preprocessor) -> np.ndarray:
    """Decode and preprocess with the service's code: ``uint8 [N, S, S, 3]``."""
    from moderator.media.decode import DecodeLimits, decode_image

    limits = DecodeLimits()
    return np.stack([preprocessor(decode_image(s.jpeg, limits)) for s in samples])
