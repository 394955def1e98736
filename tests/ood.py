"""Out-of-distribution pictures for the open-set test of the default model: pictures of none of its
classes. Written apart from the training generator (moderator.pictograms.nothing) and drawn
differently on purpose (other shapes, outlines, rings, conic and three-stop gradients, octave
noise, salt and pepper, landscapes, tests/scenes.py's photo-like scenes, other sizes), so the
figure says how the model does on pictures of nothing it was not trained on, not on its own
training distribution."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from tests.scenes import encode, scene

SIZES = ((64, 64), (200, 150), (256, 256), (150, 300), (400, 300), (640, 480))


def _rgb(g: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in g.integers(0, 256, 3))


def solid(g, size):
    # A third of them the plain pictures people upload most: white, black and greys.
    if g.random() < 0.33:
        v = int(g.choice([255, 0, 128, 240, 16, int(g.integers(0, 256))]))
        return Image.new("RGB", size, (v, v, v))
    return Image.new("RGB", size, _rgb(g))


def gradient(g, size):
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = g.integers(3)
    if kind == 0:  # three stops along an axis
        t = xx / w if g.random() < 0.5 else yy / h
        stops = np.array([_rgb(g) for _ in range(3)], np.float32)
        t2 = np.clip(t * 2, 0, 2)[..., None]
        img = np.where(t2 < 1, stops[0] * (1 - t2) + stops[1] * t2, stops[1] * (2 - t2) + stops[2] * (t2 - 1))
    elif kind == 1:  # conic
        t = ((np.arctan2(yy - h / 2, xx - w / 2) / (2 * math.pi)) + 0.5)[..., None]
        a, b = np.array(_rgb(g), np.float32), np.array(_rgb(g), np.float32)
        img = a * (1 - t) + b * t
    else:  # vignette
        t = (np.hypot(xx - w / 2, yy - h / 2) / np.hypot(w / 2, h / 2))[..., None] ** float(g.uniform(0.5, 2))
        a, b = np.array(_rgb(g), np.float32), np.array(_rgb(g), np.float32)
        img = a * (1 - t) + b * t
    return Image.fromarray(img.clip(0, 255).astype(np.uint8))


def noise(g, size):
    w, h = size
    kind = g.integers(3)
    if kind == 0:  # octave (fractal) noise
        img = np.zeros((h, w, 3), np.float32)
        for octave in range(1, 6):
            cells = 2**octave
            small = Image.fromarray(g.integers(0, 256, (cells, cells, 3)).astype(np.uint8))
            img += np.asarray(small.resize(size, Image.Resampling.BILINEAR), np.float32) / 2 ** (6 - octave)
        img = (img - img.min()) / max(1e-6, np.ptp(img)) * 255
    elif kind == 1:  # salt and pepper on a colour
        img = np.full((h, w, 3), _rgb(g), np.float32)
        mask = g.random((h, w))
        img[mask < 0.1] = 0
        img[mask > 0.9] = 255
    else:  # film grain
        img = np.full((h, w, 3), _rgb(g), np.float32) + g.normal(0, g.uniform(5, 40), (h, w, 1))
    return Image.fromarray(img.clip(0, 255).astype(np.uint8))


def shapes(g, size):
    w, h = size
    img = Image.new("RGB", size, _rgb(g))
    d = ImageDraw.Draw(img)
    for _ in range(int(g.integers(1, 10))):
        x, y, r = g.uniform(0, w), g.uniform(0, h), g.uniform(4, max(5, min(w, h) / 2))
        kind = g.integers(4)
        if kind == 0:  # star
            pts = [
                (x + (r if k % 2 == 0 else r / 2.5) * math.cos(k * math.pi / 5), y + (r if k % 2 == 0 else r / 2.5) * math.sin(k * math.pi / 5))
                for k in range(10)
            ]
            d.polygon(pts, fill=_rgb(g))
        elif kind == 1:  # outlined rectangle
            d.rectangle([x - r, y - r / 2, x + r, y + r / 2], outline=_rgb(g), width=int(g.integers(1, 8)))
        elif kind == 2:  # rounded rectangle
            d.rounded_rectangle([x - r, y - r * g.uniform(0.2, 1), x + r, y + r], radius=r / 4, fill=_rgb(g))
        else:  # arc
            d.arc([x - r, y - r, x + r, y + r], float(g.uniform(0, 180)), float(g.uniform(180, 360)), fill=_rgb(g), width=int(g.integers(1, 10)))
    return img


def texture(g, size):
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b = np.array(_rgb(g), np.float32), np.array(_rgb(g), np.float32)
    p = float(g.uniform(4, 40))
    kind = g.integers(4)
    if kind == 0:  # concentric rings
        mask = np.sin(np.hypot(xx - w * g.random(), yy - h * g.random()) * 2 * math.pi / p) > 0
    elif kind == 1:  # bricks
        row = (yy // p).astype(int)
        mask = ((xx + (row % 2) * p) % (2 * p) > 2) & (yy % p > 2)
    elif kind == 2:  # plaid
        t = (np.sin(xx * 2 * math.pi / p) + np.sin(yy * 2 * math.pi / (p * 1.7))) / 4 + 0.5
        return Image.fromarray((a * t[..., None] + b * (1 - t[..., None])).astype(np.uint8))
    else:  # diagonal hatching
        mask = (xx + yy) % p < p / 3
    return Image.fromarray(np.where(mask[..., None], a, b).astype(np.uint8))


def landscape(g, size):
    """Sky, hills and grass, blurred and noisy: a photo-like picture with no object in it."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    sky_top, sky_low = np.array((60, 110, 200), np.float32) + g.normal(0, 20, 3), np.array((190, 215, 240), np.float32)
    ground = np.array((70, 130, 50), np.float32) + g.normal(0, 25, 3)
    horizon = h * g.uniform(0.35, 0.7) + h * 0.08 * np.sin(xx / w * g.uniform(2, 8) + g.uniform(0, 6))
    t = (yy / np.maximum(horizon, 1))[..., None]
    img = np.where((yy < horizon)[..., None], sky_top * (1 - t) + sky_low * t, ground * (0.7 + 0.3 * (yy / h))[..., None])
    img = Image.fromarray(img.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(float(g.uniform(0.5, 2))))
    return Image.fromarray((np.asarray(img, np.float32) + g.normal(0, g.uniform(2, 10), (h, w, 3))).clip(0, 255).astype(np.uint8))


def photo(g, size):
    return scene(int(g.integers(1 << 31)), size)


FAMILIES = {
    "solid colour": solid,
    "gradient": gradient,
    "noise": noise,
    "random shapes": shapes,
    "texture": texture,
    "landscape": landscape,
    "photo-like scene": photo,
}


def ood_images(n: int, seed: int) -> list[tuple[str, bytes]]:
    """``n`` (family, image bytes) pairs, the families in turn; JPEG at a random quality, one in
    five PNG."""
    g = np.random.default_rng(seed)
    names = list(FAMILIES)
    out = []
    for i in range(n):
        family = names[i % len(names)]
        size = SIZES[int(g.integers(len(SIZES)))]
        img = FAMILIES[family](g, size)
        out.append((family, encode(img, "PNG") if g.random() < 0.2 else encode(img, "JPEG", quality=int(g.integers(50, 96)))))
    return out
