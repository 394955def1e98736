from __future__ import annotations

import random

import numpy as np
import pytest

from moderator.pictograms import BACKGROUNDS, COLOURS, HELD_OUT_COMBOS, OBJECTS, caption, class_prompt, generate
from moderator.pictograms.captions import SYNONYMS, describe, plural
from moderator.pictograms.dataset import (
    BACKGROUND_CONTRAST,
    CATEGORIES,
    HELD_OUT_RGB_MARGIN,
    MODERATED,
    NAMED_RADIUS,
    Sample,
    caption_facts,
    captions_fit,
    free_colour_allowed,
    nearest_colour,
    random_parts,
)
from moderator.pictograms.draw import distance


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


def test_training_draws_free_colours_that_keep_away_from_held_out_combinations():
    train = generate(600, "train", 3)
    free = [s for s in train if s.rgb != COLOURS[s.colour]]
    assert 0.35 < len(free) / len(train) < 0.65  # about half, the rest in palette colours
    assert len({s.rgb for s in free}) > 0.9 * len(free)  # continuous, not a bigger palette
    for s in free:
        assert s.colour == nearest_colour(s.rgb)
        for obj, held in HELD_OUT_COMBOS:
            if obj == s.obj:
                assert distance(s.rgb, COLOURS[held]) >= HELD_OUT_RGB_MARGIN, (s.obj, s.rgb, held)
    # Far from every palette colour, a colour is not named: the caption leaves it out.
    unnamed = [s for s in free if distance(s.rgb, COLOURS[s.colour]) > NAMED_RADIUS]
    assert unnamed
    for s in unnamed:
        words = s.caption.replace(f"on a {s.background} background", "").split()
        assert not set(words) & set(COLOURS), s.caption
    # Evaluation splits draw palette colours only.
    assert all(s.rgb == COLOURS[s.colour] for s in generate(200, "test", 3) + generate(100, "unseen", 3))


def test_free_colour_rule_refuses_the_held_out_colour_and_its_hue():
    assert not free_colour_allowed("sun", COLOURS["green"])  # (sun, green) is held out
    assert not free_colour_allowed("sun", (120, 230, 140))  # light green: far in RGB, same hue
    assert not free_colour_allowed("sun", (10, 10, 60))  # near black, sun's other held-out colour
    assert free_colour_allowed("sun", (230, 90, 200))  # a magenta nowhere near either
    assert free_colour_allowed("knife", COLOURS["green"])  # green knives are seen in training


def test_objects_stand_out_from_their_background():
    for s in generate(600, "train", 5) + generate(300, "unseen", 5):
        assert distance(s.rgb, BACKGROUNDS[s.background]) >= BACKGROUND_CONTRAST, (s.rgb, s.background)


def test_a_colour_without_a_name_leaves_the_caption_colourless():
    rng = random.Random(0)
    for _ in range(50):
        text = caption("ball", None, rng.choice((1, 2, 3)), "beige", rng)
        assert not set(text.split()) & set(COLOURS), text


@pytest.mark.parametrize("obj", list(OBJECTS))
def test_every_class_draws_and_its_captions_name_it(obj):
    rng = random.Random(obj)
    for count in (1, 2, 3):
        text = caption(obj, "red", count, "white", rng)
        assert any(word in text for word in [*SYNONYMS[obj], *(plural(w) for w in SYNONYMS[obj])]), text
        if count > 1:
            assert ("two" if count == 2 else "three") in text or ("another" if count == 2 else "two more") in text
    assert class_prompt(obj).startswith(("a photo of a ", "a photo of an "))


def test_articles_and_plurals():
    assert caption("flame", "orange", 1, "white", random.Random(3)).count(" a orange") == 0
    assert plural("knife") == "knives" and plural("kitchen knife") == "kitchen knives" and plural("glass") == "glasses"
    assert class_prompt("ice") == "a photo of an ice"


def test_categories_cover_every_moderated_object_once():
    covered = [o for objs in CATEGORIES.values() for o in objs]
    assert sorted(covered) == sorted(MODERATED)


def test_a_caption_records_what_it_states():
    rng = random.Random(4)
    for _ in range(300):
        obj, colour, count = rng.choice(list(OBJECTS)), rng.choice([*COLOURS, None]), rng.choice((1, 2, 3))
        said = describe(obj, colour, count, "light blue", rng)
        assert (said.background == "light blue") == ("on a light blue background" in said.text), said
        words = said.text.replace("on a light blue background", "").split()
        assert said.colour in (None, colour)
        assert bool(set(words) & set(COLOURS)) == (said.colour is not None), said
    # Samples carry it; a generated sample's own caption always describes it.
    samples = generate(300, "train", 8)
    assert {s.caption_colour is None for s in samples} == {True, False}
    assert captions_fit(caption_facts(samples), caption_facts(samples)).diagonal().all()


def _sample(obj, rgb, count, background, caption_colour=None, caption_background=None):
    return Sample(obj, nearest_colour(rgb), rgb, count, background, "", caption_colour, caption_background, b"")


def test_captions_fit_the_pictures_they_truly_describe():
    red, green = COLOURS["red"], COLOURS["green"]
    teal = (20, 200, 200)  # a free colour no palette name reaches
    assert distance(teal, COLOURS[nearest_colour(teal)]) > NAMED_RADIUS
    pictures = [
        _sample("flame", red, 1, "white"),
        _sample("flame", green, 1, "dark"),
        _sample("flame", teal, 1, "white"),
        _sample("flame", red, 2, "white"),
        _sample("knife", red, 1, "white"),
    ]
    captions = [
        _sample("flame", red, 1, "beige"),  # "a blaze": any single flame
        _sample("flame", red, 1, "beige", caption_colour="red"),  # "a red flame"
        _sample("flame", red, 1, "beige", caption_background="white"),  # "a flame on a white background"
        _sample("flame", red, 2, "beige"),
    ]  # "two flames"
    fit = captions_fit(caption_facts(pictures), caption_facts(captions)).tolist()
    assert fit == [
        [True, True, True, False],  # red flame on white
        [True, False, False, False],  # green flame on dark
        [True, False, True, False],  # teal flame on white: no colour name fits it
        [False, False, False, True],  # two red flames
        [False, False, False, False],  # a knife
    ]


@pytest.mark.parametrize("obj", list(OBJECTS))
def test_every_part_with_a_colour_of_its_own_can_be_recoloured(obj):
    """Training recolours parts (PART_COLOUR_SHARE): each object draws only its main colour and
    what ``parts`` returns, so no usual part colour is left to stand in for the object."""
    from PIL import Image, ImageDraw

    main, sentinel = (214, 40, 40), (0, 255, 255)
    layer = Image.new("RGBA", (120, 120), (0, 0, 0, 0))
    OBJECTS[obj](ImageDraw.Draw(layer), 60, 60, 50, main, lambda usual: sentinel)
    drawn = {rgba[:3] for _, rgba in layer.getcolors(1 << 16) if rgba[3]}
    assert main in drawn and drawn <= {main, sentinel}, drawn


def test_random_parts_are_one_colour_per_usual_colour_and_only_in_training(monkeypatch):
    parts = random_parts(random.Random(1))
    assert parts((110, 70, 40)) == parts((110, 70, 40)) != parts((20, 20, 20))
    from moderator.pictograms import dataset

    def jpegs(share: float, split: str) -> list[bytes]:
        monkeypatch.setattr(dataset, "PART_COLOUR_SHARE", share)
        return [s.jpeg for s in generate(20, split, 4)]

    assert jpegs(0.0, "train") != jpegs(1.0, "train")
    for split in ("test", "unseen", "calibration"):
        assert jpegs(0.0, split) == jpegs(1.0, split), split


def test_pictures_of_nothing_are_one_class_apart_from_every_object():
    """Training's open-set pictures (moderator.pictograms.nothing): every caption of nothing fits
    every picture of nothing and no pictogram, and no pictogram caption fits them."""
    from moderator.pictograms.nothing import CAPTIONS, FAMILIES, GENERIC, NOTHING

    samples = generate(600, "train", 9, nothing_share=0.3)
    nothing = [i for i, s in enumerate(samples) if s.obj == NOTHING]
    objects = [i for i, s in enumerate(samples) if s.obj != NOTHING]
    assert 120 < len(nothing) < 240 and {samples[i].background for i in nothing} == set(FAMILIES)
    assert all(samples[i].caption in CAPTIONS[samples[i].background] + GENERIC for i in nothing)
    assert all(samples[i].named_colour is None and samples[i].count == 0 for i in nothing)
    fit = captions_fit(caption_facts(samples), caption_facts(samples))
    assert fit[np.ix_(nothing, nothing)].all()
    assert not fit[np.ix_(nothing, objects)].any() and not fit[np.ix_(objects, nothing)].any()


def test_without_pictures_of_nothing_the_pictograms_of_a_seed_are_unchanged():
    """nothing_share=0 draws byte for byte what examples/generate.py checked in before pictures of
    nothing existed: examples/ and every test split stay put."""
    from tests.conftest import REPO

    for i, s in enumerate(generate(12, "test", seed=2026, nothing_share=0.0)):
        assert (REPO / "examples" / "images" / f"test-{i:03d}-{s.colour}-{s.obj}.jpg").read_bytes() == s.jpeg
    assert all(s.obj != "nothing" for s in generate(200, "train", 4))
