"""Captions from a small grammar with synonyms, so policy prompts work in natural wording."""

from __future__ import annotations

import random
from dataclasses import dataclass

SYNONYMS: dict[str, list[str]] = {
    "knife": ["knife", "blade", "dagger", "kitchen knife"],
    "pistol": ["pistol", "gun", "handgun", "firearm", "revolver"],
    "syringe": ["syringe", "needle", "injection", "hypodermic needle"],
    "pill": ["pill", "capsule", "tablet", "medication"],
    "bottle": ["bottle", "beer bottle", "wine bottle", "liquor bottle"],
    "cigarette": ["cigarette", "lit cigarette", "tobacco cigarette", "cigarette stub"],
    "flame": ["flame", "fire", "blaze", "burning flame"],
    "tree": ["tree", "oak tree", "plant"],
    "house": ["house", "home", "building", "cottage"],
    "car": ["car", "automobile", "vehicle", "sedan"],
    "flower": ["flower", "blossom", "daisy"],
    "cat": ["cat", "kitten", "kitty"],
    "cup": ["cup", "mug", "coffee cup", "teacup"],
    "ball": ["ball", "beach ball", "football"],
    "sun": ["sun", "sunshine", "bright sun"],
}
IRREGULAR = {"knife": "knives", "kitchen knife": "kitchen knives", "dagger": "daggers", "glass": "glasses"}
COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
COLOURED = [
    "a {c} {o}",
    "a photo of a {c} {o}",
    "a drawing of a {c} {o}",
    "an image of a {c} {o}",
    "a {c} {o} on a {bg} background",
    "a pictogram of a {c} {o}",
    "an illustration of a {c} {o}",
]
PLAIN = ["a photo of a {o}", "a picture of a {o}", "a simple icon of a {o}", "a {o}", "a drawing of a {o}", "an image of a {o}", "a {o} on a {bg} background"]
TEMPLATES = COLOURED + PLAIN
PLURAL_COLOURED = ["{n} {c} {os}", "a photo of {n} {c} {os}", "a photo of a {c} {o} and {m}", "a {c} {o} and {m}"]
PLURAL_PLAIN = [
    "{n} {os} on a {bg} background",
    "a drawing of {n} {os}",
    "{n} {os}",
    "a photo of {n} {os}",
    # The singular noun on a picture of several, so "a photo of a knife" finds two knives too.
    "a photo of a {o} and {m}",
    "a {o} and {m}",
    "a drawing of a {o} and {m}",
]
MORE = {2: "another one", 3: "two more"}
# Half the captions leave the colour out, so that matching a caption takes the object's shape,
# not just its colour (which alone separates most pictograms in a batch).
COLOURLESS_SHARE = 0.5


def plural(word: str) -> str:
    if word in IRREGULAR:
        return IRREGULAR[word]
    head, _, last = word.rpartition(" ")
    last = IRREGULAR.get(last, last + ("es" if last.endswith(("s", "sh", "ch", "x")) else "s"))
    return f"{head} {last}".strip()


@dataclass(frozen=True)
class Caption:
    text: str
    colour: str | None  # the colour the text names; None when it names none
    background: str | None  # the background the text names; None when it names none


def describe(obj: str, colour: str | None, count: int, background: str, rng: random.Random) -> Caption:
    """One caption describing the picture (object synonym, colour, count, background), with what it
    states; ``colour`` None for a colour that has no name here."""
    word = rng.choice(SYNONYMS[obj])
    plain = rng.random() < COLOURLESS_SHARE or colour is None
    if count == 1:
        template = rng.choice(PLAIN if plain else COLOURED)
    else:
        template = rng.choice(PLURAL_PLAIN if plain else PLURAL_COLOURED)
    text = template.format(n=COUNT_WORDS[count], c=colour, o=word, os=plural(word), m=MORE.get(count), bg=background)
    return Caption(_fix_articles(text), None if plain else colour, background if "{bg}" in template else None)


def caption(obj: str, colour: str | None, count: int, background: str, rng: random.Random) -> str:
    """The text of :func:`describe`."""
    return describe(obj, colour, count, background, rng).text


def class_prompt(obj: str) -> str:
    """The zero-shot classification prompt of a class."""
    return _fix_articles(f"a photo of a {obj}")


def class_prompts(obj: str) -> list[str]:
    """A class's zero-shot prompts, one per count a picture holds ("a photo of a knife", "a photo of
    two knives", "a photo of three knives"). The class is the object whatever the count, so it is
    classified by the mean of their embeddings: a prompt ensemble, as in the CLIP paper."""
    return [class_prompt(obj), *(f"a photo of {COUNT_WORDS[n]} {plural(obj)}" for n in (2, 3))]


def _fix_articles(text: str) -> str:
    words = text.split(" ")
    for i in range(len(words) - 1):
        if words[i] in ("a", "an"):
            words[i] = "an" if words[i + 1][:1] in "aeiou" else "a"
    return " ".join(words)
