from __future__ import annotations

import random

import pytest

from moderator.pictograms import HELD_OUT_COMBOS, OBJECTS, caption, class_prompt, generate
from moderator.pictograms.captions import SYNONYMS, plural
from moderator.pictograms.dataset import CATEGORIES, MODERATED


def test_generation_is_deterministic_per_seed_and_split():
    a, b = generate(5, "train", 1), generate(5, "train", 1)
    assert [s.jpeg for s in a] == [s.jpeg for s in b]
    assert [s.jpeg for s in generate(5, "train", 2)] != [s.jpeg for s in a]
    assert [s.jpeg for s in generate(5, "test", 1)] != [s.jpeg for s in a]


def test_held_out_combinations_never_appear_in_training():
    train = generate(400, "train", 0)
    assert not {(s.obj, s.colour) for s in train} & HELD_OUT_COMBOS
    unseen = generate(100, "unseen", 0)
    assert {(s.obj, s.colour) for s in unseen} <= HELD_OUT_COMBOS
    assert len(HELD_OUT_COMBOS) == 2 * len(OBJECTS)


@pytest.mark.parametrize("obj", list(OBJECTS))
def test_every_class_draws_and_its_captions_name_it(obj):
    rng = random.Random(obj)
    for count in (1, 2, 3):
        text = caption(obj, "red", count, "white", rng)
        assert any(word in text for word in [*SYNONYMS[obj], *(plural(w) for w in SYNONYMS[obj])]), text
        if count > 1:
            assert ("two" if count == 2 else "three") in text
    assert class_prompt(obj).startswith(("a photo of a ", "a photo of an "))


def test_articles_and_plurals():
    assert caption("flame", "orange", 1, "white", random.Random(3)).count(" a orange") == 0
    assert plural("knife") == "knives" and plural("kitchen knife") == "kitchen knives" and plural("glass") == "glasses"
    assert class_prompt("ice") == "a photo of an ice"


def test_categories_cover_every_moderated_object_once():
    covered = [o for objs in CATEGORIES.values() for o in objs]
    assert sorted(covered) == sorted(MODERATED)
