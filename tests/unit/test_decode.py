from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from moderator.errors import ImageTooLarge, InvalidMessage, UndecodableImage, UnsupportedFormat
from moderator.local.samples import bomb_png, draw, encode
from moderator.media.decode import DecodeLimits, decode_image, to_rgb

LIMITS = DecodeLimits()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_every_supported_format_decodes_to_rgb(fmt):
    img = decode_image(encode(draw("square", (200, 20, 20), (64, 48)), fmt), LIMITS)
    assert img.mode == "RGB" and img.size == (64, 48)


def test_rgba_is_composited_over_the_background():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    rgba.putpixel((0, 0), (0, 0, 255, 255))  # one opaque blue pixel
    out = decode_image(encode(rgba, "PNG"), DecodeLimits(background=(10, 20, 30)))
    assert out.getpixel((1, 1)) == (10, 20, 30), "transparent pixels show the background, not their hidden colour"
    assert out.getpixel((0, 0)) == (0, 0, 255)


def test_palette_with_transparent_index():
    p = Image.new("P", (4, 4), 0)
    p.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    p.putpixel((0, 0), 1)
    out = decode_image(encode(p, "PNG", transparency=0), LIMITS)
    assert out.getpixel((2, 2)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (0, 255, 0)


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    arr = np.full((4, 4), 32896, np.uint16)  # 0x8080: mid grey
    img = decode_image(encode(Image.fromarray(arr), "PNG"), LIMITS)
    assert img.getpixel((0, 0)) == (128, 128, 128)


def test_cmyk_and_greyscale_jpeg():
    assert decode_image(encode(draw("circle", (0, 0, 0), mode="CMYK"), "JPEG"), LIMITS).mode == "RGB"
    assert decode_image(encode(draw("circle", (0, 0, 0), mode="L"), "JPEG"), LIMITS).mode == "RGB"


def test_32bit_integer_greyscale_is_rescaled():
    img = Image.fromarray(np.asarray([[0, 1000], [500, 1000]], np.int32), "I")
    out = to_rgb(img)
    assert out.getpixel((0, 0)) == (0, 0, 0) and out.getpixel((1, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (255, 255, 255))
    img.paste((255, 0, 0), (0, 0, 10, 20))  # red strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    out = decode_image(encode(img, "JPEG", exif=exif, quality=95), LIMITS)
    assert out.size == (20, 40)
    r, g, b = out.getpixel((10, 2))
    assert r > 200 and g < 60, "the left strip is on top after a clockwise rotation"


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (8, 8), (255, 0, 0)).convert("P"), Image.new("RGB", (8, 8), (0, 0, 255)).convert("P")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    r, g, b = decode_image(data, LIMITS).getpixel((4, 4))
    assert r > 200 and b < 60


def test_limits_are_checked_before_decoding():
    with pytest.raises(ImageTooLarge, match=r"declares more than 50000000 pixels \(media.max_pixels\)"):
        decode_image(bomb_png(), LIMITS)
    with pytest.raises(ImageTooLarge, match="declares 2000x1000 pixels"):
        decode_image(bomb_png(2000, 1000), DecodeLimits(max_pixels=1_000_000))
    with pytest.raises(ImageTooLarge, match="max side 500"):
        decode_image(bomb_png(600, 10), DecodeLimits(max_side=500))
    with pytest.raises(ImageTooLarge, match="bytes, over the limit"):
        decode_image(b"\xff" * 101, DecodeLimits(max_bytes=100))


def test_broken_inputs_have_distinct_reasons():
    jpeg = encode(draw("circle", (1, 2, 3)), "JPEG")
    with pytest.raises(UndecodableImage, match="truncated"):
        decode_image(jpeg[: len(jpeg) // 2], LIMITS)
    with pytest.raises(UnsupportedFormat, match="look like PDF"):
        decode_image(b"%PDF-1.7 ...", LIMITS)
    with pytest.raises(UnsupportedFormat):
        decode_image(bytes(range(256)) * 4, LIMITS)
    with pytest.raises(InvalidMessage):
        decode_image(b"", LIMITS)
    with pytest.raises(UnsupportedFormat):  # SVG and others are not decoded
        decode_image(b"<svg xmlns='http://www.w3.org/2000/svg'/>", LIMITS)


def test_non_image_formats_pillow_knows_are_refused():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PPM")
    with pytest.raises(UnsupportedFormat):
        decode_image(buf.getvalue(), LIMITS)


def test_the_configured_pixel_limit_decides_not_pillows():
    """Pillow refuses over 89 M pixels by itself; a max_pixels above that is honoured, and the
    message quotes the configured limit, not Pillow's."""
    from moderator.errors import UndecodableImage

    limits = DecodeLimits(max_pixels=150_000_000, max_side=20_000)
    with pytest.raises(ImageTooLarge, match=r"declares 13000x12000 pixels, over the limits \(max side 20000, max pixels 150000000\)"):
        decode_image(bomb_png(13_000, 12_000), limits)
    # 100 M pixels: over Pillow's default guard, under the configured limit, so it is decoded (and
    # found truncated: the fixture has a header and 64 bytes of data).
    with pytest.raises(UndecodableImage, match="truncated"):
        decode_image(bomb_png(10_000, 10_000), limits)


@pytest.mark.parametrize("signature", [b"\xff\xd8\xff\xe0", b"GIF89a", b"GIF87a", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"BM"])
def test_a_signature_followed_by_megabytes_of_padding_is_refused_from_the_header(signature):
    """20 MiB of zeros behind a JPEG or GIF signature took Pillow seconds of one-byte reads; the
    header's read budget refuses it after a few thousand."""
    from moderator.errors import MessageError
    from moderator.media import decode as decode_module

    data = signature + b"\x00" * (20 * 1024 * 1024)
    reads = []
    original = decode_module._BudgetedBytes.read

    def counted(self, size=-1):
        reads.append(size)
        return original(self, size)

    decode_module._BudgetedBytes.read = counted
    try:
        with pytest.raises(MessageError):
            decode_image(data, DecodeLimits(max_bytes=32 * 1024 * 1024))
    finally:
        decode_module._BudgetedBytes.read = original
    assert len(reads) <= decode_module.MAX_HEADER_READS + 1, f"{len(reads)} reads"


def test_a_tiff_whose_strip_offsets_are_text_is_undecodable_not_a_type_error():
    """Found by the image fuzzer (tests/fuzz): Pillow's TIFF loader seeks to the StripOffsets tag's
    value, here an ASCII string, and raised TypeError past the decoder's error handling."""
    import base64

    crafted = base64.b64decode("SUkqAAgAAAAKAAABBAABAAAAIAAAAAEBBAABAAAAAQAAAAABAxABAAAAAgAAABEBAgABAAAAQAAAFwEA+vos+v36+g==")
    with pytest.raises(UndecodableImage):
        decode_image(crafted, DecodeLimits(max_pixels=4_000_000, max_side=4_000))
