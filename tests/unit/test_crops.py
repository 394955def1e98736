"""What the model sees of a frame that is not square (media.crops), and that a frame's size never
sets what preprocessing allocates."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from moderator.media.decode import DecodeLimits
from moderator.media.frames import FrameLimits, decode_frames
from moderator.media.preprocess import GRID_CAP, Preprocessor, shortest_side_size
from moderator.models.manifest import Preprocess
from moderator.settings import MediaSettings
from tests.scenes import scene

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def cfg(**kw) -> Preprocess:
    return Preprocess(image_size=kw.pop("image_size", 32), mean=MEAN, std=STD, **kw)


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def with_dot(size: tuple[int, int], at: tuple[int, int], side: int = 8) -> Image.Image:
    img = Image.new("RGB", size, (240, 240, 240))
    img.paste((255, 0, 0), (at[0], at[1], at[0] + side, at[1] + side))
    return img


def red(squares: np.ndarray) -> list[bool]:
    """Which squares show the red dot."""
    return [bool(((s[..., 0] > 200) & (s[..., 1] < 60)).any()) for s in squares]


@pytest.mark.parametrize(
    ("size", "count"),
    [((64, 64), 1), ((68, 64), 1), ((85, 64), 3), ((114, 64), 3), ((128, 64), 3), ((192, 64), 5), ((64, 114), 3), ((320, 64), 5)],
)
def test_cover_squares_run_from_edge_to_edge_with_the_centre_among_them(size, count):
    pre = Preprocessor(cfg(interpolation="nearest"), crops="cover")
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    squares = pre.squares(img)
    assert squares.shape == (count, 32, 32, 3)
    np.testing.assert_array_equal(squares[count // 2], pre(img), "the middle square is the training transform's centre crop")
    if count > 1:
        resized = np.asarray(img.resize(shortest_side_size(size, 32), Image.Resampling.NEAREST))
        wide = size[0] > size[1]
        first = resized[:, :32] if wide else resized[:32]
        last = resized[:, -32:] if wide else resized[-32:]
        np.testing.assert_array_equal(squares[0], first, "the first square starts at the frame's first edge")
        np.testing.assert_array_equal(squares[-1], last, "the last square ends at its other edge")


@pytest.mark.parametrize("size", [(96, 54), (54, 96), (128, 64), (160, 64)])
def test_content_at_any_edge_is_in_some_square_with_cover_and_missed_by_the_centre_crop(size):
    w, h = size
    for at in [(0, 0), (w - 8, h - 8), (0, h - 8), (w - 8, 0)]:
        img = with_dot(size, at)
        assert any(red(Preprocessor(cfg(), crops="cover").squares(img))), (size, at)
        assert not any(red(Preprocessor(cfg(), crops="centre").squares(img))), (size, at)


def test_anything_up_to_half_a_square_lies_whole_in_one_square():
    """Stepping at most half a square: an object half a square across, anywhere along the frame,
    is whole in one of them (not only cut pieces of it in two)."""
    pre = Preprocessor(cfg(image_size=32, interpolation="nearest"), crops="cover")
    for width in (48, 64, 80, 96):  # up to 3:1, where five squares step half a square
        for x in range(0, width - 16 + 1, 3):
            img = with_dot((width, 32), (x, 8), side=16)
            whole = [int(((s[..., 0] > 200) & (s[..., 1] < 60)).sum()) for s in pre.squares(img)]
            assert max(whole) == 16 * 16, (width, x, whole)


def test_too_long_a_frame_is_not_covered_and_its_message_is_an_overflow():
    pre = Preprocessor(cfg(), crops="cover", max_crops=5)
    assert pre.covers((160, 32)) and not pre.covers((170, 32))
    assert Preprocessor(cfg(), crops="centre").covers((1000, 32)), "the centre crop's blind edges are the operator's choice, not an overflow"
    frames = decode_frames(png(with_dot((400, 40), (0, 0))), DecodeLimits(), FrameLimits(), pre)
    assert frames.overflow and frames.uncovered and frames.scored == 1 and len(frames.indices) == 5
    wide = decode_frames(png(with_dot((80, 40), (0, 0))), DecodeLimits(), FrameLimits(), pre)
    assert not wide.overflow and wide.indices == (0, 0, 0) and wide.scored == 1


def test_a_frame_that_changes_only_at_the_edge_is_kept_and_scored_with_cover():
    """Selection compares what the model sees: with cover, the whole frame."""
    plain = Image.new("RGB", (128, 64), (240, 240, 240))
    marked = with_dot((128, 64), (0, 20), side=12)
    buf = io.BytesIO()
    plain.save(buf, "GIF", save_all=True, append_images=[marked], duration=100)
    cover = decode_frames(buf.getvalue(), DecodeLimits(), FrameLimits(), Preprocessor(cfg(), crops="cover"))
    assert cover.distinct == 2 and sorted(set(cover.indices)) == [0, 1] and any(red(cover.pixels))


def test_frames_of_different_proportions_are_never_taken_for_each_other():
    pages = [Image.new("RGB", (64, 64), (200, 200, 200)), Image.new("RGB", (128, 64), (200, 200, 200))]
    buf = io.BytesIO()
    pages[0].save(buf, "TIFF", save_all=True, append_images=pages[1:])
    frames = decode_frames(buf.getvalue(), DecodeLimits(), FrameLimits(), Preprocessor(cfg(), crops="cover"))
    assert frames.distinct == 2 and frames.indices == (0, 1, 1, 1)


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (1920, 1080), (641, 479), (300, 1000), (3000, 200), (180, 3000)])
@pytest.mark.parametrize("gap", [None, 3.0])
def test_the_centre_square_is_the_training_transforms_and_long_frames_cost_only_their_squares(size, gap):
    """Up to GRID_CAP squares long, the centre square is resize-then-centre-crop exactly (open_clip's
    transform, tests/export/test_preprocess_parity.py), even on noise; longer frames' squares are
    resized from their own boxes of the frame, within two levels of it on a photo-like picture
    (on noise more: Pillow's two passes clip to 8 bits in between, and a tall one's are made as its
    wide transpose's)."""
    long = max(shortest_side_size(size, 224)) > GRID_CAP * 224
    img = scene(3, size).convert("RGB") if long else Image.fromarray(np.random.default_rng(1).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    whole = img.resize(shortest_side_size(size, 224), Image.Resampling.BICUBIC, reducing_gap=gap)
    w, h = whole.size
    top, left = int(round((h - 224) / 2.0)), int(round((w - 224) / 2.0))
    want = np.asarray(whole.crop((left, top, left + 224, top + 224))).astype(int)
    got = Preprocessor(cfg(image_size=224), reducing_gap=gap)(img).astype(int)
    if not long:
        np.testing.assert_array_equal(got, want)
    else:
        assert np.abs(got - want).max() <= 2 and (np.abs(got - want) > 1).mean() < 0.001


def test_a_long_thin_image_is_preprocessed_in_bounded_memory_and_time():
    """A 131-byte PNG of 16000x1 pixels: resized whole to the model's short side it would be 3.6
    million pixels wide (3.3 GB and 9 s, measured before the fix). Run under a 1.5 GB address-space
    cap, as both an image and an animation, in both crop modes."""
    code = textwrap.dedent(
        """
        import io, resource
        resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))
        from PIL import Image
        from moderator.media.decode import DecodeLimits
        from moderator.media.frames import FrameLimits, decode_frames
        from moderator.media.preprocess import Preprocessor
        from moderator.models.manifest import Preprocess
        pre = Preprocess(image_size=224, mean=(0.5,) * 3, std=(0.5,) * 3)
        for size in [(16000, 1), (1, 16000), (20000, 2)]:
            frames = [Image.new("RGB", size, (200, 10, 10)), Image.new("RGB", size, (10, 200, 10))]
            for data in (frames[0], frames):
                buf = io.BytesIO()
                if isinstance(data, list):
                    data[0].save(buf, "PNG", save_all=True, append_images=data[1:])
                else:
                    data.save(buf, "PNG")
                for crops in ("centre", "cover"):
                    got = decode_frames(buf.getvalue(), DecodeLimits(), FrameLimits(), Preprocessor(pre, crops=crops))
                    assert got.pixels.shape[1:] == (224, 224, 3), got.pixels.shape
                    assert got.uncovered == (crops == "cover"), (size, crops)
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_max_crops_must_be_odd_so_the_centre_square_is_scored():
    with pytest.raises(ValueError, match="odd"):
        MediaSettings(max_crops=4)
    with pytest.raises(ValueError, match="odd"):
        Preprocessor(cfg(), crops="cover", max_crops=2)
    assert MediaSettings(max_crops=1).max_crops == 1


def test_auto_follows_the_models_manifest_else_covers(tmp_path):
    """media.crops: auto (the default) scores what the model's manifest says it tolerates: the
    default model, trained on whole pictograms, says centre; a model that says nothing (an export
    of a real CLIP) is covered. An explicit setting wins over the manifest."""
    from moderator.models.manifest import load_manifest
    from moderator.processing import Processor
    from tests.conftest import REPO, TINY_MODEL

    assert MediaSettings().crops == "auto"
    default = load_manifest(REPO / "models" / "default", verify=False).preprocess
    tiny = load_manifest(TINY_MODEL, verify=False).preprocess
    assert default.crops == "centre" and tiny.crops is None
    assert Preprocessor(default, crops="auto").crops == "centre" and not Preprocessor(default, crops="auto").cover
    assert Preprocessor(tiny, crops="auto").cover and Preprocessor(default, crops="cover").cover
    assert not Preprocessor(tiny, crops="centre").cover
    assert Preprocessor(cfg()).crops == "centre", "the bare transform is the training one"

    from moderator.encoders.onnx import OnnxEncoder
    from moderator.policy import compile_policy, load_policy
    from tests.conftest import TINY_POLICY

    encoder = OnnxEncoder(TINY_MODEL)
    policy = compile_policy(load_policy(TINY_POLICY), encoder)
    wide = png(with_dot((400, 200), (0, 0)))
    assert Processor(encoder, policy, DecodeLimits()).prepare(wide).frames.indices == (0, 0, 0)
    assert Processor(encoder, policy, DecodeLimits(), crops="centre").prepare(wide).frames.indices == (0,)


def test_models_that_pad_or_squash_see_the_whole_frame_anyway():
    for mode in ("longest", "squash"):
        pre = Preprocessor(cfg(resize_mode=mode), crops="cover")
        img = with_dot((128, 32), (0, 0))
        assert pre.squares(img).shape == (1, 32, 32, 3) and pre.covers((4000, 10)) and any(red(pre.squares(img)))


def test_a_frame_scored_as_several_squares_has_its_one_hash_looked_up_and_shown_once():
    from moderator.hashing.compute import one_per_frame
    from moderator.processing import pdq_of

    rng = np.random.default_rng(3)
    photo = Image.fromarray(rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)).resize((640, 360))
    frames = decode_frames(png(photo), DecodeLimits(), FrameLimits(), Preprocessor(cfg(), crops="cover"), pdq_of)
    assert frames.indices == (0, 0, 0) and len(frames.hashes) == 3 and len(set(frames.hashes)) == 1
    assert one_per_frame(frames.hashes, frames.indices) == [0]
    assert one_per_frame(frames.hashes * 2, frames.indices + (1, 1, 1)) == [0, 3], "the same hash on another frame is that frame's"


def test_the_hashes_tool_lists_a_wide_images_one_hash_once_when_it_is_covered(tmp_path, monkeypatch, capsys):
    import json

    from moderator.cli.main import main

    monkeypatch.setenv("MODERATOR_MEDIA__CROPS", "cover")
    rng = np.random.default_rng(5)
    path = tmp_path / "wide.png"
    Image.fromarray(rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)).resize((640, 360)).save(path)
    assert main(["hashes", "compute", "--json", str(path)]) == 0
    assert len(json.loads(capsys.readouterr().out)["pdq"]) == 1
    banks = tmp_path / "banks"
    banks.mkdir()
    assert main(["hashes", "add", str(banks / "bad.csv"), str(path), "--category", "weapons"]) == 0
    from moderator.hashing.bankfile import read_bank

    assert read_bank(banks / "bad.csv").hash_types == ["sha256", "pdq"], "one PDQ row for the one frame, not one per square"
