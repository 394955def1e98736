"""Pictures of none of the pictogram classes, with captions: the open-set part of the training data.

A CLIP trained on pictograms only has nowhere to put a picture of nothing: scored against a
closed set of classes, a plain white picture lands on whichever class is nearest (it was a
weapon, review, with the first default model). Training on captioned pictures of nothing gives
the model a region for them, and the default policy names it in every category's contrast
prompts (models/default/calibrate.py), so the probability goes there instead.

Families: solid colours, gradients, noise (white, coloured, smooth), random shapes, textures
(stripes, checks, dots), blurred photo-like fields, and a pictogram background with nothing on it.
Every picture is a JPEG at a random quality, as pictograms are. The tests measure the open set on
pictures from a generator of their own (tests/ood.py), not this one.
"""

from __future__ import annotations

import io
import math
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from moderator.pictograms.draw import BACKGROUNDS

# What a picture of nothing is called in Sample.obj and in captions_fit's facts.
NOTHING = "nothing"
# Every caption is true of every picture of nothing (they are one class to the loss), and the
# wording is varied so that a policy author's "a blank picture" or "random noise" lands there too.
CAPTIONS = {
    "solid": ["a plain background", "a blank picture", "an empty image", "a solid colour", "a plain colour"],
    "gradient": ["a colour gradient", "a smooth gradient", "a blank picture", "an abstract picture"],
    "noise": ["random noise", "a noisy image", "static noise", "an abstract pattern"],
    "shapes": ["abstract shapes", "random shapes", "geometric shapes", "an abstract picture"],
    "texture": ["a pattern", "a striped pattern", "a texture", "an abstract pattern"],
    "field": ["a blurry photo", "an abstract scene", "a blurred picture", "a photo of nothing in particular"],
    "background": ["an empty background", "a picture of nothing", "a plain background", "an empty image"],
}
GENERIC = ["a picture of nothing", "nothing", "an empty picture", "a picture with no objects"]
SIZES = ((96, 96), (128, 96), (96, 128), (112, 112), (160, 120), (224, 224), (320, 240))


def _colour(rng: random.Random) -> tuple[int, int, int]:
    if rng.random() < 0.25:  # greys, white and black, the commonest plain pictures
        v = rng.choice((0, 255, rng.randrange(256)))
        return (v, v, v)
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def solid(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    return Image.new("RGB", size, _colour(rng))


def gradient(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t: np.ndarray
    if rng.random() < 0.7:
        angle = rng.uniform(0, 2 * math.pi)
        t = (xx / w - 0.5) * math.cos(angle) + (yy / h - 0.5) * math.sin(angle) + 0.5
    else:  # radial
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        t = np.hypot(xx - cx, yy - cy) / max(w, h)
    t = np.clip(t, 0, 1)[..., None]
    a, b = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    return Image.fromarray((a * (1 - t) + b * t).astype(np.uint8))


def noise(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    w, h = size
    g = np.random.default_rng(rng.getrandbits(32))
    kind = rng.choice(("white", "grey", "tinted", "smooth"))
    px: np.ndarray
    if kind == "white":
        px = g.integers(0, 256, (h, w, 3))
    elif kind == "grey":
        px = np.repeat(g.integers(0, 256, (h, w, 1)), 3, axis=2)
    elif kind == "tinted":
        px = np.array(_colour(rng)) + g.normal(0, rng.uniform(10, 70), (h, w, 3))
    else:  # low-frequency noise, upsampled
        cells = rng.randint(2, 12)
        small = Image.fromarray(g.integers(0, 256, (cells, cells, 3)).astype(np.uint8))
        return small.resize(size, Image.Resampling.BICUBIC)
    return Image.fromarray(np.clip(px, 0, 255).astype(np.uint8))


def shapes(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size, _colour(rng))
    d = ImageDraw.Draw(img)
    for _ in range(rng.randint(1, 12)):
        box = sorted((rng.uniform(-0.2, 1.2) * w, rng.uniform(-0.2, 1.2) * w))
        boy = sorted((rng.uniform(-0.2, 1.2) * h, rng.uniform(-0.2, 1.2) * h))
        fill = _colour(rng)
        kind = rng.choice(("rectangle", "ellipse", "polygon", "line"))
        if kind == "rectangle":
            d.rectangle([box[0], boy[0], box[1], boy[1]], fill=fill)
        elif kind == "ellipse":
            d.ellipse([box[0], boy[0], box[1], boy[1]], fill=fill)
        elif kind == "polygon":
            d.polygon([(rng.uniform(0, w), rng.uniform(0, h)) for _ in range(rng.randint(3, 7))], fill=fill)
        else:
            d.line([(rng.uniform(0, w), rng.uniform(0, h)), (rng.uniform(0, w), rng.uniform(0, h))], fill=fill, width=rng.randint(1, max(2, min(w, h) // 8)))
    return img


def texture(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    period = rng.uniform(3, max(4, min(w, h) / 3))
    kind = rng.choice(("stripes", "checks", "dots", "waves"))
    if kind == "stripes":
        angle = rng.uniform(0, math.pi)
        mask = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period) > 0
    elif kind == "checks":
        mask = ((xx // period).astype(int) + (yy // period).astype(int)) % 2 == 0
    elif kind == "dots":
        mask = np.hypot(xx % period - period / 2, yy % period - period / 2) < period * rng.uniform(0.15, 0.45)
    else:
        mask = np.sin(xx * 2 * math.pi / period + 3 * np.sin(yy * 2 * math.pi / (period * 3))) > 0
    return Image.fromarray(np.where(mask[..., None], a, b).astype(np.uint8))


def field(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A blurred photo-like field: smooth colour waves under blobs, blur and sensor noise."""
    w, h = size
    g = np.random.default_rng(rng.getrandbits(32))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        fx, fy, phase = g.normal(size=3) * 2
        base[..., c] = g.uniform(60, 200) + g.uniform(20, 70) * np.sin(fx * xx / w * 3 + fy * yy / h * 3 + phase)
    img = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(rng.randint(0, 20)):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(2, max(3, w / 4))
        d.ellipse([x - r, y - r * rng.uniform(0.3, 1.5), x + r, y + r], fill=_colour(rng))
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 4.0)))
    px = np.asarray(img, np.float32) + g.normal(0, rng.uniform(1, 12), (h, w, 3))
    return Image.fromarray(px.clip(0, 255).astype(np.uint8))


def background(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A pictogram background with nothing drawn on it, speckled as pictograms' are."""
    w, h = size
    img = Image.new("RGB", size, BACKGROUNDS[rng.choice(list(BACKGROUNDS))])
    if rng.random() < 0.5:
        speckle = np.random.default_rng(rng.getrandbits(32)).normal(128, rng.uniform(8, 30), (h, w))
        overlay = Image.fromarray(np.clip(speckle, 0, 255).astype(np.uint8), "L").convert("RGB")
        img = Image.blend(img, overlay, rng.uniform(0.05, 0.2))
    return img


FAMILIES = {"solid": solid, "gradient": gradient, "noise": noise, "shapes": shapes, "texture": texture, "field": field, "background": background}


def draw_nothing(rng: random.Random) -> tuple[str, bytes, str]:
    """(family, JPEG bytes, caption) of one picture of nothing."""
    family = rng.choice(list(FAMILIES))
    img = FAMILIES[family](rng, rng.choice(SIZES))
    if rng.random() < 0.2:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 2.0)))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=rng.randint(40, 95))
    words = CAPTIONS[family] + GENERIC
    return family, buf.getvalue(), rng.choice(words)
