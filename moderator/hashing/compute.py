"""The two hashes of an image: SHA-256 of its bytes (exact copies) and PDQ of its pixels (near
copies: re-encoded, resized, lightly edited).

PDQ (Meta's perceptual hash, ``pdqhash``): 256 bits and a quality from 0 to 100 (how much
structure the image has; flat images have low quality and their hashes match too easily to be
trusted). It is computed on the decoded frame, before any preprocessing. Frames whose shorter
side is over :data:`PDQ_MIN_SIDE` are first shrunk by an integer factor to at least that side
(box filter, Pillow's ``reduce``): PDQ itself box-filters to 64x64, so this changes no bit on the
images measured (docs/benchmarks.md#hashing) and costs a fraction of hashing 12 MP directly.
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


def one_per_frame(pdq: Sequence[PdqHash], frames: Sequence[int] | None = None) -> list[int]:
    """Positions of the hashes to look up and show: a frame scored as several squares (its crops,
    ``media.crops``) has its one hash on each of its rows, and the repeats are left out. ``frames``:
    the frame of each row (``FrameSet.indices``), when known."""
    return [i for i, h in enumerate(pdq) if not (i and h == pdq[i - 1] and (frames is None or frames[i] == frames[i - 1]))]


@dataclass(frozen=True)
class PdqHash:
    bits: bytes  # 32 bytes, most significant bit first as in the hex form
    quality: int

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


def pdq_of(image: Image.Image) -> PdqHash:
    """PDQ hash and quality of an RGB (or L) image."""
    import pdqhash  # a runtime dependency; imported here so that importing this module stays cheap

    side = min(image.size)
    factor = side // PDQ_MIN_SIDE
    if factor > 1:
        image = image.reduce(factor)
    if image.mode != "RGB":
        image = image.convert("RGB")
    vector, quality = pdqhash.compute(np.ascontiguousarray(np.asarray(image)))
    return PdqHash(np.packbits(np.asarray(vector, dtype=np.uint8)).tobytes(), int(quality))


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
