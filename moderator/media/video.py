"""Video (MP4, MOV, WebM, Matroska) through PyAV, FFmpeg bundled in its wheel (the ``video``
extra): every frame is decoded and selected exactly like an animation's
(:class:`~moderator.media.frames.FrameSelector`), audio is ignored.

Bounds, checked before the thing they guard: the container's declared duration
(``max_video_seconds``), the stream's declared frame size (the still-image limits), then per
decoded frame the whole message's frame count, pixels and decode time. Frames are decoded one at
a time and only the kept ones' preprocessed squares are held, so a long video never holds its
full-size frames. A file that stops short (truncated) is judged on the frames it has, as a player
would show them; one with no decodable frame is ``undecodable_image``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from moderator.errors import ImageTooLarge, UndecodableImage, UnsupportedFormat
from moderator.media.decode import DecodeLimits
from moderator.media.frames import THUMB, FrameLimits, FrameSelector, FrameSet

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'moderator[video]'"


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
        UndecodableImage: not a readable video, no video stream, or no decodable frame.
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
        declared = _declared_seconds(container, stream)
        if declared is not None and declared > max_seconds:
            raise ImageTooLarge(f"{kind} declares {declared:.1f}s, over the limit of {max_seconds:g}s (media.max_video_seconds)")
        width, height = stream.codec_context.width, stream.codec_context.height
        if width > limits.max_side or height > limits.max_side or width * height > limits.max_pixels:
            raise ImageTooLarge(f"{kind} declares {width}x{height} frames, over the limits (max side {limits.max_side}, max pixels {limits.max_pixels})")
        selector = FrameSelector(frames, prepare, kind, hasher)
        try:
            for frame in container.decode(stream):
                if frame.width > limits.max_side or frame.height > limits.max_side or frame.width * frame.height > limits.max_pixels:
                    raise ImageTooLarge(f"{kind} frame {selector.total} is {frame.width}x{frame.height}, over the limits")
                selector.admit(frame.width, frame.height)
                seconds = frame.time if frame.time is not None else 0.0
                if seconds > max_seconds:
                    raise ImageTooLarge(f"{kind} plays past {max_seconds:g}s (media.max_video_seconds)")
                # The thumbnail comes from FFmpeg's scaler; the full RGB frame is made only if kept.
                thumbnail = frame.to_ndarray(width=THUMB, height=THUMB, format="rgb24")
                selector.add(frame.to_image, int(round(max(0.0, seconds) * 1000)), thumbnail)
        except (av.error.FFmpegError, ValueError, EOFError) as exc:
            if selector.total == 0:
                raise UndecodableImage(f"no decodable frame in the {kind} file: {exc}") from exc
            log.info("%s ends early after %d frames (%s); scoring the frames it has", kind, selector.total, exc)
        if selector.total == 0:
            raise UndecodableImage(f"no decodable frame in the {kind} file")
        return selector.result()
    finally:
        container.close()


def _declared_seconds(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None
