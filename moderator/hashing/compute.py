"""The two hashes of an image: SHA-256 of its bytes (exact copies) and PDQ of its pixels (near
copies: re-encoded, resized, lightly edited).

PDQ (Meta's perceptual hash, ``pdqhash``): 256 bits and a quality from 0 to 100 (how much
structure the image has; flat images have low quality and their hashes match too easily to be
trusted). It is computed on the decoded frame, before any preprocessing. Frames whose shorter
side is over :data:`PDQ_MIN_SIDE` are first shrunk by an integer factor to at least that side
(box filter, Pillow's ``reduce``): PDQ itself box-filters to 64x64, so this changes no bit on the
images measured (docs/benchmarks.md#hashing) and costs a fraction of hashing 12 MP directly.

Mirror images and quarter turns: PDQ's dihedral hashes (``pdqhash.compute_dihedral``, the same
DCT read in the 8 orientations, ~8 % more than one hash) give, beside a frame's own hash, the
hashes of the frame mirrored, flipped and turned (:data:`TURNS`), within a few bits of hashing
the transformed frame itself (measured: docs/benchmarks.md#mirror-images-and-turns). A deny bank
is looked up with all eight, so a mirrored or rotated repost of banked content still matches.
"""

from __future__ import annotations

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


def pdq_of(image: Image.Image, turns: bool = False) -> PdqHash:
    """PDQ hash and quality of an RGB (or L) image; with ``turns``, its dihedral hashes too."""
    import pdqhash  # a runtime dependency; imported here so that importing this module stays cheap

    side = min(image.size)
    factor = side // PDQ_MIN_SIDE
    if factor > 1:
        image = image.reduce(factor)
    if image.mode != "RGB":
        image = image.convert("RGB")
    pixels = np.ascontiguousarray(np.asarray(image))
    if not turns:
        vector, quality = pdqhash.compute(pixels)
        return PdqHash(_packed(vector), int(quality))
    vectors, quality = pdqhash.compute_dihedral(pixels)
    return PdqHash(_packed(vectors[0]), int(quality), tuple(_packed(v) for v in vectors[1:]))


def pdq_with_turns(image: Image.Image) -> PdqHash:
    """:func:`pdq_of` with the dihedral hashes (a picklable hasher for decode processes)."""
    return pdq_of(image, turns=True)


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
