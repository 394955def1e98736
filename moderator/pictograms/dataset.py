"""Splits and samples. Every sample is encoded as a JPEG (random quality: real artefacts) and then
decoded and preprocessed by the service's own code, so training sees exactly what serving sees."""

from __future__ import annotations

import colorsys
import io
import random
from dataclasses import dataclass

import numpy as np

from moderator.pictograms.captions import describe
from moderator.pictograms.draw import BACKGROUNDS, COLOURS, OBJECTS, Colour, Parts, distance, render, usual
from moderator.pictograms.nothing import NOTHING, draw_nothing

MODERATED = ("knife", "pistol", "syringe", "pill", "bottle", "cigarette", "flame")
BENIGN = ("tree", "house", "car", "flower", "cat", "cup", "ball", "sun")
# Policy categories of the moderated objects (policies/default.yaml).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "weapons": ("knife", "pistol"),
    "drugs": ("syringe", "pill"),
    "alcohol": ("bottle",),
    "smoking": ("cigarette",),
    "fire": ("flame",),
}
# Colour x object combinations never drawn in the training split (two per object).
HELD_OUT_COMBOS: frozenset[tuple[str, str]] = frozenset(
    (obj, colour) for i, obj in enumerate(OBJECTS) for colour in (list(COLOURS)[i % 11], list(COLOURS)[(i + 5) % 11])
)

# Training draws this share of its objects in a random RGB colour instead of a palette colour, so
# that no colour can stand in for a shape: with eleven colours a model learns "yellow disc = ball"
# and fails on a yellow sun; with colours everywhere it has to learn the outline.
FREE_COLOUR_SHARE = 0.5
# A free colour is named in the caption (by its nearest palette colour) only when it is this close.
NAMED_RADIUS = 60
# A free colour is never drawn on an object near one of the object's held-out colours, so the
# unseen split stays unseen: it keeps this RGB distance from each of them, and this hue distance
# from a chromatic one (nor may its nearest palette colour be a held-out colour).
HELD_OUT_RGB_MARGIN = 100
HELD_OUT_HUE_MARGIN = 50.0
# Training also draws this share of its pictures with the parts that have a colour of their own
# (the cup's coffee, the tree's trunk, the pill's white half) in random colours, so that a part's
# usual colour cannot stand in for its object either: else a brown ball or tree is a cup to the
# model (for the coffee). Unseen zero-shot 0.883 -> 0.951 (models/default/README.md).
PART_COLOUR_SHARE = 0.15
# How many objects a picture holds (weights of one, two, three). Training draws more of the small,
# crowded pictures, which the model finds hardest; evaluation keeps the natural mix.
COUNTS = (0.6, 0.25, 0.15)
TRAIN_COUNTS = (0.4, 0.3, 0.3)
# An object is never drawn on a background closer than this (no white on white, black on dark).
BACKGROUND_CONTRAST = 75


@dataclass(frozen=True)
class Sample:
    obj: str
    colour: str  # the palette colour; for a free colour, the nearest palette colour
    rgb: Colour  # the colour drawn
    count: int
    background: str
    caption: str
    caption_colour: str | None  # what the caption states: the colour, or None when it names none
    caption_background: str | None  # the background, or None when it names none
    jpeg: bytes

    @property
    def named_colour(self) -> str | None:
        """The palette name the drawn colour answers to; None for a free colour far from all of them
        (and for a picture of nothing)."""
        if self.obj == NOTHING:
            return None
        return self.colour if distance(self.rgb, COLOURS[self.colour]) <= NAMED_RADIUS else None


def nearest_colour(rgb: Colour) -> str:
    return min(COLOURS, key=lambda name: distance(COLOURS[name], rgb))


def _hue_sat(rgb: Colour) -> tuple[float, float]:
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    return h * 360, s * v  # saturation weighted by value: dark colours have no usable hue


def _hue_gap(a: float, b: float) -> float:
    return min(abs(a - b), 360 - abs(a - b))


def free_colour_allowed(obj: str, rgb: Colour) -> bool:
    """Whether training may draw ``obj`` in ``rgb`` without touching a held-out combination."""
    if (obj, nearest_colour(rgb)) in HELD_OUT_COMBOS:
        return False
    hue, sat = _hue_sat(rgb)
    for name in COLOURS:
        if (obj, name) not in HELD_OUT_COMBOS:
            continue
        held = COLOURS[name]
        if distance(rgb, held) < HELD_OUT_RGB_MARGIN:
            return False
        held_hue, held_sat = _hue_sat(held)
        if held_sat > 0.2 and sat > 0.2 and _hue_gap(hue, held_hue) < HELD_OUT_HUE_MARGIN:
            return False
    return True


def _free_colour(obj: str, rng: random.Random) -> Colour:
    while True:
        rgb = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        if free_colour_allowed(obj, rgb):
            return rgb


def random_parts(rng: random.Random) -> Parts:
    """Parts in random colours, the same for every part of one usual colour in a picture."""
    local, chosen = random.Random(rng.getrandbits(32)), {}

    def parts(colour: Colour) -> Colour:
        if colour not in chosen:
            chosen[colour] = (local.randrange(256), local.randrange(256), local.randrange(256))
        return chosen[colour]

    return parts


def draw_sample(rng: random.Random, split: str) -> Sample:
    """``split``: "train" (held-out combos excluded; half its objects in free colours, and
    PART_COLOUR_SHARE of its pictures with parts in random colours), "test" and "calibration" (seen
    combos), "unseen" (held-out combos only); the last three in palette colours, parts in their usual ones."""
    named = True
    if split == "train" and rng.random() < FREE_COLOUR_SHARE:
        obj = rng.choice(list(OBJECTS))
        rgb = _free_colour(obj, rng)
        colour = nearest_colour(rgb)
        named = distance(rgb, COLOURS[colour]) <= NAMED_RADIUS
    else:
        while True:
            obj, colour = rng.choice(list(OBJECTS)), rng.choice(list(COLOURS))
            held = (obj, colour) in HELD_OUT_COMBOS
            if (split == "unseen") == held:
                break
        rgb = COLOURS[colour]
    background = rng.choice([b for b in BACKGROUNDS if distance(BACKGROUNDS[b], rgb) >= BACKGROUND_CONTRAST])
    count = rng.choices((1, 2, 3), weights=TRAIN_COUNTS if split == "train" else COUNTS)[0]
    size = rng.choice(((96, 96), (128, 96), (96, 128), (112, 112), (160, 120)))
    parts = random_parts(rng) if split == "train" and rng.random() < PART_COLOUR_SHARE else usual
    img = render(obj, rgb, count, background, rng, size, parts)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=rng.randint(40, 95))
    said = describe(obj, colour if named else None, count, background, rng)
    return Sample(obj, colour, rgb, count, background, said.text, said.colour, said.background, buf.getvalue())


def nothing_sample(rng: random.Random) -> Sample:
    """A picture of none of the classes (moderator.pictograms.nothing): ``obj`` NOTHING, count 0,
    ``background`` its family."""
    family, jpeg, text = draw_nothing(rng)
    return Sample(NOTHING, "", (0, 0, 0), 0, family, text, None, None, jpeg)


def generate(n: int, split: str, seed: int, nothing_share: float = 0.0) -> list[Sample]:
    """``n`` samples of ``split``; with ``nothing_share`` > 0 that share of them (on average) are
    pictures of nothing. With 0 the pictograms are the same as they always were for a seed."""
    rng = random.Random(f"{split}-{seed}")
    return [nothing_sample(rng) if nothing_share and rng.random() < nothing_share else draw_sample(rng, split) for _ in range(n)]


def caption_facts(samples: list[Sample]) -> np.ndarray:
    """What each picture is and what its caption states, as codes for :func:`captions_fit`: ``int16
    [N, 6]``: object, count, named colour, background; caption's colour, caption's background
    (indexes into OBJECTS, COLOURS, BACKGROUNDS; -1 for none). A picture of nothing is object
    ``len(OBJECTS)``, count 0, and states nothing else: every caption of nothing fits every such picture."""
    objects, colours, backgrounds = [*OBJECTS, NOTHING], list(COLOURS), list(BACKGROUNDS)

    def index(names: list[str], name: str | None) -> int:
        return -1 if name is None else names.index(name)

    return np.array(
        [
            (
                objects.index(s.obj),
                s.count,
                index(colours, s.named_colour),
                -1 if s.obj == NOTHING else backgrounds.index(s.background),
                index(colours, s.caption_colour),
                index(backgrounds, s.caption_background),
            )
            for s in samples
        ],
        dtype=np.int16,
    ).reshape(-1, 6)


def captions_fit(images: np.ndarray, captions: np.ndarray) -> np.ndarray:
    """``bool [len(images), len(captions)]``: whether caption j is a true description of picture i
    (same object and count; the colour and background it names, if any, are the picture's). In a
    training batch these pairs are all positives: "a blaze" describes every single flame, and a
    contrastive loss that called the other flames negatives would teach the model to tell apart
    what no caption tells apart. Arguments come from :func:`caption_facts`."""
    img, cap = images[:, None, :], captions[None, :, :]
    colour_ok = (cap[..., 4] == -1) | (cap[..., 4] == img[..., 2])
    background_ok = (cap[..., 5] == -1) | (cap[..., 5] == img[..., 3])
    return (img[..., 0] == cap[..., 0]) & (img[..., 1] == cap[..., 1]) & colour_ok & background_ok


def to_pixels(samples: list[Sample], preprocessor) -> np.ndarray:
    """Decode and preprocess with the service's code: ``uint8 [N, S, S, 3]``."""
    from moderator.media.decode import DecodeLimits, decode_image

    limits = DecodeLimits()
    return np.stack([preprocessor(decode_image(s.jpeg, limits)) for s in samples])
