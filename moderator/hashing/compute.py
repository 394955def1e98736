"""The two hashes of an image: SHA-256 of its bytes (exact copies) and PDQ of its pixels (near
copies: re-encoded, resized, lightly edited).

PDQ (Meta's perceptual hash, ``pdqhash``): 256 bits and a quality from 0 to 100 (how much
structure the image has; flat images have low quality and their hashes match too easily to be
trusted). It is computed on the decoded frame, before any preprocessing. Frames whose shorter
side is over :data:`PDQ_MIN_SIDE` are first shrunk by an integer factor to at least that side
(box filter, Pillow's ``reduce``): PDQ itself box-filters to 64x64, so this changes no bit on the
images measured (docs/benchmarks.md#hashing) and costs a fraction of hashing 12 MP directly.

Mirror images and quarter turns: PDQ's dihedral hashes (``pdqhash.compute_dihedral``, the same
DCT read in the 8 orientations, at no measurable cost over one hash) give, beside a frame's own
hash, the hashes of the frame mirrored, flipped and turned (:data:`TURNS`), within 0-20 bits of
hashing the transformed frame itself (measured: docs/benchmarks.md#mirror-images-and-turns). A
deny bank is looked up with all eight, so a mirrored or rotated repost of banked content still
matches.

Borders: a uniform border added around a picture moves its PDQ past any threshold (2 % a side:
30-34 bits; 5 %: ~70). A frame whose edges are one colour has that border cut off
(:func:`content_box`) and is hashed again, with its turns, for deny banks: within 2-14 bits of
the picture without the border (docs/benchmarks.md#borders). A frame without a uniform edge
costs four line checks (~0.1 ms); one with such an edge (a plain background counts) a scan of
a thumbnail (~1 ms) and a second PDQ of what is inside.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

PDQ_BITS = 256
PDQ_BYTES = PDQ_BITS // 8
HEX_CHARS = 64  # both hashes are 256 bits
PDQ_MIN_SIDE = 512
# The transformations that, applied to a frame, give what its dihedral hashes describe, in
# pdqhash.compute_dihedral's order after the original (rotations counter-clockwise, as Pillow's
# Image.Transpose.ROTATE_90; mirror: left-right, flip: top-bottom; checked by
# tests/unit/test_hashing.py against hashes of the transformed frames).
TURNS = ("rotate90", "rotate180", "rotate270", "flip", "mirror", "transpose", "transverse")
TURN_WORDS = {
    "rotate90": "turned 90° counter-clockwise",
    "rotate180": "turned upside down",
    "rotate270": "turned 90° clockwise",
    "flip": "flipped top to bottom",
    "mirror": "mirrored",
    "transpose": "mirrored about its main diagonal",
    "transverse": "mirrored about its other diagonal",
}


def one_per_frame(pdq: Sequence[PdqHash], frames: Sequence[int] | None = None) -> list[int]:
    """Positions of the hashes to look up and show: a frame scored as several squares (its crops,
    ``media.crops``) has its one hash on each of its rows, and the repeats are left out. ``frames``:
    the frame of each row (``FrameSet.indices``), when known."""
    return [i for i, h in enumerate(pdq) if not (i and h == pdq[i - 1] and (frames is None or frames[i] == frames[i - 1]))]


@dataclass(frozen=True)
class PdqHash:
    bits: bytes  # 32 bytes, most significant bit first as in the hex form
    quality: int
    turns: tuple[bytes, ...] = ()  # the hashes of the frame transformed as TURNS says (empty: not computed)
    trimmed: PdqHash | None = None  # the frame with its uniform border cut off (None: no border, or not computed)

    @property
    def hex(self) -> str:
        return self.bits.hex()


@dataclass(frozen=True)
class Hashes:
    """The hashes of one message: SHA-256 of its image bytes, PDQ of each kept frame (in the
    order of the frames scored; empty when PDQ is off or the image was not decoded)."""

    sha256: bytes
    pdq: tuple[PdqHash, ...] = ()


def sha256_of(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def pdq_of(image: Image.Image, turns: bool = False, trim: bool = False) -> PdqHash:
    """PDQ hash and quality of an RGB (or L) image; with ``turns``, its dihedral hashes too; with
    ``trim``, the hash of what is inside its uniform border, if it has one."""
    side = min(image.size)
    factor = side // PDQ_MIN_SIDE
    if factor > 1:
        image = image.reduce(factor)
    if image.mode != "RGB":
        image = image.convert("RGB")
    pixels = np.ascontiguousarray(np.asarray(image))
    found = _pdq(pixels, turns)
    box = content_box(pixels) if trim else None
    if box is None:
        return found
    top, bottom, left, right = box
    return dataclasses.replace(found, trimmed=_pdq(np.ascontiguousarray(pixels[top:bottom, left:right]), turns))


def _pdq(pixels: np.ndarray, turns: bool) -> PdqHash:
    import pdqhash  # a runtime dependency; imported here so that importing this module stays cheap

    if not turns:
        vector, quality = pdqhash.compute(pixels)
        return PdqHash(_packed(vector), int(quality))
    vectors, quality = pdqhash.compute_dihedral(pixels)
    return PdqHash(_packed(vectors[0]), int(quality), tuple(_packed(v) for v in vectors[1:]))


# A border: lines from an edge inward of one colour, give or take BORDER_TOLERANCE levels (JPEG
# ringing along its inner edge) on BORDER_SHARE of their pixels; cut off when it is at least
# MIN_BORDER_SHARE of the frame's height or width (thinner ones keep PDQ within its threshold)
# and leaves at least MIN_CONTENT_SHARE of both (else the frame is mostly one colour: PDQ's
# quality floor is for those).
BORDER_TOLERANCE = 24
BORDER_SHARE = 0.98
MIN_BORDER_SHARE = 0.01
MIN_CONTENT_SHARE = 0.25
THUMB_SIDE = 128  # the border is found on a thumbnail of about this shorter side, then refined


def content_box(pixels: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(top, bottom, left, right)`` of what is inside the uniform border of an RGB frame
    (``uint8 [H, W, 3]``), or None when it has none worth cutting."""
    h, w = pixels.shape[:2]
    if min(h, w) < 8 or not any(_edge_uniform(line) for line in (pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1])):
        return None  # the common case: four lines looked at
    f = max(1, min(h, w) // THUMB_SIDE)
    thumb = np.asarray(Image.fromarray(pixels).reduce(f)) if f > 1 else pixels
    across, full_across = thumb.transpose(1, 0, 2), pixels.transpose(1, 0, 2)
    top, bottom = _border(thumb, pixels, f), _border(thumb[::-1], pixels[::-1], f)
    left, right = _border(across, full_across, f), _border(across[::-1], full_across[::-1], f)
    if top + bottom < MIN_BORDER_SHARE * h and left + right < MIN_BORDER_SHARE * w:
        return None
    if h - top - bottom < MIN_CONTENT_SHARE * h or w - left - right < MIN_CONTENT_SHARE * w:
        return None
    return top, h - bottom, left, w - right


def _uniform(lines: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """For each line (``[..., L, 3]``): are nearly all its pixels of ``colour``?"""
    near = np.abs(lines.astype(np.int16) - np.round(colour).astype(np.int16)) <= BORDER_TOLERANCE
    inside = near[..., 0] & near[..., 1] & near[..., 2]  # (not a max over the short last axis: slow in numpy)
    return np.count_nonzero(inside, axis=-1) >= BORDER_SHARE * lines.shape[-2]


def _edge_uniform(line: np.ndarray) -> bool:
    line = line[::4]
    return bool(_uniform(line, np.median(line, axis=0)))


def _border(thumb: np.ndarray, full: np.ndarray, f: int) -> int:
    """How many lines of ``full`` (from its edge inward) are of its edge's colour; ``thumb`` is
    ``full`` reduced ``f`` times: the run is found there, and its end in the ``f`` full lines that
    the first mixed thumbnail line covers."""
    colour = np.median(thumb[0], axis=0)
    ok = _uniform(thumb[: len(thumb) // 2], colour)
    if not len(ok) or not ok[0]:
        return 0
    n = len(ok) if ok.all() else int(np.argmin(ok))
    edge = _uniform(full[f * n : f * (n + 1)], colour)
    return f * n + (len(edge) if edge.all() else int(np.argmin(edge)))


def _packed(vector) -> bytes:
    return np.packbits(np.asarray(vector, dtype=np.uint8)).tobytes()


def parse_hex(text: str) -> bytes | None:
    """A 256-bit hash from its 64 hex digits (either case); None if it is not one."""
    if len(text) != HEX_CHARS:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def hamming(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()
