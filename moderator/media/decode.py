"""Decode untrusted bytes into an RGB ``PIL.Image``, refusing what could hurt the service.

Order matters: the byte size is checked first, then the format is identified and the declared
dimensions checked from the header alone (before any pixel is decoded, so a decompression bomb
costs nothing), then the first frame is decoded, EXIF orientation applied, and the mode
converted to RGB (transparency composited over a background colour).

Reading the header has a budget of read calls (:data:`MAX_HEADER_READS`): Pillow's JPEG and GIF
openers scan for markers one byte per call, so 20 MiB of zeros behind a JPEG or GIF signature
took seconds to refuse; with the budget it is refused after a few milliseconds. Real headers
need tens to hundreds of reads.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from moderator.errors import ImageTooLarge, InvalidMessage, UndecodableImage, UnsupportedFormat

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x1f\x8b", "gzip"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
    (b"\x00\x00\x00", "ISO media (HEIC/AVIF/MP4)"),
    (b"{", "JSON"),
)


# Read calls allowed while Pillow parses the header (see the module docstring).
MAX_HEADER_READS = 65_536


class _HeaderTooLong(Exception):
    """Raised out of Pillow's opener when the header budget is spent (propagates through open())."""


class _BudgetedBytes(io.BytesIO):
    """Bytes whose ``read`` calls are counted while ``reads_left`` is set (the header phase)."""

    def __init__(self, data: bytes, reads: int) -> None:
        super().__init__(data)
        self.reads_left: int | None = reads

    def read(self, size: int | None = -1) -> bytes:
        if self.reads_left is not None:
            self.reads_left -= 1
            if self.reads_left < 0:
                raise _HeaderTooLong
        return super().read(size)


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_side: int = 20_000
    background: tuple[int, int, int] = (255, 255, 255)
    second_background: tuple[int, int, int] | None = (54, 57, 63)  # frames with transparency: also over this (renderings())


def decode_image(data: bytes, limits: DecodeLimits) -> Image.Image:
    """Decode ``data`` to an RGB image (first frame of animations, EXIF orientation applied).

    The service decodes every frame (:func:`moderator.media.frames.decode_frames`); this is for
    single pictures (policy example images, tools).

    Raises:
        InvalidMessage: empty input.
        ImageTooLarge: over the byte, pixel or side limits (checked before decoding pixels).
        UnsupportedFormat: not one of JPEG, PNG, WebP, GIF, BMP, TIFF.
        UndecodableImage: a supported format whose data is corrupt or truncated.
    """
    img = open_image(data, limits)
    fmt = img.format
    try:
        img.seek(0)
        img.load()
        img = ImageOps.exif_transpose(img) or img
    except DECODE_ERRORS as exc:
        raise UndecodableImage(f"corrupt or truncated {fmt} data: {exc}") from exc
    return to_rgb(img, limits.background)


def open_image(data: bytes, limits: DecodeLimits) -> Image.Image:
    """Identify the format and check the declared size from the header alone (no pixel decoded).

    Raises:
        InvalidMessage, ImageTooLarge, UnsupportedFormat, UndecodableImage: as :func:`decode_image`.
    """
    if not data:
        raise InvalidMessage("empty message value: no image bytes")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"encoded image is {len(data)} bytes, over the limit of {limits.max_bytes}")
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < limits.max_pixels:
        # Pillow's own bomb guard runs inside open(), before ours can; ours decides, so Pillow's
        # must not be lower than the configured limit (it is only ever raised, never disabled).
        Image.MAX_IMAGE_PIXELS = limits.max_pixels
    fp = _BudgetedBytes(data, MAX_HEADER_READS)
    try:
        # Pillow's DecompressionBombWarning needs no handling: its threshold is at least ours, so
        # our check below refuses every image it warns about. (warnings.catch_warnings here was
        # not thread-safe across the decode pool.)
        img = Image.open(fp, formats=FORMATS)
        fp.reads_left = None
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image declares more than {limits.max_pixels} pixels (media.max_pixels)") from exc
    except _HeaderTooLong as exc:
        raise UndecodableImage(f"no valid image header within {MAX_HEADER_READS} reads{_sniff(data)}") from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedFormat(f"not an image in a supported format ({', '.join(FORMATS)}){_sniff(data)}") from exc
    except DECODE_ERRORS as exc:
        raise UndecodableImage(f"cannot read image header: {exc}") from exc

    check_size(img, limits)
    return img


def check_size(img: Image.Image, limits: DecodeLimits) -> None:
    """Raises ImageTooLarge or UndecodableImage for a declared size out of bounds."""
    width, height = img.size
    if width <= 0 or height <= 0:
        raise UndecodableImage(f"{img.format} declares an empty size {width}x{height}")
    if width > limits.max_side or height > limits.max_side or width * height > limits.max_pixels:
        raise ImageTooLarge(f"{img.format} declares {width}x{height} pixels, over the limits (max side {limits.max_side}, max pixels {limits.max_pixels})")


# What Pillow raises on corrupt or crafted data: besides its own OSError and SyntaxError, the
# errors of Python code indexing, unpacking and computing with values read from the file. Found by
# the fuzzer (tests/fuzz/corpus/image, tests/unit/test_decode.py): TypeError (a TIFF whose
# StripOffsets tag is text), KeyError (a TIFF page missing a tag its loader looks up), struct.error
# (a GIF extension block shorter than its fields). LookupError covers IndexError and KeyError;
# ArithmeticError covers a division by a zero or an overflow from a field.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, LookupError, TypeError, ArithmeticError, struct.error)


def silence_decoder_warnings() -> None:
    """Keep Pillow's remarks about images out of the logs (call once at start).

    Pillow warns about what it finds in images ("Corrupt EXIF data", "Truncated File Read", its
    own bomb threshold): the image's author chooses those lines, and what matters about an image
    is in its verdict or dead letter.
    """
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # 16- and 32-bit greyscale: no alpha
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def _has_alpha(img: Image.Image) -> bool:
    """An alpha channel, or a palette/greyscale colour declared transparent."""
    return img.mode in _ALPHA_MODES or (img.mode not in _WIDE_MODES and "transparency" in img.info)


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any PIL mode to RGB the way a viewer would see it.

    Transparency (RGBA, LA, PA, P or L with a transparent colour) is composited over
    ``background``; 16- and 32-bit greyscale is scaled to 8 bits rather than clipped.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _WIDE_MODES:
        arr = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            arr = arr / 257.0
        else:
            lo, hi = float(arr.min()), float(arr.max())
            if lo < 0 or hi > 255:
                arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L").convert("RGB")
    if _has_alpha(img):
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return img.convert("RGB")


def renderings(img: Image.Image, background: tuple[int, int, int], second: tuple[int, int, int] | None = None) -> list[Image.Image]:
    """A frame as viewers may see it, in RGB: over ``background``, and, when some pixel is not
    fully opaque and ``second`` is another colour, over ``second`` too. Which page a transparent
    image lands on is the viewer's (a light or a dark theme): a white drawing on a transparent
    background shows on a dark page and not on a white one, so both are scored."""
    if second is None or tuple(second) == tuple(background) or not _has_alpha(img):
        return [to_rgb(img, background)]
    rgba = img.convert("RGBA")
    if rgba.getchannel("A").getextrema()[0] == 255:  # an alpha channel, every pixel opaque
        return [rgba.convert("RGB")]
    return [to_rgb(rgba, background), to_rgb(rgba, second)]


def _sniff(data: bytes) -> str:
    head = data[:16].lstrip()
    for magic, name in _SIGNATURES:
        if head.startswith(magic):
            return f"; the bytes look like {name}"
    return ""
