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

import time
from collections.abc import Callable
from dataclasses import dataclass, field

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
    max_decode_seconds: float = 10.0
    change_threshold: float = 0.02


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


def decode_frames(data: bytes, limits: DecodeLimits, frames: FrameLimits,
                  prepare: Callable[[Image.Image], np.ndarray]) -> FrameSet:
    """Decode, select and ``prepare`` (preprocess) the frames of one image file.

    Raises:
        InvalidMessage, UnsupportedFormat: as :func:`~moderator.media.decode.decode_image`.
        ImageTooLarge: a size, frame-count, total-pixel or decode-time limit is exceeded.
        UndecodableImage: corrupt or truncated data (in any frame).
    """
    img = open_image(data, limits)
    fmt = img.format
    deadline = time.monotonic() + frames.max_decode_seconds
    kept: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # (index, timestamp, thumbnail, pixels)
    stride = 1  # keep every stride-th distinct frame (doubles each time the buffer is decimated)
    distinct = 0
    total_pixels = 0
    clock_ms = 0
    index = 0
    exif = None
    while True:
        if index >= frames.max_decoded_frames:
            raise ImageTooLarge(f"{fmt} has more than {frames.max_decoded_frames} frames (media.max_decoded_frames)")
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
        total_pixels += img.size[0] * img.size[1]
        if total_pixels > frames.max_total_pixels:
            raise ImageTooLarge(f"{fmt} frames add up to more than {frames.max_total_pixels} pixels (media.max_total_pixels)")
        if time.monotonic() > deadline:
            raise ImageTooLarge(f"decoding {fmt} took over {frames.max_decode_seconds:g}s at frame {index} (media.max_decode_seconds)")
        try:
            if index == 0:
                exif = img.getexif()
            rgb = to_rgb(_oriented(img, exif), limits.background)
        except DECODE_ERRORS as exc:
            raise UndecodableImage(f"corrupt {fmt} frame {index}: {exc}") from exc
        thumb = np.asarray(rgb.resize((THUMB, THUMB), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
        if not kept or min(float(np.abs(thumb - k[2]).mean()) for k in kept) >= frames.change_threshold:
            distinct += 1
            if (distinct - 1) % stride == 0:
                kept.append((index, clock_ms, thumb, prepare(rgb)))
                if len(kept) >= 2 * frames.max_frames:
                    kept = kept[::2]
                    stride *= 2
        clock_ms += _duration_ms(img)
        index += 1
        if not getattr(img, "is_animated", False) and getattr(img, "n_frames", 1) == 1:
            break
    overflow = distinct > frames.max_frames
    if len(kept) > frames.max_frames:
        step = len(kept) / frames.max_frames
        kept = [kept[int(i * step)] for i in range(frames.max_frames)]
    return FrameSet(
        pixels=np.stack([k[3] for k in kept]),
        indices=tuple(k[0] for k in kept),
        timestamps_ms=tuple(k[1] for k in kept),
        total=index,
        distinct=distinct,
        overflow=overflow,
        animated=index > 1,
    )


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
