"""Video through PyAV (the video extra): every frame decoded and selected like an animation's,
clips encoded here in the test (H.264, VP9), judged by the default model and policy."""

from __future__ import annotations

import io
import random
import sys

import pytest

from moderator.errors import ImageTooLarge, UndecodableImage, UnsupportedFormat
from moderator.media.decode import DecodeLimits
from moderator.media.frames import FrameLimits
from moderator.media.video import decode_video, looks_like_video
from moderator.pictograms.draw import render
from tests.unit.test_frames import default_processor, thumbnail  # noqa: F401  (fixture)

av = pytest.importorskip("av", reason="the video extra (PyAV) is in the dev install")


def clip(frames, fps: int = 30, codec: str = "libx264", fmt: str = "mp4", size=(320, 240), audio: bool = False) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        if frames:
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
        if audio:
            sound = container.add_stream("aac", rate=44100)
            sound.layout = "mono"
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_image(img.resize(size))):
                container.mux(packet)
        if frames:
            for packet in stream.encode():
                container.mux(packet)
        if audio:
            import numpy as np

            samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            samples.sample_rate = 44100
            for packet in sound.encode(samples):
                container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return buf.getvalue()


def scenes(seed: int = 40):
    rng = random.Random(seed)
    cup = render("cup", "brown", 1, "beige", rng, (320, 240))
    knife = render("knife", "black", 1, "beige", rng, (320, 240))
    flower = render("flower", "red", 1, "beige", rng, (320, 240))
    return cup, knife, flower


def _decide(processor, data: bytes):
    prepared = processor.prepare(data)
    assert prepared.error is None, prepared.error
    return processor.score_prepared([prepared]).decisions[0], prepared.frames


@pytest.mark.parametrize("codec, fmt", [("libx264", "mp4"), ("libx264", "mov"), ("libvpx-vp9", "webm")])
def test_a_one_frame_flash_in_a_benign_video_is_blocked(default_processor, codec, fmt):  # noqa: F811
    cup, knife, _ = scenes()
    data = clip([cup] * 45 + [knife] + [cup] * 44, codec=codec, fmt=fmt)
    assert looks_like_video(data)
    decision, frames = _decide(default_processor, data)
    weapons = next(c for c in decision.categories if c.name == "weapons")
    assert decision.decision == "block", decision.reasons
    assert frames.indices[weapons.frame] == 45 and frames.timestamps_ms[weapons.frame] == 1500
    assert frames.total == 90 and frames.scored <= 3, "identical frames are scored once"


def test_a_benign_video_is_allowed(default_processor):  # noqa: F811
    cup, _, flower = scenes(41)
    decision, _ = _decide(default_processor, clip([cup] * 30 + [flower] * 30))
    assert decision.decision == "allow", decision.reasons


def test_a_truncated_video_is_judged_on_the_frames_it_has_as_an_overflow(default_processor):  # noqa: F811
    cup, knife, flower = scenes(42)
    data = clip([knife] * 10 + [cup] * 80, fmt="matroska")  # frames are stored in order: the cut keeps the start
    cut = data[: len(data) * 2 // 3]
    decision, frames = _decide(default_processor, cut)
    assert decision.decision == "block" and frames.total < 90 and frames.overflow
    # Benign frames before the point where decoding stops do not make it allow: what came after was
    # never scored (cut short here; corrupt from some frame on is the same), so the policy's
    # frames.on_overflow decides: review by default.
    benign = clip([cup] * 45 + [flower] * 45, fmt="matroska")
    decision, frames = _decide(default_processor, benign[: len(benign) * 2 // 3])
    assert frames.overflow and decision.decision == "review", decision.reasons
    assert any(r.startswith("not every frame, or not every part of one, was scored") for r in decision.reasons), decision.reasons
    decision, frames = _decide(default_processor, benign)
    assert not frames.overflow and decision.decision == "allow", "the whole file decodes: nothing left unscored"
    # Corrupt from the middle on: FFmpeg stops decoding the VP9 stream there.
    webm = bytearray(clip([cup] * 45 + [flower] * 45, codec="libvpx-vp9", fmt="webm"))
    middle = len(webm) // 2
    webm[middle : middle + 400] = random.Random(1).randbytes(400)
    decision, frames = _decide(default_processor, bytes(webm))
    assert frames.total < 90 and frames.overflow and decision.decision == "review", (frames.total, decision.reasons)
    with pytest.raises(UndecodableImage):
        decode_video(data[:200], DecodeLimits(), FrameLimits(), thumbnail)


def test_a_video_with_no_video_stream_is_a_clear_dead_letter():
    data = clip([], audio=True, fmt="mp4")
    with pytest.raises(UndecodableImage, match="no video stream"):
        decode_video(data, DecodeLimits(), FrameLimits(), thumbnail)


def test_video_bounds():
    cup, _, _ = scenes(43)
    data = clip([cup] * 60, fps=10)  # six seconds
    with pytest.raises(ImageTooLarge, match="over the limit of 5s"):
        decode_video(data, DecodeLimits(), FrameLimits(max_video_seconds=5), thumbnail)
    with pytest.raises(ImageTooLarge, match="more than 20 frames"):
        decode_video(data, DecodeLimits(), FrameLimits(max_decoded_frames=20), thumbnail)
    with pytest.raises(ImageTooLarge, match="declares 320x240 frames"):
        decode_video(data, DecodeLimits(max_side=200), FrameLimits(), thumbnail)


def test_without_pyav_a_video_names_the_extra(monkeypatch):
    cup, _, _ = scenes(44)
    data = clip([cup] * 3)
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(UnsupportedFormat, match=r"pip install 'moderator\[video\]'"):
        decode_video(data, DecodeLimits(), FrameLimits(), thumbnail)


def test_still_image_containers_are_not_taken_for_video():
    assert looks_like_video(b"\x00\x00\x00\x1cftypavif" + b"\x00" * 20) is None
    assert looks_like_video(b"\x00\x00\x00\x1cftypisom" + b"\x00" * 20) == "MP4"
    assert looks_like_video(b"\x1a\x45\xdf\xa3" + b"\x00" * 20) == "WebM/Matroska"


def test_a_crafted_vp8_that_deadlocked_ffmpegs_slice_threads_decodes_in_one():
    """Found by the image fuzzer in CI: a 1,494-byte WebM whose one VP8 packet left every FFmpeg
    slice thread waiting on another, for good (no read, no timeout reaches it: in threads decode
    mode a worker's decode thread was lost per message). Decoded with one thread, it takes under a
    millisecond. Run in a child so that a regression fails here instead of hanging the suite."""
    import subprocess
    import textwrap

    from tests.conftest import REPO

    case = REPO / "tests" / "fuzz" / "corpus" / "image" / "webm-vp8-that-deadlocked-ffmpeg-slice-threads"
    code = textwrap.dedent(
        f"""
        from moderator.media.decode import DecodeLimits
        from moderator.media.frames import FrameLimits
        from moderator.media.video import decode_video
        frames = decode_video(open({str(case)!r}, "rb").read(), DecodeLimits(), FrameLimits(), lambda img: __import__("numpy").zeros((8, 8, 3), "uint8"))
        print(frames.total)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr[-2000:]
