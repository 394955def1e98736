"""Every frame a viewer sees is scored: animated GIF, APNG (default image too), animated WebP and
multi-page TIFF; a benign first frame, a short flash, or a default image outside the animation
no longer lets anything through (issue: every frame)."""

from __future__ import annotations

import io
import random
import struct
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

from moderator.errors import ImageTooLarge
from moderator.media.decode import DecodeLimits
from moderator.media.frames import FrameLimits, decode_frames, thumbnail_of
from moderator.pictograms.draw import BACKGROUNDS, COLOURS, OBJECTS, render, usual
from tests.conftest import REPO

DEFAULT_MODEL = REPO / "models" / "default"
DEFAULT_POLICY = REPO / "policies" / "default.yaml"


def picture(obj: str, seed: int, colour: str = "black") -> Image.Image:
    return render(obj, colour, 1, "beige", random.Random(seed), (160, 120))


def animation(fmt: str, frames: list[Image.Image], durations: list[int] | int = 500, **kwargs) -> bytes:
    buf = io.BytesIO()
    timing = {} if fmt == "TIFF" else {"duration": durations}  # TIFF pages have no durations
    frames = [f.copy() for f in frames]  # fresh objects: Pillow keeps a saved image's encoder options on it
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], **timing, **kwargs)
    return buf.getvalue()


def thumbnail(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB").resize((64, 64)), np.uint8)


FORMATS = [("GIF", {}), ("PNG", {}), ("WEBP", {"lossless": True}), ("TIFF", {})]


@pytest.mark.parametrize("fmt, kwargs", FORMATS, ids=[f for f, _ in FORMATS])
def test_every_distinct_frame_is_kept_and_duplicates_are_not(fmt, kwargs):
    cup, knife = picture("cup", 1, "brown"), picture("knife", 2)
    data = animation(fmt, [cup, cup.copy(), knife, cup.copy()], **kwargs)
    fs = decode_frames(data, DecodeLimits(), FrameLimits(), thumbnail)
    assert fs.animated and not fs.overflow
    assert len(fs.indices) == 2, f"cup and knife kept, the repeated cup skipped: {fs.indices}"
    knife_frame = fs.pixels[1].astype(int)
    assert np.abs(knife_frame - thumbnail(knife).astype(int)).mean() < 12, "the second kept frame is the knife"


def test_a_frame_shown_for_20_ms_counts_like_any_other():
    cup, knife = picture("cup", 3, "brown"), picture("knife", 4)
    data = animation("GIF", [cup, knife, cup.copy()], durations=[5000, 20, 5000])
    fs = decode_frames(data, DecodeLimits(), FrameLimits(), thumbnail)
    assert fs.indices == (0, 1) and fs.timestamps_ms == (0, 5000)


def test_an_apng_default_image_outside_the_animation_is_a_frame_too():
    knife, cup = picture("knife", 5), picture("cup", 6, "brown")
    data = animation("PNG", [knife, cup, cup.copy()], default_image=True)  # the knife is only the default image
    fs = decode_frames(data, DecodeLimits(), FrameLimits(), thumbnail)
    assert fs.total == 2 and fs.indices == (0, 1), "Pillow gives the default image as frame 0 (the repeated cup is one frame)"
    assert np.abs(fs.pixels[0].astype(int) - thumbnail(knife).astype(int)).mean() < 12


def test_a_thousand_tiny_frames_are_cheap_and_an_overflow_is_reported():
    frames = [Image.new("RGB", (8, 8), ((i * 37) % 256, (i * 91) % 256, (i * 13) % 256)) for i in range(1000)]
    start = time.perf_counter()
    fs = decode_frames(animation("GIF", frames, 10), DecodeLimits(), FrameLimits(max_frames=32), thumbnail)
    assert fs.total == 1000 and fs.overflow and len(fs.indices) == 32 and fs.distinct > 32
    assert fs.indices[0] == 0 and fs.indices[-1] > 900, f"an even sample across the animation: {fs.indices}"
    assert time.perf_counter() - start < 60  # pytest-timeout would catch a hang; this only reports the scale


def test_frame_count_total_pixels_and_frame_size_are_bounded():
    frames = [Image.new("RGB", (64, 64), (i, 0, 0)) for i in range(50)]
    with pytest.raises(ImageTooLarge, match="more than 20 frames"):
        decode_frames(animation("GIF", frames, 10), DecodeLimits(), FrameLimits(max_decoded_frames=20), thumbnail)
    with pytest.raises(ImageTooLarge, match="add up to more than 100000 pixels"):
        decode_frames(animation("GIF", frames, 10), DecodeLimits(), FrameLimits(max_total_pixels=100_000), thumbnail)
    gif = bytearray(animation("GIF", frames[:2], 10))
    gif[6:10] = (60_000).to_bytes(2, "little") * 2  # the logical screen: every frame is drawn on it
    huge = bytes(gif)
    with pytest.raises(ImageTooLarge, match="more than 50000000 pixels"):
        decode_frames(huge, DecodeLimits(), FrameLimits(), thumbnail)


def _gif_with_a_second_frame(width: int, height: int) -> bytes:
    """A 10x10 GIF whose second frame's descriptor declares ``width x height`` (Pillow enlarges
    the canvas to hold it) and carries only an empty LZW stream: 74 bytes."""
    first = animation("GIF", [Image.new("P", (10, 10))])
    frame = b"\x21\xf9\x04\x00\x0a\x00\x00\x00" + b"\x2c" + struct.pack("<HHHH", 0, 0, width, height) + b"\x00" + b"\x02\x02\x4c\x01\x00"
    return first[:-1] + frame + b";"


def _tiff_with_a_second_page(width: int, height: int) -> bytes:
    """A two-page TIFF of 10x10 pages whose second page's tags are rewritten to declare
    ``width x height`` (one strip of that many rows): its data is still 300 bytes."""
    buf = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buf, "TIFF", save_all=True, append_images=[Image.new("RGB", (10, 10), (7, 7, 7))])
    tiff = bytearray(buf.getvalue())
    first = struct.unpack_from("<I", tiff, 4)[0]
    second = struct.unpack_from("<I", tiff, first + 2 + 12 * struct.unpack_from("<H", tiff, first)[0])[0]
    for i in range(struct.unpack_from("<H", tiff, second)[0]):
        entry = second + 2 + 12 * i
        tag, kind = struct.unpack_from("<HH", tiff, entry)
        if tag in (256, 257, 278):  # ImageWidth, ImageLength, RowsPerStrip
            struct.pack_into("<I" if kind == 4 else "<H", tiff, entry + 8, width if tag == 256 else height)
    return bytes(tiff)


def test_a_later_frame_declaring_a_huge_size_is_refused_before_its_pixels_are_decoded():
    # Pillow raises its own DecompressionBombError on seeking to a GIF frame far over its bound:
    # it escaped decode_frames (a processing_error, not the message's image_too_large).
    with pytest.raises(ImageTooLarge, match="frame 1 is far over the pixel limits"):
        decode_frames(_gif_with_a_second_frame(65_535, 65_535), DecodeLimits(), FrameLimits(), thumbnail)
    # Under Pillow's bound but over ours: refused on the declared size. Decoding first would have
    # allocated the frame and then said its 6 bytes of LZW data were truncated.
    with pytest.raises(ImageTooLarge, match="12000x8000"):
        decode_frames(_gif_with_a_second_frame(12_000, 8_000), DecodeLimits(), FrameLimits(), thumbnail)
    # A multi-page TIFF's second page declares its own size: the same.
    with pytest.raises(ImageTooLarge, match="8000x8000"):
        decode_frames(_tiff_with_a_second_page(8_000, 8_000), DecodeLimits(max_pixels=1_000_000), FrameLimits(), thumbnail)
    with pytest.raises(ImageTooLarge, match="60000x60000"):
        decode_frames(_tiff_with_a_second_page(60_000, 60_000), DecodeLimits(), FrameLimits(), thumbnail)
    # And a page within the size limits is counted against the message's pixels before it is decoded.
    with pytest.raises(ImageTooLarge, match="add up to more than 1000000 pixels"):
        decode_frames(_tiff_with_a_second_page(1_000, 1_000), DecodeLimits(), FrameLimits(max_total_pixels=1_000_000), thumbnail)


@pytest.fixture(scope="module")
def default_processor():
    from moderator.encoders.onnx import OnnxEncoder
    from moderator.policy import compile_policy, load_policy
    from moderator.processing import Processor

    encoder = OnnxEncoder(DEFAULT_MODEL)
    yield Processor(encoder, compile_policy(load_policy(DEFAULT_POLICY), encoder), DecodeLimits())
    encoder.close()


def _decide(processor, data: bytes):
    prepared = processor.prepare(data)
    assert prepared.error is None, prepared.error
    return processor.score_prepared([prepared])


EVASIONS = [
    ("benign first frame", lambda cup, knife: [cup, knife, knife.copy()], 500),
    ("20 ms flash", lambda cup, knife: [cup, knife, cup.copy()], [3000, 20, 3000]),
    ("flash at the end", lambda cup, knife: [cup, cup.copy(), cup.copy(), knife], 500),
]


@pytest.mark.parametrize("fmt, kwargs", FORMATS, ids=[f for f, _ in FORMATS])
@pytest.mark.parametrize("name, order, durations", EVASIONS, ids=[e[0] for e in EVASIONS])
def test_no_evasion_pattern_is_allowed_with_the_default_model(default_processor, fmt, kwargs, name, order, durations):
    cup, knife = picture("cup", 11, "brown"), picture("knife", 12)
    still = io.BytesIO()
    knife.save(still, "PNG")
    assert _decide(default_processor, still.getvalue()).decisions[0].decision == "block", "the knife alone is blocked"
    result = _decide(default_processor, animation(fmt, order(cup, knife), durations, **kwargs))
    decision = result.decisions[0]
    weapons = next(c for c in decision.categories if c.name == "weapons")
    assert decision.decision == "block" and weapons.action == "block", (fmt, name, decision.reasons)
    assert weapons.frame > 0, "the deciding frame is not the benign first one"


def test_apng_default_image_evasion_is_blocked(default_processor):
    knife, cup = picture("knife", 13), picture("cup", 14, "brown")
    result = _decide(default_processor, animation("PNG", [knife, cup, cup.copy()], default_image=True))
    assert result.decisions[0].decision == "block"


def test_a_benign_animation_is_allowed(default_processor):
    frames = [picture("cup", 20, "brown"), picture("flower", 21, "red"), picture("tree", 22, "green")]
    assert _decide(default_processor, animation("GIF", frames)).decisions[0].decision == "allow"


def on_blank(obj: str, colour: str, background: str = "beige", scale: float = 0.36) -> tuple[Image.Image, Image.Image]:
    """A blank 320x240 frame, and the same frame with ``obj`` drawn at ``scale`` of the shorter
    side (0.36: the size the default model is trained on), in the middle."""
    blank = Image.new("RGB", (320, 240), BACKGROUNDS[background])
    s = 240 * scale
    layer = Image.new("RGBA", (int(2.4 * s), int(2.4 * s)), (0, 0, 0, 0))
    OBJECTS[obj](ImageDraw.Draw(layer), layer.width / 2, layer.height / 2, s, COLOURS[colour], usual)
    drawn = blank.copy()
    drawn.paste(layer, (160 - layer.width // 2, 120 - layer.height // 2), layer)
    return blank, drawn


def kept(frames) -> tuple[int, ...]:
    """The frames scored, in order, once each (a frame's rows: its squares, its renderings)."""
    return tuple(dict.fromkeys(frames.indices))


def _thumbnail_mean_difference(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(thumbnail_of(a).astype(float) - thumbnail_of(b).astype(float)).mean()) / 255


@pytest.mark.parametrize("fmt, kwargs", FORMATS, ids=[f for f, _ in FORMATS])
def test_a_knife_after_a_blank_first_frame_is_scored(default_processor, fmt, kwargs):
    # Found attacking the earlier rule (a 16x16 thumbnail's mean difference under 0.02): a knife
    # at the model's own training size on a blank background moves that mean by under 2 %, so every
    # frame after the blank one was skipped and the animation allowed.
    blank, knife = on_blank("knife", "red")
    assert _thumbnail_mean_difference(blank, knife) < 0.02, "the attack: the old rule called these frames the same"
    assert _decide(default_processor, png(knife)).decisions[0].decision == "block"
    result = _decide(default_processor, animation(fmt, [blank, knife, knife.copy()], **kwargs))
    decision = result.decisions[0]
    assert decision.decision == "block", (fmt, decision.reasons)
    row = next(c for c in decision.categories if c.name == "weapons").frame
    assert default_processor.prepare(animation(fmt, [blank, knife, knife.copy()], **kwargs)).frames.indices[row] == 1


def hidden_from_thumbnails() -> tuple[Image.Image, Image.Image]:
    """A blank dark frame, and the same with a knife drawn and the rest of each 20x15 cell shifted
    so that the cell's average is what it was: their 16x16 thumbnails match. (A dark background:
    on a light one the shift would have to go past white.)"""
    blank, knife = on_blank("knife", "black", "dark")
    a, b = np.asarray(blank, np.float64), np.asarray(knife, np.float64).copy()
    drawn = np.abs(a - b).sum(axis=2) > 0
    for y in range(0, 240, 15):
        for x in range(0, 320, 20):
            cell, mask = b[y : y + 15, x : x + 20], drawn[y : y + 15, x : x + 20]
            if mask.any() and not mask.all():
                shift = (a[y : y + 15, x : x + 20].sum((0, 1)) - cell.sum((0, 1))) / (~mask).sum()
                cell[~mask] += shift
    return blank, Image.fromarray(np.clip(np.round(b), 0, 255).astype(np.uint8))


def test_a_knife_drawn_so_that_every_thumbnail_cell_keeps_its_average_is_scored(default_processor):
    # The next attack on any average: the thumbnails match; what the model sees does not.
    blank, hidden = hidden_from_thumbnails()
    thumbs = np.abs(thumbnail_of(hidden).astype(int) - thumbnail_of(blank).astype(int)).max() / 255
    assert thumbs < FrameLimits().change_threshold, f"the thumbnails match ({thumbs:.3f})"
    fs = decode_frames(animation("PNG", [blank, hidden]), DecodeLimits(), FrameLimits(), default_processor.preprocessor)
    assert kept(fs) == (0, 1), "the knife frame is kept"
    assert _decide(default_processor, animation("PNG", [blank, hidden])).decisions[0].decision != "allow"


def test_moderator_hashes_keeps_and_hashes_the_frames_the_service_keeps(default_processor):
    # A bank built with the tool must hold the hashes of the frames the service scores: the tool
    # selects them with the service's preprocessor too.
    from moderator.cli.hashes import service_preprocessor
    from moderator.processing import hash_image
    from moderator.settings import load_settings

    blank, hidden = hidden_from_thumbnails()
    data = animation("PNG", [blank, hidden])
    service = default_processor.prepare(data)
    prepare = service_preprocessor(load_settings(None))
    tool, frames = hash_image(data, DecodeLimits(), FrameLimits(), True, None, prepare)
    assert frames.indices == service.frames.indices and kept(frames) == (0, 1) and tool.pdq == service.hashes.pdq
    _, by_thumbnail = hash_image(data, DecodeLimits(), FrameLimits(), True, None)
    assert by_thumbnail.indices == (0,), "without the preprocessor the thumbnails decide, and they match"


def test_a_faint_pistol_the_model_still_sees_is_scored(default_processor):
    blank, pistol = on_blank("pistol", "black")
    faint = Image.blend(blank, pistol, 0.1)  # about 20 levels of 255 at most, in what the model sees
    assert _decide(default_processor, png(faint)).decisions[0].decision == "block"
    assert _decide(default_processor, animation("PNG", [blank, faint, faint.copy()])).decisions[0].decision == "block"


def test_only_frames_within_the_threshold_at_every_pixel_are_skipped(default_processor):
    prepare = default_processor.preprocessor
    cup = picture("cup", 30, "brown")
    rng = np.random.default_rng(0)
    noise = rng.integers(-3, 4, (120, 160, 3))  # +-3 levels: under 0.03 (7.65) everywhere
    grainy = Image.fromarray(np.clip(np.asarray(cup, int) + noise, 0, 255).astype(np.uint8))
    one_pixel = cup.copy()
    one_pixel.paste((0, 0, 0), (78, 58, 82, 62))  # a 4x4 dot in the middle: one frame on its own
    data = animation("PNG", [cup, grainy, cup.copy(), one_pixel])
    fs = decode_frames(data, DecodeLimits(), FrameLimits(), prepare)
    assert kept(fs) == (0, 3) and fs.distinct == 2, fs.indices
    fs = decode_frames(data, DecodeLimits(), FrameLimits(change_threshold=0), prepare)
    assert kept(fs) == (0, 1, 2, 3), "0 skips nothing, not even an identical frame"


def on_transparent(obj: str, colour: tuple[int, int, int]) -> Image.Image:
    """``obj`` drawn opaque in ``colour`` on a fully transparent 320x240 RGBA canvas."""
    canvas = Image.new("RGBA", (320, 240), (0, 0, 0, 0))
    s = 240 * 0.36
    layer = Image.new("RGBA", (int(2.4 * s), int(2.4 * s)), (0, 0, 0, 0))
    OBJECTS[obj](ImageDraw.Draw(layer), layer.width / 2, layer.height / 2, s, colour, lambda c: c)
    canvas.paste(layer, (160 - layer.width // 2, 120 - layer.height // 2), layer)
    return canvas


def test_a_white_pistol_on_a_transparent_background_is_scored_as_a_dark_page_shows_it(default_processor):
    # Composited over white only, a white drawing on a transparent background is invisible to the
    # model, and plain to anyone whose app shows it on a dark theme.
    from moderator.processing import Processor

    pistol = on_transparent("pistol", (250, 250, 250))
    white_only = Processor(default_processor.encoder, default_processor.policy, DecodeLimits(second_background=None))
    assert _decide(white_only, png(pistol)).decisions[0].decision == "allow", "the attack: over white the pistol is not there"
    prepared = default_processor.prepare(png(pistol))
    assert prepared.frames.indices == (0, 0) and prepared.frames.scored == prepared.frames.total == 1, "two renderings of the one frame"
    assert _decide(default_processor, png(pistol)).decisions[0].decision == "block"
    # After a transparent first frame, in an animation: the pistol's white rendering matches the
    # blank frame's, its dark one does not.
    blank = Image.new("RGBA", (320, 240), (0, 0, 0, 0))
    data = animation("PNG", [blank, pistol, pistol.copy()])
    assert _decide(white_only, data).decisions[0].decision == "allow"
    result = _decide(default_processor, data)
    weapons = next(c for c in result.decisions[0].categories if c.name == "weapons")
    assert result.decisions[0].decision == "block" and default_processor.prepare(data).frames.indices[weapons.frame] == 1


def test_only_frames_with_transparency_get_a_second_rendering(default_processor):
    from moderator.processing import Processor

    cup = picture("cup", 40, "brown")
    opaque = cup.convert("RGBA")  # an alpha channel, every pixel opaque
    squares = 1  # the default model's manifest says crops: centre (media.crops: auto follows it)
    assert default_processor.prepare(png(opaque)).frames.indices == (0,) * squares
    assert default_processor.prepare(png(cup)).frames.indices == (0,) * squares
    faded = opaque.copy()
    faded.putalpha(200)
    assert default_processor.prepare(png(faded)).frames.indices == (0,) * 2 * squares
    same = Processor(default_processor.encoder, default_processor.policy, DecodeLimits(second_background=(255, 255, 255)))
    assert same.prepare(png(faded)).frames.indices == (0,) * squares, "second_background equal to background: one rendering"


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_scores_aggregate_by_maximum_and_overflow_rules_apply():
    from moderator.policy.compile import CompiledPolicy
    from moderator.policy.score import score_frames

    emb = np.eye(3, dtype=np.float32)
    policy = CompiledPolicy("p", "v", ("a", "b"), emb[:2], np.asarray([0.5, 0.5], np.float32), np.asarray([0.9, 0.9], np.float32))
    frames = np.stack([emb[2], emb[2], emb[1] * 0.95 + emb[2] * 0.05, emb[2]])
    frames /= np.linalg.norm(frames, axis=1, keepdims=True)
    one, two = score_frames(frames, policy, [3, 1])
    b = next(c for c in one.categories if c.name == "b")
    assert one.decision == "block" and b.frame == 2 and b.score > 0.9
    assert two.decision == "allow" and two.frames == 1
    for rule, expected in (("review", "review"), ("reject", "block"), ("sample", "allow")):
        p = CompiledPolicy("p", "v", ("a", "b"), emb[:2], policy.review, policy.block, on_overflow=rule)
        [d] = score_frames(frames[3:], p, [1], [True])
        assert d.decision == expected and d.overflow == rule
    with pytest.raises(ValueError, match="do not add up"):
        score_frames(frames, policy, [2, 1])


def _policy(aggregate: str, k: int = 1, n: int = 1):
    from moderator.policy.compile import CompiledCategory, CompiledPolicy

    e = np.eye(2, dtype=np.float32)
    entry = CompiledCategory("a", "cosine", 0.01, 0.5, 0.8, "block", 0, ("p",), e[:1], e[0], aggregate=aggregate, k=k, n=n)
    return CompiledPolicy("p", "v", ("a",), e[:1], np.asarray([0.5], np.float32), np.asarray([0.8], np.float32), entries=(entry,))


def _frames(scores: list[float]) -> np.ndarray:
    """Unit embeddings whose cosine with category "a" (axis 0) is each given score."""
    s = np.asarray(scores, np.float32)
    return np.stack([s, np.sqrt(1 - s**2)], axis=1)


@pytest.mark.parametrize(
    "scores, aggregate, k, n, expected, frame",
    [
        ([0.1, 0.9, 0.1, 0.1], "max", 1, 1, 0.9, 1),
        ([0.1, 0.9, 0.1, 0.1], "mean", 1, 1, 0.3, 1),
        ([0.9, 0.1, 0.9, 0.1, 0.1], "k_of_n", 2, 3, 0.9, 2),  # 2 of frames 0..2 reach 0.9
        ([0.9, 0.1, 0.1, 0.9, 0.1], "k_of_n", 2, 3, 0.1, 1),  # no window of 3 has two high frames: only noise
        ([0.2, 0.85, 0.95, 0.3], "k_of_n", 2, 2, 0.85, 1),  # the second-highest of the best pair
        ([0.95], "k_of_n", 2, 3, 0.95, 0),  # a still: one window of one frame
        ([0.95, 0.1], "k_of_n", 3, 5, 0.1, 1),  # fewer frames than n: all of them must be over
    ],
)
def test_aggregation_modes_on_hand_made_score_sequences(scores, aggregate, k, n, expected, frame):
    from moderator.policy.score import score_frames

    [d] = score_frames(_frames(scores), _policy(aggregate, k, n), [len(scores)])
    [a] = d.categories
    assert a.score == pytest.approx(expected, abs=1e-5) and a.frame == frame, (a.score, a.frame)
    assert a.action == ("block" if expected >= 0.8 else "review" if expected >= 0.5 else "allow")


SQUARES = [0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.85, 0.1, 0.1]  # three frames of three squares each (a wide frame's crops)
OF_FRAME = (4, 4, 4, 7, 7, 7, 9, 9, 9)  # FrameSet.indices: the frame in the file of each row


@pytest.mark.parametrize(
    "aggregate, k, n, expected, row",
    [
        ("max", 1, 1, 0.9, 1),
        ("mean", 1, 1, (0.9 + 0.1 + 0.85) / 3, 1),  # over frames, not over the nine squares (0.29)
        ("k_of_n", 2, 3, 0.85, 6),  # two of the three frames are high: each by one square of three
        ("k_of_n", 2, 2, 0.1, 3),  # no two consecutive frames are high
    ],
)
def test_the_squares_of_one_frame_are_one_frame_by_their_highest_score(aggregate, k, n, expected, row):
    """A frame scored as several squares (crops of a wide frame, renderings over two pages) is one
    frame to every aggregate: its score is its best square's, and the deciding row is that square."""
    from moderator.policy.score import score_frames

    [d] = score_frames(_frames(SQUARES), _policy(aggregate, k, n), [len(SQUARES)], [True], [OF_FRAME])
    [a] = d.categories
    assert a.score == pytest.approx(expected, abs=1e-5) and a.frame == row, (a.score, a.frame)
    assert d.frames == 3 and any("3 frames were" in r for r in d.reasons), d.reasons
    [rows] = score_frames(_frames(SQUARES), _policy(aggregate, k, n), [len(SQUARES)])
    assert rows.frames == 9, "without groups every row is a frame"
    with pytest.raises(ValueError, match="groups"):
        score_frames(_frames(SQUARES), _policy(aggregate, k, n), [len(SQUARES)], None, [OF_FRAME[:-1]])


def test_k_of_n_needs_k_at_most_n_in_the_policy(tmp_path):
    from moderator.policy import PolicyFileError, load_policy

    path = tmp_path / "p.yaml"
    path.write_text("name: x\ncategories:\n  - {name: a, prompts: [p], review: 0.1, block: 0.2, aggregate: k_of_n, k: 4, n: 3}\n")
    with pytest.raises(PolicyFileError, match="k_of_n needs k <= n"):
        load_policy(path)


def test_evaluation_scores_animations_as_the_service_does(tmp_path, tiny_encoder):
    """policy eval/calibrate aggregate a labelled animation's frames by each category's rule, as the
    service does: with mean, a one-frame flash must not score like its maximum."""
    from moderator.policy import compile_policy, load_policy
    from moderator.policy.evaluate import score_labelled
    from moderator.policy.score import score_frames
    from moderator.processing import Processor
    from tests.conftest import TINY_POLICY

    policy_path = tmp_path / "policy.yaml"
    policy_path.write_text(TINY_POLICY.read_text().replace("categories:\n", "defaults: {aggregate: mean}\ncategories:\n", 1))
    cup, knife = picture("cup", 71, "brown"), picture("knife", 72)
    (tmp_path / "anim.gif").write_bytes(animation("GIF", [cup, knife, picture("flower", 73, "red")]))
    cup.save(tmp_path / "still.png")
    (tmp_path / "labels.csv").write_text("path,categories\nanim.gif,weapons\nstill.png,\n")
    processor = Processor(tiny_encoder, compile_policy(load_policy(policy_path), tiny_encoder), DecodeLimits())
    data = score_labelled(tmp_path / "labels.csv", processor, processor.policy)
    for row, name in zip(data.scores, ("anim.gif", "still.png")):
        prepared = processor.prepare((tmp_path / name).read_bytes())
        embeds = tiny_encoder.encode_images(prepared.pixels)
        [decision] = score_frames(embeds, processor.policy, [len(embeds)], None, [prepared.frames.indices])
        assert np.allclose(row, [c.score for c in decision.categories], atol=1e-5), name
    prepared = processor.prepare((tmp_path / "anim.gif").read_bytes())
    per_frame = tiny_encoder.encode_images(prepared.pixels)
    assert prepared.frames.scored == 3 and not np.allclose(data.scores[0], (per_frame @ processor.policy.embeddings.T).max(axis=0))
