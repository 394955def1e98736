"""Video (MP4, MOV, WebM, Matroska) through PyAV, FFmpeg bundled in its wheel (the ``video``
extra): every frame is decoded and selected exactly like an animation's
(:class:`~moderator.media.frames.FrameSelector`), audio is ignored.

Bounds, checked before the thing they guard: the container's declared duration
(``max_video_seconds``), the stream's declared frame size (the still-image limits), then per
decoded frame the whole message's frame count, pixels and decode time. Frames are decoded one at
a time and only the kept ones' preprocessed squares are held, so a long video never holds its
full-size frames. A file whose decoding stops with an error (corrupt from some frame on), or
whose frames stop short of the duration it declares (cut: FFmpeg ends a cut Matroska file without
an error), is judged on the frames it has and marked an overflow: what came after was not scored,
so the policy's ``frames.on_overflow`` decides (review by default) and an allow bank cannot pass
it. One with no decodable frame is ``undecodable_image``.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import re
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from moderator.errors import ImageTooLarge, UndecodableImage, UnsupportedFormat
from moderator.media.decode import DecodeLimits
from moderator.media.frames import THUMB, FrameLimits, FrameSelector, FrameSet, thumbnail_of
from moderator.media.preprocess import Preprocessor

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'moderator[video]'"
# Frames that end this far before the declared duration (the larger of the two) mean the file was
# cut or stopped decoding: judged as an overflow.
SHORT_SECONDS = 1.0
SHORT_FRACTION = 0.05
_DURATION_TAG = re.compile(r"(\d{1,6}):(\d{2}):(\d{2}(?:\.\d{1,9})?)$")  # Matroska's per-track tag, HH:MM:SS.nnnnnnnnn


def looks_like_video(data: bytes) -> str | None:
    """The container a file's first bytes announce, or None."""
    head = data[:64]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1"):
            return None  # still-image containers (AVIF, HEIC): not video
        return "QuickTime/MP4" if brand == b"qt  " else "MP4"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "QuickTime/MP4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "WebM/Matroska"
    return None


def decode_video(
    data: bytes, limits: DecodeLimits, frames: FrameLimits, prepare: Callable[[Image.Image], np.ndarray], hasher: Callable[[Image.Image], Any] | None = None
) -> FrameSet:
    """Decode, select and ``prepare`` the frames of a video file (``hasher``: as
    :func:`~moderator.media.frames.decode_frames`).

    Raises:
        UnsupportedFormat: PyAV is not installed (with the install hint).
        ImageTooLarge: declared duration or frame size, frame count, pixels or decode time over bounds.
        UndecodableImage: not a readable video, no video stream, a codec without a decoder, or no
            decodable frame.
    """
    kind = looks_like_video(data) or "video"
    max_seconds = frames.max_video_seconds
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"encoded video is {len(data)} bytes, over the limit of {limits.max_bytes}")
    try:
        import av
    except ImportError as exc:
        raise UnsupportedFormat(f"the bytes look like {kind} video; decoding video needs PyAV: {INSTALL_HINT}") from exc
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise UndecodableImage(f"cannot read the {kind} container: {exc}") from exc
    try:
        if not container.streams.video:
            raise UndecodableImage(f"the {kind} file has no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:  # a codec FFmpeg has no decoder for (found by the fuzzer)
            raise UndecodableImage(f"no decoder for the {kind} file's video codec")
        # One thread per decode: FFmpeg's slice threads deadlocked for good on a 1.5 KB crafted
        # VP8 WebM (found by the fuzzer: every thread waiting on another, no timeout reaches it;
        # one thread decodes it in 0.4 ms), and the service decodes messages side by side anyway.
        stream.codec_context.thread_type = "NONE"
        stream.codec_context.thread_count = 1
        declared = _declared_seconds(container, stream)
        if declared is not None and declared > max_seconds:
            raise ImageTooLarge(f"{kind} declares {declared:.1f}s, over the limit of {max_seconds:g}s (media.max_video_seconds)")
        width, height = stream.codec_context.width, stream.codec_context.height
        if width > limits.max_side or height > limits.max_side or width * height > limits.max_pixels:
            raise ImageTooLarge(f"{kind} declares {width}x{height} frames, over the limits (max side {limits.max_side}, max pixels {limits.max_pixels})")
        selector = FrameSelector(frames, prepare, kind, hasher)
        stopped = False
        last = None  # the last frame's time, seconds
        try:
            for frame in container.decode(stream):
                if frame.width > limits.max_side or frame.height > limits.max_side or frame.width * frame.height > limits.max_pixels:
                    raise ImageTooLarge(f"{kind} frame {selector.total} is {frame.width}x{frame.height}, over the limits")
                selector.admit(frame.width, frame.height)
                seconds = frame.time if frame.time is not None else 0.0
                last = seconds if frame.time is not None else last
                if seconds > max_seconds:
                    raise ImageTooLarge(f"{kind} plays past {max_seconds:g}s (media.max_video_seconds)")
                # FFmpeg's scaler makes the frame at the model's scale, from YUV in one pass: its
                # thumbnail and the view frames are compared by come from it; the full RGB frame is
                # made only if kept.
                thumbnail, view = _small(frame, prepare)
                selector.add(frame.to_image, int(round(max(0.0, seconds) * 1000)), thumbnail, view=view)
        except (av.error.FFmpegError, ValueError, EOFError) as exc:
            if selector.total == 0:
                raise UndecodableImage(f"no decodable frame in the {kind} file: {exc}") from exc
            log.info("%s ends early after %d frames (%s); scoring the frames it has, as an overflow", kind, selector.total, exc)
            stopped = True
        if selector.total == 0:
            raise UndecodableImage(f"no decodable frame in the {kind} file")
        if not stopped and declared is not None and last is not None and last < declared - max(SHORT_SECONDS, SHORT_FRACTION * declared):
            # FFmpeg ends a cut Matroska/WebM file without an error: its frames stop short of the
            # duration the file declares.
            log.info("%s stops at %.1fs of the %.1fs it declares; scoring the frames it has, as an overflow", kind, last, declared)
            stopped = True
        result = selector.result()
        # Frames after the error were never seen: what hides there is the policy's overflow rule's
        # to judge (review by default), as for frames left out of a sample.
        return dataclasses.replace(result, overflow=True) if stopped else result
    finally:
        container.close()


def _small(frame, prepare) -> tuple[np.ndarray, np.ndarray | None]:
    """A video frame's thumbnail and, for a Preprocessor, its view
    (:meth:`~moderator.media.preprocess.Preprocessor.view`), both from one pass of FFmpeg's area
    scaler to the model's scale: as cheap as the thumbnail alone, where making the RGB frame and
    then the view cost twice the frame's decode."""
    grid = prepare.grid_size((frame.width, frame.height)) if isinstance(prepare, Preprocessor) else None
    if grid is None:  # not a Preprocessor, or a frame so long that its grid would be large: the view is made from the frame if needed
        return frame.to_ndarray(width=THUMB, height=THUMB, format="rgb24"), None
    small = frame.to_image(width=grid[0], height=grid[1], interpolation="AREA")
    return thumbnail_of(small), prepare.view_of_grid(small)


def _declared_seconds(container, stream) -> float | None:
    """The video stream's declared duration: its own, or its Matroska DURATION tag, else the
    container's (which may include a longer audio stream)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    tag = _DURATION_TAG.match(str(stream.metadata.get("DURATION", ""))[:40])
    if tag:
        return int(tag[1]) * 3600 + int(tag[2]) * 60 + float(tag[3])
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None
