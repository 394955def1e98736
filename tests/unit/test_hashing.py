"""Known content (issue: known content first): SHA-256 and PDQ hashes, deny and allow banks, the
order of the stages, the result cache, bank files and their errors, the PDQ index."""

from __future__ import annotations

import io
import os
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from moderator.errors import BankError
from moderator.hashing.bankfile import BankFileError, append_rows, read_bank, write_bank
from moderator.hashing.banks import load_banks
from moderator.hashing.cache import ResultCache
from moderator.hashing.compute import TURN_WORDS, TURNS, PdqHash, content_box, hamming, pdq_of
from moderator.hashing.index import MAX_RADIUS, PdqIndex
from moderator.media.decode import DecodeLimits
from moderator.pictograms.draw import render
from moderator.processing import KnownContentOptions, Processor
from tests.conftest import REPO
from tests.scenes import PILLOW_TURNS, encode, scene, variants

DEFAULT_MODEL = REPO / "models" / "default"
DEFAULT_POLICY = REPO / "policies" / "default.yaml"


def picture(obj: str, seed: int, colour: str = "black") -> Image.Image:
    return render(obj, colour, 1, "beige", random.Random(seed), (320, 240))


def bank(directory, name: str, kind: str, images: dict[str, Image.Image | bytes], hash_type: str = "pdq", **props) -> None:
    """A bank of the images' hashes (PDQ of the pixels, or SHA-256 of the encoded bytes)."""
    import hashlib

    rows = []
    for note, img in images.items():
        if hash_type == "pdq":
            value = pdq_of(img if isinstance(img, Image.Image) else Image.open(io.BytesIO(img)).convert("RGB")).hex
        else:
            value = hashlib.sha256(img).hexdigest()
        rows.append({"hash_type": hash_type, "hash": value, "note": note})
    write_bank(directory / f"{name}.csv", kind, rows, **props)


# --- near-duplicates and false matches ------------------------------------------------------------


def test_near_duplicates_of_a_banked_image_match_and_report_their_distance():
    distances: dict[str, list[int]] = {}
    for seed in range(12):
        original = scene(seed)
        h = pdq_of(original)
        assert h.quality >= 50, "photo-like scenes have PDQ quality"
        for name, variant in variants(original).items():
            distances.setdefault(name, []).append(hamming(h.bits, pdq_of(variant).bits))
    print("\n[hashing] PDQ distance of near-duplicates, max over 12 scenes (threshold 31):")
    for name, ds in distances.items():
        print(f"  {name}: max {max(ds)}, mean {np.mean(ds):.1f}")
        assert max(ds) <= 31, f"{name} must match at the default threshold: {ds}"


def test_unrelated_generated_images_do_not_match(tmp_path):
    banked = [pdq_of(scene(100_000 + i, (160, 120))) for i in range(500)]
    write_bank(tmp_path / "scenes.csv", "deny", [{"hash_type": "pdq", "hash": h.hex} for h in banked])
    banks = load_banks(tmp_path, 10_000)
    probes = [pdq_of(scene(200_000 + i, (160, 120)), turns=True) for i in range(2500)]
    matched = sum(bool(banks.match_pdq(p)) for p in probes)
    # hashing.pdq_turns looks every frame up eight ways: eight times the chances of a false match
    turned = sum(bool(banks.match_turns(p)) for p in probes)
    nearest = min(min(hamming(p.bits, b.bits) for b in banked[:100]) for p in probes[:500])
    nearest_turned = min(min(hamming(t, b.bits) for b in banked[:100] for t in p.turns) for p in probes[:100])
    print(
        f"\n[hashing] false matches: {matched} of {len(probes)} unrelated images against a bank of {len(banked)} "
        f"({len(probes) * len(banked)} pairs); nearest unrelated pair seen: {nearest} bits; turned: {turned} false matches "
        f"in {len(probes) * len(banked) * 7} more pairs, nearest seen {nearest_turned} bits"
    )
    assert matched == 0 and turned == 0


def test_each_turn_is_the_hash_of_the_frame_turned_that_way():
    # The names in verdicts (match.turn) say which way the frame was turned: checked against
    # hashing the turned frame itself, on photo-like scenes and pictograms, wide and tall.
    assert tuple(PILLOW_TURNS) == TURNS
    worst: dict[str, int] = {}
    for seed, img in enumerate([scene(s, size) for s, size in ((1, (640, 480)), (2, (300, 500)), (3, (1024, 768)))] + [picture("knife", 4)]):
        h = pdq_of(img, turns=True)
        assert h.bits == pdq_of(img).bits and len(h.turns) == 7
        for name in TURNS:
            actual = pdq_of(img.transpose(PILLOW_TURNS[name])).bits
            distances = {n: hamming(actual, t) for n, t in zip(TURNS, h.turns)}
            assert min(distances, key=distances.get) == name, (seed, name, distances)
            worst[name] = max(worst.get(name, 0), distances[name])
            assert hamming(actual, h.bits) > 64, "turned, the frame's own hash is far: the reason for turns"
    print(f"\n[hashing] distance of each turn's hash to the hash of the frame turned that way, worst of 4: {worst}")
    assert max(worst.values()) <= 31


@pytest.mark.parametrize("name", TURNS)
def test_a_mirrored_or_turned_repost_of_banked_content_is_blocked(tmp_path, default_processor, name):
    banked = scene(11, (480, 320))
    bank(tmp_path, "known-bad", "deny", {"case 9": banked}, category="weapons")
    banks = load_banks(tmp_path, 100)
    repost = encode(banked.transpose(PILLOW_TURNS[name]), "JPEG", quality=80)
    outcome, encoded = decide(default_processor(banks), repost)
    assert outcome.decision == "block" and not encoded, outcome.reasons
    m = outcome.known.match
    back = {"rotate90": "rotate270", "rotate270": "rotate90"}.get(name, name)  # what turns the repost back into the banked picture
    assert (m.bank, m.turn, m.note) == ("known-bad", back, "case 9") and m.distance <= 31
    assert f"the frame {TURN_WORDS[back]}" in outcome.known.reason
    outcome, _ = decide(default_processor(banks, turns=False), repost)
    assert outcome.known is None, "without pdq_turns the repost is the classifier's alone (as before)"


def test_a_uniform_border_is_found_to_the_pixel_and_nothing_else_is_taken_for_one():
    img = scene(13, (400, 300))
    for border, fill in (((20, 15), "black"), ((0, 40), "white"), ((33, 0), (40, 120, 200)), ((5, 3), "black")):
        framed = ImageOps.expand(img, border=border, fill=fill)
        px = np.asarray(Image.open(io.BytesIO(encode(framed, "JPEG", quality=80))).convert("RGB"))
        top, bottom, left, right = content_box(px)
        # JPEG rings along the border's inner edge: a pixel or two of it may stay or go
        assert abs(top - border[1]) <= 2 and abs(left - border[0]) <= 2, (border, content_box(px))
        assert abs(px.shape[0] - bottom - border[1]) <= 2 and abs(px.shape[1] - right - border[0]) <= 2
    assert content_box(np.asarray(img)) is None, "a photo-like picture has no border"
    assert content_box(np.asarray(ImageOps.expand(img, border=1, fill="black"))) is None, "under 1 %: PDQ keeps within its threshold"
    lone = Image.new("RGB", (400, 300), "white")
    lone.paste(img.resize((60, 40)), (170, 130))
    assert content_box(np.asarray(lone)) is None, "mostly one colour: that is for the quality floor"
    for size in ((1, 500), (500, 1), (8, 8), (9, 300)):
        assert content_box(np.zeros((*size, 3), np.uint8)) is None


BORDERS = {  # (a side's border in width, in height; fill); a banked scene reposted inside it
    "2% black": ((10, 6), "black", None),
    "10% white": ((48, 32), "white", None),
    "letterbox": ((0, 60), (20, 20, 20), None),
    "15% coloured, mirrored": ((72, 48), (40, 120, 200), "mirror"),
}


@pytest.mark.parametrize("name", BORDERS)
def test_a_repost_inside_an_added_border_is_blocked(tmp_path, default_processor, name):
    border, fill, turn = BORDERS[name]
    banked = scene(21, (480, 320))
    bank(tmp_path, "known-bad", "deny", {"case 21": banked})
    banks = load_banks(tmp_path, 100)
    picture = banked.transpose(PILLOW_TURNS[turn]) if turn else banked
    repost = encode(ImageOps.expand(picture, border=border, fill=fill), "JPEG", quality=80)
    outcome, encoded = decide(default_processor(banks), repost)
    assert outcome.decision == "block" and not encoded, outcome.reasons
    m = outcome.known.match
    assert m.trimmed and m.turn == turn and m.distance <= 31, m
    assert "the frame without its border" in outcome.known.reason
    if border[0] + border[1] >= 40:  # thin borders may stay within 31 of the banked hash even uncut
        outcome, _ = decide(default_processor(banks, trim=False), repost)
        assert outcome.known is None, "without pdq_trim_borders the repost is the classifier's alone (as before)"


def test_a_border_wide_enough_to_flatten_the_whole_frame_does_not_hide_whats_inside(tmp_path, default_processor):
    banked = scene(3, (200, 150))
    bank(tmp_path, "known-bad", "deny", {"case 3": banked})
    framed = ImageOps.expand(banked, border=(280, 210), fill="black")
    whole = pdq_of(framed, trim=True)
    assert whole.quality < 50 <= whole.trimmed.quality, "the whole frame is under the quality floor, what is inside is not"
    outcome, _ = decide(default_processor(load_banks(tmp_path, 100)), encode(framed, "PNG"))
    assert outcome.decision == "block" and outcome.known.match.trimmed and outcome.known.match.note == "case 3"


def test_a_bordered_copy_of_an_allowed_picture_is_never_allowed_by_it(tmp_path, default_processor):
    knife = picture("knife", 14)
    bank(tmp_path, "cleared", "allow", {"k": knife}, overrides="block")
    processor = default_processor(load_banks(tmp_path, 100))
    assert decide(processor, encode(knife, "PNG"))[0].known.kind == "allow"
    framed = ImageOps.expand(knife, border=(40, 30), fill="black")
    assert hamming(pdq_of(framed, trim=True).trimmed.bits, pdq_of(knife).bits) <= 31, "inside its border it is the allowed picture"
    outcome, _ = decide(processor, encode(framed, "PNG"))
    assert outcome.known is None, "allow banks match the frame as it is only: the classifier decides"


def test_unrelated_pictures_inside_borders_do_not_match(tmp_path):
    banked = [pdq_of(scene(300_000 + i, (320, 240))) for i in range(300)]
    write_bank(tmp_path / "scenes.csv", "deny", [{"hash_type": "pdq", "hash": h.hex} for h in banked])
    banks = load_banks(tmp_path, 10_000)
    probes = [pdq_of(ImageOps.expand(scene(400_000 + i, (320, 240)), border=(16 + i % 40, 12), fill="black"), turns=True, trim=True) for i in range(300)]
    assert all(p.trimmed is not None for p in probes)
    assert not any(banks.match_pdq(p.trimmed) or banks.match_turns(p.trimmed) for p in probes)


def test_a_turned_copy_of_an_allowed_picture_is_never_allowed_by_it(tmp_path, default_processor):
    knife = picture("knife", 12)
    bank(tmp_path, "cleared", "allow", {"k": knife}, overrides="block")
    processor = default_processor(load_banks(tmp_path, 100))
    outcome, _ = decide(processor, encode(knife, "PNG"))
    assert outcome.decision == "allow" and outcome.known.kind == "allow" and outcome.known.match.turn is None
    for name in ("mirror", "rotate180"):
        outcome, _ = decide(processor, encode(knife.transpose(PILLOW_TURNS[name]), "PNG"))
        assert outcome.known is None and outcome.decision == "block", f"{name}: allow banks match the frame as it is only"


def test_flat_images_never_match_by_pdq(tmp_path, default_processor):
    flats = {f"solid {c}": Image.new("RGB", (320, 240), c) for c in ("white", "black", (128, 128, 128), (200, 30, 30))}
    rng = np.random.default_rng(0)
    flats["faint noise"] = Image.fromarray((128 + rng.normal(0, 2, (240, 320, 3))).clip(0, 255).astype(np.uint8))
    flats["gradient"] = Image.fromarray(np.tile(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], (240, 1, 3)))
    for img in flats.values():
        assert pdq_of(img).quality < 50
    bank(tmp_path, "flat", "deny", flats)  # someone banked flat images: their hashes match each other's easily
    processor = default_processor(load_banks(tmp_path, 100))
    for name, img in flats.items():
        prepared = processor.prepare(encode(img, "PNG"))
        assert prepared.known is None, f"{name}: a low-quality PDQ hash must never match"


# --- the order of stages: docs/policies.md#known-content --------------------------------------------


@pytest.fixture(scope="module")
def default_processor():
    from moderator.encoders.onnx import OnnxEncoder
    from moderator.policy import compile_policy, load_policy

    encoder = OnnxEncoder(DEFAULT_MODEL)
    policy = compile_policy(load_policy(DEFAULT_POLICY), encoder)

    def make(banks=None, cache=None, **options):
        return Processor(encoder, policy, DecodeLimits(), banks=banks, cache=cache, known=KnownContentOptions(**options))

    yield make
    encoder.close()


def decide(processor, data: bytes):
    """The outcome of one image, as the stream's scoring loop makes it; and whether it was encoded."""
    prepared = processor.prepare(data)
    assert prepared.error is None, prepared.error
    outcome = processor.decided(prepared)
    if outcome is not None:
        return outcome, False
    result = processor.score_prepared([prepared])
    return processor.outcomes([prepared], result)[0], True


def test_an_allow_bank_overrides_a_classifier_block(tmp_path, default_processor):
    knife = picture("knife", 1)
    data = encode(knife, "PNG")
    plain = default_processor()
    outcome, _ = decide(plain, data)
    assert outcome.decision == "block" and outcome.known is None
    bank(tmp_path, "reviewed-ok", "allow", {"knife drawing cleared by review": knife}, overrides="block")
    outcome, encoded = decide(default_processor(load_banks(tmp_path, 100)), encode(knife, "JPEG", quality=70))
    assert encoded, "an allow match still runs the classifier, so the verdict records what it said"
    assert outcome.decision == "allow" and outcome.known.kind == "allow"
    assert outcome.classifier.decision == "block"
    assert outcome.reasons[0].startswith("hash_allow: allowed by bank 'reviewed-ok' (pdq distance")
    assert "the classifier's block is overridden" in outcome.reasons[0]
    (tmp_path / "reviewed-ok.csv").unlink()
    bank(tmp_path, "exact-ok", "allow", {"these bytes": data}, hash_type="sha256")
    outcome, _ = decide(default_processor(load_banks(tmp_path, 100)), data)
    assert outcome.decision == "allow" and outcome.known.match.hash_type == "sha256", "an exact allow overrides a block"


def test_a_near_copy_of_an_allowed_picture_cannot_clear_a_block_by_default(tmp_path, default_processor):
    """The attack: take a picture the allow bank knows, paste what should be blocked into it. PDQ
    can stay within its threshold (a pasted pictogram moved it by as little as 8 bits), so by
    default a PDQ allow match overrides at most a review."""
    allowed = scene(21)
    bank(tmp_path, "fp", "allow", {"reviewed": allowed, "knife drawing": picture("knife", 22)})
    processor = default_processor(load_banks(tmp_path, 100))
    outcome, _ = decide(processor, encode(picture("knife", 22), "JPEG", quality=70))
    assert outcome.known is not None and outcome.known.kind == "allow" and outcome.known.overrides == "review"
    assert outcome.classifier.decision == "block" and outcome.decision == "block"
    assert outcome.reasons[-1].startswith("hash_allow: allowed by bank 'fp' (pdq distance")
    assert outcome.reasons[-1].endswith("does not override a block (the bank's overrides: review)")
    # A picture the classifier only sends to review (a pink pistol on beige: faint, so PDQ quality
    # 49, under the default floor; the floor is lowered here to show what an allow may override).
    faint = picture("pistol", 2, "pink")
    assert decide(default_processor(), encode(faint, "PNG"))[0].decision == "review"
    bank(tmp_path, "fp2", "allow", {"reviewed": faint})
    outcome, _ = decide(default_processor(load_banks(tmp_path, 100), quality_floor=30), encode(faint, "JPEG", quality=80))
    assert outcome.classifier.decision == "review" and outcome.decision == "allow", "a near copy clears a review"


def test_a_deny_bank_blocks_a_classifier_allow_without_encoding(tmp_path, default_processor):
    cup = picture("cup", 2, "brown")
    outcome, _ = decide(default_processor(), encode(cup, "PNG"))
    assert outcome.decision == "allow"
    bank(tmp_path, "known-bad", "deny", {"case 17": cup}, category="weapons")
    resized = cup.resize((160, 120))
    outcome, encoded = decide(default_processor(load_banks(tmp_path, 100)), encode(resized, "JPEG", quality=40))
    assert not encoded, "a deny match that blocks decides without the encoder"
    assert outcome.decision == "block" and outcome.classifier is None
    m = outcome.known.match
    assert (m.bank, m.kind, m.hash_type, m.category, m.action, m.note) == ("known-bad", "deny", "pdq", "weapons", "block", "case 17")
    assert 0 < m.distance <= 31 and m.line == 5, "line 5 of the bank file: header comment, kind, category, columns, row"


def test_a_review_deny_match_never_lowers_a_classifier_block(tmp_path, default_processor):
    knife = picture("knife", 3)
    bank(tmp_path, "suspect", "deny", {"k": knife}, action="review")
    outcome, encoded = decide(default_processor(load_banks(tmp_path, 100)), encode(knife, "PNG"))
    assert encoded and outcome.classifier.decision == "block" and outcome.decision == "block"
    assert outcome.reasons[0].startswith("hash_match: known_content in bank 'suspect'")
    cup = picture("cup", 4, "brown")
    bank(tmp_path, "suspect", "deny", {"c": cup}, action="review")
    outcome, _ = decide(default_processor(load_banks(tmp_path, 100)), encode(cup, "PNG"))
    assert outcome.classifier.decision == "allow" and outcome.decision == "review"


def test_exact_beats_near_and_deny_beats_allow(tmp_path, default_processor):
    cup = picture("cup", 5, "brown")
    data = encode(cup, "PNG")
    bank(tmp_path, "near-bad", "deny", {"c": cup})
    bank(tmp_path, "exact-ok", "allow", {"c": data}, hash_type="sha256")
    outcome, _ = decide(default_processor(load_banks(tmp_path, 100)), data)
    assert outcome.decision == "allow" and outcome.known.match.bank == "exact-ok", "exact allow beats a near deny"
    other, _ = decide(default_processor(load_banks(tmp_path, 100)), encode(cup, "JPEG", quality=80))
    assert other.decision == "block" and other.known.match.bank == "near-bad", "other bytes of the picture: near deny"
    bank(tmp_path, "exact-bad", "deny", {"c": data}, hash_type="sha256")
    outcome, encoded = decide(default_processor(load_banks(tmp_path, 100)), data)
    assert outcome.decision == "block" and outcome.known.match.bank == "exact-bad" and not encoded
    assert outcome.hashes.pdq == (), "exact deny: the bytes are not even decoded"
    bank(tmp_path, "near-ok", "allow", {"c": cup})
    (tmp_path / "exact-bad.csv").unlink()
    (tmp_path / "exact-ok.csv").unlink()
    outcome, _ = decide(default_processor(load_banks(tmp_path, 100)), data)
    assert outcome.decision == "block" and outcome.known.kind == "deny", "near deny beats near allow"


def test_an_allowed_first_frame_does_not_carry_an_animation(tmp_path, default_processor):
    cup, knife = picture("cup", 6, "brown"), picture("knife", 7)
    bank(tmp_path, "ok", "allow", {"cup": cup})
    processor = default_processor(load_banks(tmp_path, 100))
    buf = io.BytesIO()
    cup.save(buf, "GIF", save_all=True, append_images=[knife, cup.copy()], duration=500)
    outcome, encoded = decide(processor, buf.getvalue())
    assert encoded and outcome.known is None and outcome.decision == "block", outcome.reasons
    buf = io.BytesIO()
    cup.save(buf, "GIF", save_all=True, append_images=[cup.transpose(Image.Transpose.FLIP_LEFT_RIGHT)], duration=500)
    outcome, _ = decide(processor, buf.getvalue())
    assert outcome.known is None, "a frame that is not in the allow bank keeps the classifier in charge"


def test_a_denied_frame_anywhere_blocks_an_animation(tmp_path, default_processor):
    cup, bad = picture("cup", 8, "brown"), scene(9, (320, 240))
    bank(tmp_path, "bad", "deny", {"bad": bad})
    buf = io.BytesIO()
    cup.save(buf, "GIF", save_all=True, append_images=[cup.copy(), bad, cup.copy()], duration=[1000, 1000, 20, 1000])
    outcome, encoded = decide(default_processor(load_banks(tmp_path, 100)), buf.getvalue())
    assert not encoded and outcome.decision == "block"
    assert outcome.frames.indices[outcome.known.match.frame] == 1, "Pillow wrote cup, bad, cup (repeats merged): file frame 1"


# --- the result cache ----------------------------------------------------------------------------


def test_a_repost_is_decided_from_the_cache_and_a_reload_invalidates_it(tmp_path, default_processor):
    from moderator.policy import compile_policy, load_policy

    processor = default_processor(cache=ResultCache(100))
    data = encode(picture("knife", 10), "PNG")
    first, encoded = decide(processor, data)
    assert encoded and processor.prepare(data).cached is first
    second, encoded = decide(processor, data)
    assert not encoded and second is first
    edited = tmp_path / "policy.yaml"
    edited.write_text(DEFAULT_POLICY.read_text() + "\n# edited\n")
    processor.set_policy("primary", compile_policy(load_policy(edited), processor.encoder))
    assert processor.prepare(data).cached is None, "another policy version: not the cached result"
    bank(tmp_path, "b", "deny", {"x": picture("cup", 11)})
    decide(processor, data)
    processor.set_banks(load_banks(tmp_path, 100))
    assert processor.prepare(data).cached is None, "other banks: not the cached result"


def test_the_cache_is_bounded():
    cache = ResultCache(3)
    for i in range(10):
        cache.put(i, str(i))
    cache.get(7)
    cache.put(10, "10")
    assert len(cache) == 3 and cache.get(7) == "7" and cache.get(8) is None and cache.get(9) == "9"
    off = ResultCache(0)
    off.put(1, "x")
    assert off.get(1) is None


# --- bank files ----------------------------------------------------------------------------------

GOOD = "ab" * 32


def write(tmp_path, text: str, name: str = "b.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, where, message",
    [
        ("hash_type,hash\npdq," + GOOD + "\n", ":1:", "needs '# kind: deny' or '# kind: allow'"),
        ("# kind: maybe\nhash_type,hash\n", ":1:", "not 'maybe'"),
        ("# kind: deny\n# pdq_treshold: 20\nhash_type,hash\n", ":2:", "did you mean 'pdq_threshold'"),
        ("# kind: deny\n# pdq_threshold: 300\nhash_type,hash\n", ":2:", "0 to 64"),
        ("# kind: deny\nhash_type,digest\n", ":2:", "unknown columns 'digest'"),
        ("# kind: deny\nhash_type,hash\npdq,xyz\n", ":3:", "64 hexadecimal digits"),
        ("# kind: deny\nhash_type,hash\nmd5," + GOOD + "\n", ":3:", "sha256 or pdq"),
        ("# kind: deny\nhash_type,hash,action\n\npdq," + GOOD + ",allow\n", ":4:", "deny bank's action is block or review"),
        ("# kind: allow\nhash_type,hash,action\npdq," + GOOD + ",block\n", ":3:", "allow bank's action is allow"),
        ("# kind: deny\nhash_type,hash,category\npdq," + GOOD + ",Weapons!\n", ":3:", "lower-case letters"),
        ("# kind: deny\nhash_type,hash,added\npdq," + GOOD + ",yesterday\n", ":3:", "ISO 8601"),
        ("# kind: deny\nhash_type,hash\npdq," + GOOD + ",extra\n", ":3:", "3 fields, the header names 2"),
        ("# kind: deny\nhash_type,hash,note\npdq," + GOOD + "," + "n" * 2000 + "\n", ":3:", "over 1000 characters"),
        ("# kind: deny\n# description: all good\n", "b.csv:", "no header row"),
        ("# kind: deny\n# overrides: block\nhash_type,hash\n", ":2:", "overrides is a property of allow banks"),
        ("# kind: allow\n# overrides: everything\nhash_type,hash\n", ":2:", "overrides is review or block"),
        # A quote left open on the last line once read as a note ending there; rows appended
        # after it then fell into that note.
        ("# kind: deny\nhash_type,hash,note\npdq," + GOOD + ',"unclosed', ":3:", "an unclosed quote"),
        ("# kind: deny\nhash_type,hash,note\npdq," + GOOD + ',"case "1""\n', ":3:", "not CSV: ',' expected after '\"'"),
    ],
)
def test_bank_file_problems_are_located(tmp_path, text, where, message):
    with pytest.raises(BankFileError) as err:
        read_bank(write(tmp_path, text))
    assert where in str(err.value) and message in str(err.value), str(err.value)


def test_a_quote_in_a_comment_or_a_row_cannot_swallow_the_rows_after_it(tmp_path):
    text = f'# kind: deny\n# note, "unclosed\nhash_type,hash,note\npdq,{GOOD}\n# another, "one\nsha256,{"cd" * 32}\n'
    rows = read_bank(write(tmp_path, text))
    assert rows.hash_types == ["pdq", "sha256"] and rows.lines == [4, 6]
    with pytest.raises(BankFileError) as err:
        read_bank(write(tmp_path, f'# kind: deny\nhash_type,hash,note\npdq,{GOOD},"unclosed\npdq,{"ef" * 32},x\n'))
    assert ":3: a field runs over several lines" in str(err.value)


def test_rows_after_a_malformed_one_are_still_checked(tmp_path):
    text = f'# kind: deny\nhash_type,hash,note\npdq,{GOOD},"a"b\npdq,xyz\npdq,{GOOD},"open\n'
    with pytest.raises(BankFileError) as err:
        read_bank(write(tmp_path, text))
    assert [p.split(":", 2)[1] for p in err.value.problems] == ["3", "4", "5"], err.value.problems


def test_every_problem_of_a_bank_is_listed_with_its_line(tmp_path):
    rows = "\n".join(["pdq,zz"] * 3 + [f"pdq,{GOOD}"] + ["sha256,00"] * 2)
    with pytest.raises(BankFileError) as err:
        read_bank(write(tmp_path, f"# kind: deny\nhash_type,hash\n{rows}\n"))
    assert [p.split(":")[1] for p in err.value.problems] == ["3", "4", "5", "7", "8"]


def test_a_good_bank_reads_with_defaults_comments_and_quoted_notes(tmp_path):
    path = write(
        tmp_path,
        f"""# moderator hash bank
# kind: deny
# a free comment: with a colon
# category: weapons
# pdq_threshold: 20
hash_type,hash,category,action,note,added
pdq,{GOOD.upper()},,,"case 1, reviewed",2026-11-30
# a comment between rows
sha256,{"cd" * 32},drugs,review,,2026-11-30T12:00:00Z
""",
    )
    rows = read_bank(path)
    assert (rows.kind, rows.pdq_threshold, len(rows)) == ("deny", 20, 2)
    assert rows.categories == ["weapons", "drugs"] and rows.actions == ["block", "review"]
    assert rows.notes[0] == "case 1, reviewed" and rows.lines == [7, 9] and rows.hashes[0] == bytes.fromhex(GOOD)


@pytest.mark.parametrize(
    "header",
    ["hash_type,hash,note", "   \nhash_type,hash,note", " Note , HASH , Hash_Type ", "\t\nhash_type,hash,action,category,note"],
    ids=["plain", "blank-line-first", "reordered-and-cased", "tab-line-first"],
)
def test_rows_added_to_a_bank_are_all_in_it_whatever_its_header_looks_like(tmp_path, header):
    # A whitespace-only line before the header row was once taken for the header: the added rows
    # were written empty and "1 hashes added" was reported with nothing added.
    path = write(tmp_path, f"# kind: deny\n{header}\n")
    before = path.read_bytes()
    new = [{"hash_type": "sha256", "hash": f"{i:064x}", "note": f"case {i}", "added": "2026-12-03"} for i in range(1, 4)]
    rows = append_rows(path, new, kind="deny")
    again = read_bank(path)
    assert len(rows) == len(again) == 3 and again.hashes == [i.to_bytes(32, "big") for i in range(1, 4)]
    assert again.notes == ["case 1", "case 2", "case 3"] and again.added == ["", "", ""]  # no added column: left out
    assert path.read_bytes().startswith(before)


def test_rows_whose_category_or_action_a_bank_has_no_column_for_are_refused(tmp_path):
    path = write(tmp_path, f"# kind: deny\nhash_type,hash\nsha256,{'cd' * 32}\n")
    before = path.read_bytes()
    for column in ("action", "category"):
        row = {"hash_type": "sha256", "hash": "ab" * 32, "action": "", "category": ""} | {column: "review" if column == "action" else "drugs"}
        with pytest.raises(BankFileError, match=f"no {column} column"):
            append_rows(path, [row])
        assert path.read_bytes() == before
    assert len(append_rows(path, [{"hash_type": "sha256", "hash": "ab" * 32, "action": "", "category": ""}])) == 2


def test_a_note_with_line_breaks_is_written_on_its_row(tmp_path):
    # A note may come from anyone's text (a verdict's id is a message's key): U+2028, a form feed
    # or a vertical tab ends a line for str.splitlines, and once split the row and failed the write.
    path = write(tmp_path, "# kind: deny\nhash_type,hash,note\n")
    rows = append_rows(path, [{"hash_type": "sha256", "hash": "ab" * 32, "note": "a\u2028sha256\x0c b\x0b\x85c\r\nd"}])
    assert rows.notes == ["a sha256 b c d"] and len(read_bank(path)) == 1
    rows = write_bank(tmp_path / "w.csv", "deny", [{"hash_type": "pdq", "hash": "cd" * 32, "note": "x\u2029y"}])
    assert rows.notes == ["x y"]


def test_bank_files_that_are_not_regular_files_are_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo.csv")
    with pytest.raises(BankError, match="not a regular file"):
        load_banks(tmp_path, 100)


def test_a_bank_directory_is_bounded(tmp_path):
    write_bank(tmp_path / "a.csv", "deny", [{"hash_type": "pdq", "hash": f"{i:064x}"} for i in range(20)])
    with pytest.raises(BankError, match="more than 10 entries"):
        load_banks(tmp_path, 10)
    with pytest.raises(BankError, match="cannot list"):
        load_banks(tmp_path / "missing", 10)
    write(tmp_path, "# kind: deny\nhash_type,hash\n", name="Bad Name.csv")
    with pytest.raises(BankError, match="named <bank>.csv"):
        load_banks(tmp_path, 100)


def test_per_bank_thresholds_apply_to_their_own_hashes(tmp_path):
    base = bytes(32)
    near = bytearray(base)
    near[0] = 0xFF  # 8 bits away
    write_bank(tmp_path / "strict.csv", "deny", [{"hash_type": "pdq", "hash": base.hex()}], pdq_threshold=4)
    write_bank(tmp_path / "loose.csv", "deny", [{"hash_type": "pdq", "hash": base.hex()}], pdq_threshold=10)
    matches = load_banks(tmp_path, 100).match_pdq(PdqHash(bytes(near), 100))
    assert [(m.bank, m.distance) for m in matches] == [("loose", 8)]


# --- the PDQ index ---------------------------------------------------------------------------------


def _brute(hashes: np.ndarray, q: bytes, radius: int) -> set[int]:
    return {i for i, h in enumerate(hashes) if hamming(h.tobytes(), q) <= radius}


@settings(max_examples=int(os.environ.get("MODERATOR_FUZZ_EXAMPLES", "60")), deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.sampled_from([0, 1, 50, 3000, 20_000]), radius=st.integers(0, MAX_RADIUS), clustered=st.booleans())
def test_the_index_finds_exactly_what_a_linear_scan_finds(seed, size, radius, clustered):
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 256, (size, 32), dtype=np.uint8)
    if clustered and size:  # many near copies of a few hashes: crowded buckets
        centres = hashes[: max(1, size // 100)]
        hashes = centres[rng.integers(0, len(centres), size)].copy()
        flips = rng.integers(0, 256, (size, 4))
        for j in range(4):
            hashes[np.arange(size), flips[:, j] // 8] ^= (1 << (flips[:, j] % 8)).astype(np.uint8)
    index = PdqIndex(hashes)
    queries = []
    for _ in range(3):
        q = hashes[rng.integers(0, size)].copy() if size and rng.random() < 0.7 else rng.integers(0, 256, 32, dtype=np.uint8)
        bits = rng.choice(256, int(rng.integers(0, radius + 1)), replace=False)
        for b in bits:
            q[b // 8] ^= 1 << (7 - b % 8)
        rows, distances = index.search(q.tobytes(), radius)
        assert set(rows.tolist()) == _brute(hashes, q.tobytes(), radius)
        assert list(distances) == sorted(distances)
        assert all(hamming(hashes[r].tobytes(), q.tobytes()) == d for r, d in zip(rows, distances))
        queries.append(q.tobytes())
    # a frame's hash and its turns are looked up in one pass: the same rows as one by one
    for (rows, distances), q in zip(index.search_many(queries, radius), queries, strict=True):
        one_rows, one_distances = index.search(q, radius)
        assert sorted(zip(distances.tolist(), rows.tolist())) == sorted(zip(one_distances.tolist(), one_rows.tolist()))
