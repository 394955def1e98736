"""Every frame a viewer sees: the frames of animated and multi-image files, selected so that cost
is bounded and timing cannot hide one.

Formats: GIF, APNG (its default image too, when it is not part of the animation: Pillow gives it
as frame 0), animated WebP and multi-page TIFF; a still image is one frame.

Selection (:func:`decode_frames`) decodes every frame, in order, and keeps a frame unless it looks
like one already kept: its 16x16 thumbnail's mean absolute difference from every kept frame's is
under ``change_threshold`` (0..1). Frame durations are never read for selection, so a frame shown
for 20 ms counts like one shown for 20 s, and a frame that differs visibly from all frames kept is
never skipped. When a message has more distinct frames than ``max_frames``, the kept set is an
even sample of the distinct ones (decimated in place, so at most ``2 * max_frames`` preprocessed
frames are held) and the result says it overflowed; the policy decides what an overflow means
(``frames.on_overflow``).

Bounds on the whole message: ``max_decoded_frames`` frames at most, the sum of decoded frame
pixels at most ``max_total_pixels`` (a thousand 1-pixel frames are cheap, a thousand 4K frames are
not), every frame's size within the still-image limits, and ``max_decode_seconds`` of decoding.
Each refusal is an ``image_too_large`` dead letter naming the limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from moderator.errors import ImageTooLarge, UndecodableImage
from moderator.media.decode import DECODE_ERRORS, DecodeLimits, check_size, open_image, to_rgb

THUMB = 16


@dataclass(frozen=True)
class FrameLimits:
    max_frames: int = 32
    max_decoded_frames: int = 2_000
    max_total_pixels: int = 400_000_000
    max_decode_seconds: float = 30.0
    change_threshold: float = 0.02
    max_video_seconds: float = 600.0


@dataclass(frozen=True)
class FrameSet:
    """The kept frames of one message, preprocessed, with where they are in the file."""

    pixels: np.ndarray  # uint8 [F, S, S, 3]
    indices: tuple[int, ...]  # frame number in the file of each kept frame
    timestamps_ms: tuple[int, ...]  # when each kept frame is first shown (sum of earlier durations)
    total: int  # frames in the file
    distinct: int  # frames that differ visibly from the ones before them
    overflow: bool  # more distinct frames than max_frames: the kept ones are an even sample
    animated: bool = field(default=False)
    hashes: tuple = ()  # what the selector's ``hasher`` made of each kept frame (empty without one)


class FrameSelector:
    """Keeps frames by content as they are decoded, for images and video alike (module docstring):
    bounded memory (at most ``2 * max_frames`` prepared frames) and bounded work (the whole
    message's frames, pixels and decode time)."""

    def __init__(
        self, frames: FrameLimits, prepare: Callable[[Image.Image], np.ndarray], what: str, hasher: Callable[[Image.Image], Any] | None = None
    ) -> None:
        self.limits = frames
        self.prepare = prepare
        self.hasher = hasher
        self.what = what
        self.deadline = time.monotonic() + frames.max_decode_seconds
        self.kept: list[tuple[int, int, np.ndarray | None, np.ndarray, Any]] = []  # (index, timestamp, thumbnail, pixels, hash)
        self.stride = 1  # keep every stride-th distinct frame (doubles each time the buffer is decimated)
        self.distinct = 0
        self.total = 0
        self.pixels = 0

    def admit(self, width: int, height: int) -> None:
        """Count a frame about to be decoded against the message's bounds.

        Raises:
            ImageTooLarge: too many frames, pixels, or decoding time.
        """
        if self.total >= self.limits.max_decoded_frames:
            raise ImageTooLarge(f"{self.what} has more than {self.limits.max_decoded_frames} frames (media.max_decoded_frames)")
        self.pixels += width * height
        if self.pixels > self.limits.max_total_pixels:
            raise ImageTooLarge(f"{self.what} frames add up to more than {self.limits.max_total_pixels} pixels (media.max_total_pixels)")
        if time.monotonic() > self.deadline:
            raise ImageTooLarge(f"decoding {self.what} took over {self.limits.max_decode_seconds:g}s at frame {self.total} (media.max_decode_seconds)")

    def add(self, rgb: Image.Image | Callable[[], Image.Image], timestamp_ms: int, thumbnail: np.ndarray | None = None, only_frame: bool = False) -> None:
        """Consider one decoded frame (call :meth:`admit` first): an RGB image, or, with its
        ``THUMB x THUMB`` RGB ``thumbnail``, a function making the image only if it is kept.
        ``only_frame`` (a still image) skips the thumbnail: there is nothing to compare it with."""
        index = self.total
        self.total += 1
        image = None
        thumb = None
        if not only_frame:
            if thumbnail is None:
                image = rgb() if callable(rgb) else rgb
                thumbnail = thumbnail_of(image)
            thumb = _as_signal(thumbnail)
            similar = [float(np.abs(thumb - k[2]).mean()) for k in self.kept if k[2] is not None]
            if similar and min(similar) < self.limits.change_threshold:
                return
        self.distinct += 1
        if (self.distinct - 1) % self.stride == 0:
            if image is None:
                image = rgb() if callable(rgb) else rgb
            digest = self.hasher(image) if self.hasher is not None else None
            self.kept.append((index, timestamp_ms, thumb, self.prepare(image), digest))
            if len(self.kept) >= 2 * self.limits.max_frames:
                self.kept = self.kept[::2]
                self.stride *= 2

    def result(self) -> FrameSet:
        kept = self.kept
        if len(kept) > self.limits.max_frames:
            step = len(kept) / self.limits.max_frames
            kept = [kept[int(i * step)] for i in range(self.limits.max_frames)]
        return FrameSet(
            pixels=np.stack([k[3] for k in kept]),
            indices=tuple(k[0] for k in kept),
            timestamps_ms=tuple(k[1] for k in kept),
            total=self.total,
            distinct=self.distinct,
            overflow=self.distinct > self.limits.max_frames,
            animated=self.total > 1,
            hashes=tuple(k[4] for k in kept) if self.hasher is not None else (),
        )


def decode_frames(
    data: bytes,
    limits: DecodeLimits,
    frames: FrameLimits,
    prepare: Callable[[Image.Image], np.ndarray],
    hasher: Callable[[Image.Image], Any] | None = None,
    draft_side: int | None = None,
) -> FrameSet:
    """Decode, select and ``prepare`` (preprocess) the frames of one image file; ``hasher``, if
    given, is called on each kept frame's RGB image (FrameSet.hashes).

    ``draft_side``: a JPEG whose shorter side is at least twice this is decoded at a reduced DCT
    scale (1/2, 1/4 or 1/8: Pillow's ``draft``, libjpeg's scaled IDCT) to the smallest size whose
    shorter side is still at least this. Most of a large photo's decode and resize time goes into
    pixels the model's input throws away; the caller picks the side (twice the model input, and
    PDQ's working size when hashing) and measures what it costs (docs/benchmarks.md#decode).

    Raises:
        InvalidMessage, UnsupportedFormat: as :func:`~moderator.media.decode.decode_image`.
        ImageTooLarge: a size, frame-count, total-pixel or decode-time limit is exceeded.
        UndecodableImage: corrupt or truncated data (in any frame).
    """
    img = open_image(data, limits)
    fmt = img.format
    if draft_side and fmt == "JPEG" and min(img.size) >= 2 * draft_side:
        w, h = img.size
        scale = draft_side / min(w, h)
        try:
            img.draft("RGB", (math.ceil(w * scale), math.ceil(h * scale)))
        except DECODE_ERRORS as exc:
            raise UndecodableImage(f"corrupt JPEG header: {exc}") from exc
    selector = FrameSelector(frames, prepare, fmt or "image", hasher)
    clock_ms = 0
    exif = None
    while True:
        index = selector.total
        try:
            if index:
                img.seek(index)
            img.load()
        except EOFError:
            if index == 0:
                raise UndecodableImage(f"{fmt} has no frame") from None
            break
        except DECODE_ERRORS as exc:
            raise UndecodableImage(f"corrupt or truncated {fmt} data in frame {index}: {exc}") from exc
        check_size(img, limits)
        selector.admit(*img.size)
        try:
            if index == 0:
                exif = img.getexif()
            rgb = to_rgb(_oriented(img, exif), limits.background)
        except DECODE_ERRORS as exc:
            raise UndecodableImage(f"corrupt {fmt} frame {index}: {exc}") from exc
        animated = getattr(img, "is_animated", False) or getattr(img, "n_frames", 1) > 1
        selector.add(rgb, clock_ms, only_frame=not animated)
        clock_ms += _duration_ms(img)
        if not animated:
            break
    return selector.result()


def thumbnail_of(img: Image.Image) -> np.ndarray:
    """``THUMB x THUMB`` RGB box averages of a frame: every pixel counts (a small object moves a
    cell's mean), unlike point sampling. ``reduce`` first: 0.3 ms for 640x480, against 1.1 ms for
    one bilinear resize."""
    factor = (max(1, img.width // THUMB), max(1, img.height // THUMB))
    small = img.reduce(factor) if factor != (1, 1) else img
    return np.asarray(small.resize((THUMB, THUMB), Image.Resampling.BOX))


def _as_signal(thumbnail: np.ndarray) -> np.ndarray:
    return np.asarray(thumbnail, dtype=np.float32) / 255.0


def _oriented(img: Image.Image, exif) -> Image.Image:
    """EXIF orientation of the file (read from the first frame) applied to a frame."""
    orientation = exif.get(0x0112) if exif else None
    if not orientation or orientation == 1:
        return img
    frame = img.copy()
    frame.getexif()[0x0112] = orientation
    return ImageOps.exif_transpose(frame) or frame


def _duration_ms(img: Image.Image) -> int:
    value = img.info.get("duration")
    try:
        return max(0, int(value)) if value is not None else 0
    except (TypeError, ValueError, OverflowError):
        return 0
