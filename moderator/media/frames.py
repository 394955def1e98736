"""Every frame a viewer sees: the frames of animated and multi-image files, selected so that cost
is bounded and timing cannot hide one.

Formats: GIF, APNG (its default image too, when it is not part of the animation: Pillow gives it
as frame 0), animated WebP and multi-page TIFF; a still image is one frame.

Selection (:func:`decode_frames`) decodes every frame, in order, and keeps a frame unless what the
model would see of it is within ``change_threshold`` (0..1) of a kept frame's at every pixel and
channel: the model's input grid, each pixel the average of the source pixels under it
(:meth:`~moderator.media.preprocess.Preprocessor.view`). A whole-frame measure let content
through: a knife at the size the default model is trained on, drawn after a blank first frame,
moved a 16x16 thumbnail's mean by under 2 %, and any thumbnail hides a knife drawn with a halo that
keeps each cell's average. The thumbnail only saves work: a kept frame with a cell further off
than the threshold (a cell averages the pixels under it) is not compared pixel for pixel, so the
thumbnail can keep a frame but never skip one. The default, 0.03 (8 levels of 255), is under the
faintest change measured to move the default model's scores (docs/policies.md#frames). Frame
durations are never read for selection, so a frame shown for 20 ms counts like one shown for 20 s.
A frame with transparency is two renderings, over a light and a dark page
(:func:`~moderator.media.decode.renderings`), each selected like a frame, with the frame's index.

When a message has more distinct frames than ``max_frames``, the kept set is an even sample of
the distinct ones (decimated in place, so at most ``2 * max_frames`` preprocessed frames are held)
and the result says it overflowed; the policy decides what an overflow means
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
from moderator.media.decode import DECODE_ERRORS, DecodeLimits, check_size, open_image, renderings
from moderator.media.preprocess import Preprocessor

THUMB = 16
NEAREST = 4  # kept frames a new one is compared with pixel for pixel, nearest thumbnails first


@dataclass(frozen=True)
class FrameLimits:
    max_frames: int = 32
    max_decoded_frames: int = 2_000
    max_total_pixels: int = 400_000_000
    max_decode_seconds: float = 30.0
    change_threshold: float = 0.03
    max_video_seconds: float = 600.0


@dataclass(frozen=True)
class FrameSet:
    """The kept frames of one message, preprocessed, with where they are in the file."""

    pixels: np.ndarray  # uint8 [R, S, S, 3]: a row per square scored (a frame may have several: renderings, crops)
    indices: tuple[int, ...]  # frame number in the file of each row (repeated for the squares of one frame)
    timestamps_ms: tuple[int, ...]  # when each row's frame is first shown (sum of earlier durations)
    total: int  # frames in the file
    distinct: int  # frames that differ from every one kept before them in what the model sees
    # Not all was scored: more distinct frames than max_frames (the kept ones are an even sample),
    # a video that stopped early, or a frame its squares do not cover.
    overflow: bool
    animated: bool = field(default=False)
    hashes: tuple = ()  # what the selector's ``hasher`` made of each row's frame (empty without one)
    uncovered: bool = False  # some frame is too long for media.max_crops squares to reach every part of it

    @property
    def scored(self) -> int:
        """Frames scored (a frame's renderings and crops are one frame)."""
        return len(set(self.indices))


@dataclass(frozen=True, slots=True)
class _Kept:
    index: int
    timestamp_ms: int
    thumb: np.ndarray | None  # None for a still: nothing is compared with it
    pixels: np.ndarray  # the prepared square, encoded
    digest: Any  # the hasher's result
    seen: np.ndarray  # what frames are compared by (the view)


class FrameSelector:
    """Keeps frames by content as they are decoded, for images and video alike (module docstring):
    bounded memory (at most ``2 * max_frames`` prepared frames) and bounded work (the whole
    message's frames, pixels and decode time)."""

    def __init__(
        self, frames: FrameLimits, prepare: Callable[[Image.Image], np.ndarray], what: str, hasher: Callable[[Image.Image], Any] | None = None
    ) -> None:
        self.limits = frames
        self.prepare = prepare
        # What frames are compared by: a Preprocessor's view (the model's grid, box-averaged);
        # any other prepare function's own output.
        self.view: Callable[[Image.Image], np.ndarray] = prepare.view if isinstance(prepare, Preprocessor) else prepare
        # What is scored of a kept frame: a Preprocessor's squares (one or more, ``media.crops``);
        # any other prepare function's output, as one.
        self.squares: Callable[[Image.Image], np.ndarray] = prepare.squares if isinstance(prepare, Preprocessor) else lambda img: prepare(img)[None]
        self._covers: Callable[[tuple[int, int]], bool] = prepare.covers if isinstance(prepare, Preprocessor) else lambda _size: True
        self.uncovered = False  # a kept frame too long for its squares to reach every part of it
        self.hasher = hasher
        self.what = what
        self.deadline = time.monotonic() + frames.max_decode_seconds
        self.kept: list[_Kept] = []
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

    def add(
        self,
        rgb: Image.Image | Callable[[], Image.Image],
        timestamp_ms: int,
        thumbnail: np.ndarray | None = None,
        only_frame: bool = False,
        view: np.ndarray | None = None,
        same_frame: bool = False,
    ) -> None:
        """Consider one decoded frame (call :meth:`admit` first): an RGB image, or, with its
        ``THUMB x THUMB`` RGB ``thumbnail`` (and its ``view``: video's, from FFmpeg's scaler), a
        function making the image only when needed. ``only_frame`` (a still image) skips the
        thumbnail: there is nothing to compare it with. ``same_frame``: another rendering of the
        frame added last (:func:`~moderator.media.decode.renderings`), compared and kept like a
        frame of its own, with the same index and time."""
        index = self.total - 1 if same_frame and self.total else self.total
        self.total = index + 1
        made: list[Image.Image] = []

        def image() -> Image.Image:  # the RGB frame, made once and only when needed
            if not made:
                made.append(rgb() if callable(rgb) else rgb)
            return made[0]

        thumb = None
        seen = None
        if not only_frame:
            thumb = _as_signal(thumbnail if thumbnail is not None else thumbnail_of(image()))
            # Skipped only if what the model would see of it matches a kept frame's at every pixel;
            # the thumbnails (cell averages) only spare that comparison with frames far off, and
            # pick the few nearest to compare with (fewer comparisons can only keep more frames).
            threshold = self.limits.change_threshold
            near = sorted((d, i) for i, k in enumerate(self.kept) if k.thumb is not None and (d := float(np.abs(thumb - k.thumb).max())) < threshold)[:NEAREST]
            if near:
                seen = view if view is not None else self.view(image())
                if any(largest_difference(seen, self.kept[i].seen) < threshold for _, i in near):
                    return
        self.distinct += 1
        if (self.distinct - 1) % self.stride == 0:
            digest = self.hasher(image()) if self.hasher is not None else None
            pixels = self.squares(image())
            self.uncovered = self.uncovered or not self._covers(image().size)
            if thumb is not None and seen is None:
                seen = view if view is not None else pixels[0] if self.view is self.prepare else self.view(image())
            self.kept.append(_Kept(index, timestamp_ms, thumb, pixels, digest, seen if seen is not None else pixels[0]))
            if len(self.kept) >= 2 * self.limits.max_frames:
                self.kept = self.kept[::2]
                self.stride *= 2

    def result(self) -> FrameSet:
        kept = self.kept
        if len(kept) > self.limits.max_frames:
            step = len(kept) / self.limits.max_frames
            kept = [kept[int(i * step)] for i in range(self.limits.max_frames)]
        rows = [len(k.pixels) for k in kept]  # a frame's squares are rows of their own, with its index, time and hash
        return FrameSet(
            pixels=np.concatenate([k.pixels for k in kept]),
            indices=tuple(k.index for k, n in zip(kept, rows) for _ in range(n)),
            timestamps_ms=tuple(k.timestamp_ms for k, n in zip(kept, rows) for _ in range(n)),
            total=self.total,
            distinct=self.distinct,
            overflow=self.distinct > self.limits.max_frames or self.uncovered,
            animated=self.total > 1,
            hashes=tuple(k.digest for k, n in zip(kept, rows) for _ in range(n)) if self.hasher is not None else (),
            uncovered=self.uncovered,
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
        except EOFError:
            break
        except Image.DecompressionBombError as exc:  # a frame (or a GIF canvas it enlarges) far over Pillow's own bound
            raise ImageTooLarge(f"{fmt} frame {index} is far over the pixel limits: {exc}") from exc
        except DECODE_ERRORS as exc:
            raise UndecodableImage(f"corrupt {fmt} frame {index}: {exc}") from exc
        # A later frame declares its own size (multi-page TIFF; a GIF frame may enlarge the
        # canvas): checked, and counted against the message's bounds, before its pixels are.
        check_size(img, limits)
        selector.admit(*img.size)
        try:
            img.load()
        except EOFError:
            if index == 0:
                raise UndecodableImage(f"{fmt} has no frame") from None
            raise UndecodableImage(f"truncated {fmt} data in frame {index}") from None
        except DECODE_ERRORS as exc:
            raise UndecodableImage(f"corrupt or truncated {fmt} data in frame {index}: {exc}") from exc
        try:
            if index == 0:
                exif = img.getexif()
            rendered = renderings(_oriented(img, exif), limits.background, limits.second_background)
            # Pillow reads ahead to answer this (a GIF's next frame header), so it parses too.
            animated = getattr(img, "is_animated", False) or getattr(img, "n_frames", 1) > 1
        except DECODE_ERRORS as exc:
            raise UndecodableImage(f"corrupt {fmt} frame {index}: {exc}") from exc
        for i, rgb in enumerate(rendered):
            selector.add(rgb, clock_ms, only_frame=not animated and len(rendered) == 1, same_frame=i > 0)
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


def largest_difference(a: np.ndarray, b: np.ndarray) -> float:
    """The largest difference between two frames' views (uint8) at any pixel and channel, 0..1;
    infinite for views of different shapes (frames of different proportions, with ``cover``)."""
    if a.shape != b.shape:
        return math.inf
    return float((np.maximum(a, b) - np.minimum(a, b)).max()) / 255.0


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
