"""Procedural photo-like images for the known-content tests: smooth colour fields, overlapping
shapes, blur and sensor noise, all from a seed. Not pictograms: they have the textures and
gradients that PDQ sees in real photos."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Pillow's transformation of a frame that each of its PDQ turns stands for (hashing.compute.TURNS).
PILLOW_TURNS = {
    "rotate90": Image.Transpose.ROTATE_90,
    "rotate180": Image.Transpose.ROTATE_180,
    "rotate270": Image.Transpose.ROTATE_270,
    "flip": Image.Transpose.FLIP_TOP_BOTTOM,
    "mirror": Image.Transpose.FLIP_LEFT_RIGHT,
    "transpose": Image.Transpose.TRANSPOSE,
    "transverse": Image.Transpose.TRANSVERSE,
}


def scene(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        a, b, phase = rng.normal(size=3)
        base[..., c] = 128 + 60 * np.sin(a * xx / w * 3 + b * yy / h * 3 + phase)
    img = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(8, 30))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(max(4, w // 40), max(5, w // 3)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + int(r * rng.uniform(0.3, 1.5))], fill=colour)
        else:
            draw.polygon([(x0 + int(rng.integers(-r, r)), y0 + int(rng.integers(-r, r))) for _ in range(int(rng.integers(3, 7)))], fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))
    noise = rng.normal(0, rng.uniform(2, 12), (h, w, 3))
    return Image.fromarray((np.asarray(img, np.float32) + noise).clip(0, 255).astype(np.uint8))


def encode(img: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def variants(img: Image.Image) -> dict[str, Image.Image]:
    """Near-duplicates, as reposts make them: re-encoded, resized, converted, bordered, marked,
    cropped. PDQ is not made for crops and borders: over about 1% a side they move it past the
    default threshold (docs/benchmarks.md#hashing), so these are the small ones."""
    w, h = img.size
    pad = max(1, w // 200)
    low = Image.open(io.BytesIO(encode(img, "JPEG", quality=25))).convert("RGB")
    png_to_jpeg = Image.open(io.BytesIO(encode(Image.open(io.BytesIO(encode(img, "PNG"))), "JPEG", quality=85))).convert("RGB")
    bordered = Image.new("RGB", (w + 2 * pad, h + 2 * pad), (255, 255, 255))
    bordered.paste(img, (pad, pad))
    marked = img.copy()
    ImageDraw.Draw(marked).text((w - w // 6, h - h // 16), "@repost", fill=(255, 255, 255))
    return {
        "jpeg quality 25": low,
        "half size": img.resize((w // 2, h // 2), Image.Resampling.BILINEAR),
        "png then jpeg": png_to_jpeg,
        "border 0.5%": bordered,
        "text watermark": marked,
        "crop 0.5%": img.crop((pad, pad, w - pad, h - pad)),
    }
