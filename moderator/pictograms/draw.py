"""Drawing pictograms: each object class is a few shapes in a main colour, on a canvas."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Colour = tuple[int, int, int]
# The colour a part is drawn in, given its usual colour (the knife's brown handle, the cup's coffee).
Parts = Callable[[Colour], Colour]

COLOURS: dict[str, Colour] = {
    "red": (214, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (240, 210, 40),
    "green": (50, 160, 70),
    "blue": (40, 90, 220),
    "purple": (140, 60, 190),
    "pink": (240, 120, 180),
    "brown": (125, 80, 40),
    "black": (25, 25, 25),
    "white": (245, 245, 245),
    "grey": (128, 128, 128),
}
BACKGROUNDS: dict[str, Colour] = {
    "white": (250, 250, 250),
    "light grey": (205, 205, 205),
    "beige": (235, 220, 190),
    "light blue": (185, 215, 240),
    "dark": (45, 45, 55),
    "light green": (195, 230, 190),
}
# Below this RGB distance a part does not stand apart from the object's main colour and is drawn
# in its alternative colour (backgrounds keep a wider margin: dataset.BACKGROUND_CONTRAST).
CONTRAST = 50


def distance(a: Colour, b: Colour) -> float:
    return math.dist(a, b)


def _against(c: Colour, preferred: Colour, alternative: Colour) -> Colour:
    """A part's colour that stands out against the main colour ``c``."""
    return preferred if distance(c, preferred) >= CONTRAST else alternative


def _poly(d: ImageDraw.ImageDraw, pts, cx: float, cy: float, s: float, fill) -> None:
    d.polygon([(cx + x * s, cy + y * s) for x, y in pts], fill=fill)


def _rect(d, x0, y0, x1, y1, cx, cy, s, fill) -> None:
    d.rectangle([cx + x0 * s, cy + y0 * s, cx + x1 * s, cy + y1 * s], fill=fill)


def _ellipse(d, x0, y0, x1, y1, cx, cy, s, fill, outline=None, width=1) -> None:
    d.ellipse([cx + x0 * s, cy + y0 * s, cx + x1 * s, cy + y1 * s], fill=fill, outline=outline, width=width)


def knife(d, cx, cy, s, c, p):
    _poly(d, [(-0.1, -0.95), (0.12, -0.3), (0.12, 0.1), (-0.1, 0.1)], cx, cy, s, c)  # blade
    _rect(d, -0.18, 0.1, 0.2, 0.18, cx, cy, s, p((60, 60, 60)))  # guard
    _rect(d, -0.08, 0.18, 0.1, 0.95, cx, cy, s, p((90, 55, 30)))  # handle


def pistol(d, cx, cy, s, c, p):
    _rect(d, -0.9, -0.45, 0.7, -0.1, cx, cy, s, c)  # slide and barrel
    _poly(d, [(0.15, -0.1), (0.7, -0.1), (0.55, 0.85), (0.1, 0.85)], cx, cy, s, c)  # grip
    _ellipse(d, -0.25, -0.15, 0.15, 0.3, cx, cy, s, None, outline=c, width=max(2, int(s * 0.08)))  # trigger guard


def syringe(d, cx, cy, s, c, p):
    _rect(d, -0.55, -0.14, 0.45, 0.14, cx, cy, s, c)  # barrel
    _rect(d, 0.45, -0.04, 0.95, 0.04, cx, cy, s, p((90, 90, 90)))  # needle
    _rect(d, -0.75, -0.04, -0.55, 0.04, cx, cy, s, p((60, 60, 60)))  # plunger rod
    _rect(d, -0.85, -0.22, -0.75, 0.22, cx, cy, s, p((60, 60, 60)))  # plunger
    for i in range(4):
        x = -0.4 + i * 0.22
        _rect(d, x, -0.14, x + 0.03, 0.0, cx, cy, s, p((255, 255, 255)))  # scale marks


def pill(d, cx, cy, s, c, p):
    r = 0.3
    d.rounded_rectangle([cx - 0.8 * s, cy - r * s, cx + 0.8 * s, cy + r * s], radius=r * s, fill=p((245, 245, 245)), outline=p((60, 60, 60)))
    d.rounded_rectangle([cx - 0.8 * s, cy - r * s, cx, cy + r * s], radius=r * s, fill=c)
    _rect(d, -0.3, -r, 0.0, r, cx, cy, s, c)


def bottle(d, cx, cy, s, c, p):
    d.rounded_rectangle([cx - 0.35 * s, cy - 0.25 * s, cx + 0.35 * s, cy + 0.95 * s], radius=0.1 * s, fill=c)  # body
    _poly(d, [(-0.35, -0.25), (0.35, -0.25), (0.12, -0.55), (-0.12, -0.55)], cx, cy, s, c)  # shoulder
    _rect(d, -0.12, -0.9, 0.12, -0.55, cx, cy, s, c)  # neck
    _rect(d, -0.15, -1.0, 0.15, -0.88, cx, cy, s, p((200, 170, 40)))  # cap
    _rect(d, -0.3, 0.2, 0.3, 0.55, cx, cy, s, p((240, 235, 220)))  # label


def cigarette(d, cx, cy, s, c, p):
    _rect(d, -0.9, -0.1, 0.55, 0.1, cx, cy, s, p((245, 245, 245)))  # paper
    _rect(d, -0.9, -0.1, -0.45, 0.1, cx, cy, s, c)  # filter in the main colour
    _rect(d, 0.55, -0.1, 0.68, 0.1, cx, cy, s, p((230, 60, 20)))  # ember
    w = max(1, int(s * 0.05))
    for k in range(2):
        pts = [(cx + (0.7 + 0.1 * math.sin(t / 2 + k)) * s, cy - (0.2 + t * 0.12 + 0.15 * k) * s) for t in range(6)]
        d.line(pts, fill=p((150, 150, 150)), width=w)  # smoke


def flame(d, cx, cy, s, c, p):
    outer = [(0, -1.0), (0.35, -0.45), (0.55, 0.1), (0.45, 0.6), (0.0, 0.9), (-0.45, 0.6), (-0.55, 0.1), (-0.2, -0.3)]
    inner = [(0, -0.3), (0.22, 0.1), (0.25, 0.5), (0.0, 0.75), (-0.25, 0.5), (-0.2, 0.15)]
    _poly(d, outer, cx, cy, s, c)
    _poly(d, inner, cx, cy, s, _against(c, p((255, 230, 90)), p((255, 255, 255))))


def tree(d, cx, cy, s, c, p):
    _rect(d, -0.12, 0.2, 0.12, 0.95, cx, cy, s, p((110, 70, 35)))  # trunk
    _ellipse(d, -0.7, -0.95, 0.7, 0.4, cx, cy, s, c)  # crown


def house(d, cx, cy, s, c, p):
    _rect(d, -0.6, -0.1, 0.6, 0.9, cx, cy, s, c)  # walls
    _poly(d, [(-0.8, -0.1), (0.0, -0.85), (0.8, -0.1)], cx, cy, s, p((150, 50, 40)))  # roof
    _rect(d, -0.15, 0.4, 0.15, 0.9, cx, cy, s, p((80, 50, 30)))  # door
    _rect(d, 0.25, 0.1, 0.45, 0.3, cx, cy, s, p((200, 230, 250)))  # window


def car(d, cx, cy, s, c, p):
    d.rounded_rectangle([cx - 0.95 * s, cy - 0.15 * s, cx + 0.95 * s, cy + 0.4 * s], radius=0.12 * s, fill=c)  # body
    _poly(d, [(-0.5, -0.15), (-0.3, -0.55), (0.35, -0.55), (0.55, -0.15)], cx, cy, s, c)  # cabin
    _poly(d, [(-0.38, -0.18), (-0.25, -0.45), (0.0, -0.45), (0.0, -0.18)], cx, cy, s, p((200, 230, 250)))  # window
    for x in (-0.55, 0.55):
        _ellipse(d, x - 0.22, 0.2, x + 0.22, 0.64, cx, cy, s, p((20, 20, 20)))  # wheels


def flower(d, cx, cy, s, c, p):
    _rect(d, -0.04, 0.0, 0.04, 0.95, cx, cy, s, p((50, 140, 50)))  # stem
    for k in range(6):
        a = k * math.pi / 3
        px, py = 0.35 * math.cos(a), -0.35 + 0.35 * math.sin(a)
        _ellipse(d, px - 0.22, py - 0.22, px + 0.22, py + 0.22, cx, cy, s, c)  # petals
    _ellipse(d, -0.15, -0.5, 0.15, -0.2, cx, cy, s, _against(c, p((240, 200, 40)), p((140, 80, 20))))  # centre


def cat(d, cx, cy, s, c, p):
    _ellipse(d, -0.55, 0.05, 0.55, 0.95, cx, cy, s, c)  # body
    _ellipse(d, -0.45, -0.7, 0.45, 0.15, cx, cy, s, c)  # head
    _poly(d, [(-0.42, -0.45), (-0.35, -0.95), (-0.1, -0.65)], cx, cy, s, c)  # ears
    _poly(d, [(0.42, -0.45), (0.35, -0.95), (0.1, -0.65)], cx, cy, s, c)
    eye = _against(c, p((40, 180, 60)), p((240, 220, 40)))
    _ellipse(d, -0.25, -0.4, -0.1, -0.25, cx, cy, s, eye)
    _ellipse(d, 0.1, -0.4, 0.25, -0.25, cx, cy, s, eye)


def cup(d, cx, cy, s, c, p):
    _poly(d, [(-0.55, -0.6), (0.45, -0.6), (0.35, 0.8), (-0.45, 0.8)], cx, cy, s, c)  # body
    _ellipse(d, 0.25, -0.35, 0.85, 0.35, cx, cy, s, None, outline=c, width=max(2, int(s * 0.12)))  # handle
    _rect(d, -0.5, -0.65, 0.4, -0.55, cx, cy, s, p((110, 70, 40)))  # coffee


def ball(d, cx, cy, s, c, p):
    _ellipse(d, -0.75, -0.75, 0.75, 0.75, cx, cy, s, c)
    w = max(1, int(s * 0.06))
    seam = _against(c, p((255, 255, 255)), p((30, 30, 30)))
    d.arc([cx - 0.75 * s, cy - 0.35 * s, cx + 0.75 * s, cy + 1.1 * s], 200, 340, fill=seam, width=w)
    d.arc([cx - 0.75 * s, cy - 1.1 * s, cx + 0.75 * s, cy + 0.35 * s], 20, 160, fill=seam, width=w)


def sun(d, cx, cy, s, c, p):
    w = max(2, int(s * 0.09))
    for k in range(12):
        a = k * math.pi / 6
        d.line([(cx + 0.55 * s * math.cos(a), cy + 0.55 * s * math.sin(a)), (cx + 0.95 * s * math.cos(a), cy + 0.95 * s * math.sin(a))], fill=c, width=w)
    _ellipse(d, -0.45, -0.45, 0.45, 0.45, cx, cy, s, c)


OBJECTS: dict[str, Callable] = {
    "knife": knife,
    "pistol": pistol,
    "syringe": syringe,
    "pill": pill,
    "bottle": bottle,
    "cigarette": cigarette,
    "flame": flame,
    "tree": tree,
    "house": house,
    "car": car,
    "flower": flower,
    "cat": cat,
    "cup": cup,
    "ball": ball,
    "sun": sun,
}


def usual(colour: Colour) -> Colour:
    """Parts in their usual colours."""
    return colour


def render(obj: str, colour: str | Colour, count: int, background: str, rng: random.Random, size: tuple[int, int], parts: Parts = usual) -> Image.Image:
    """Draw ``count`` instances of ``obj`` in ``colour`` (a name of COLOURS or an RGB triple) on
    ``background``, with random placement, scale, rotation, background noise and blur; ``parts``
    recolours the parts that have a colour of their own."""
    rgb = COLOURS[colour] if isinstance(colour, str) else colour
    w, h = size
    bg = BACKGROUNDS[background]
    img = Image.new("RGB", size, bg)
    if rng.random() < 0.5:  # speckle so backgrounds are not flat (seeded: Image.effect_noise is not)
        noise = np.random.default_rng(rng.getrandbits(32)).normal(128, rng.uniform(8, 30), (h, w))
        overlay = Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8), "L").convert("RGB")
        img = Image.blend(img, overlay, rng.uniform(0.05, 0.2))
    side = min(w, h)
    base = side * (0.36 if count == 1 else 0.22 if count == 2 else 0.18)
    cells = [(0.5, 0.5)] if count == 1 else [(0.28, 0.5), (0.72, 0.5)] if count == 2 else [(0.25, 0.3), (0.75, 0.3), (0.5, 0.75)]
    rng.shuffle(cells)
    for fx, fy in cells[:count]:
        s = base * rng.uniform(0.8, 1.15)
        layer = Image.new("RGBA", (int(2.4 * s), int(2.4 * s)), (0, 0, 0, 0))
        OBJECTS[obj](ImageDraw.Draw(layer), layer.width / 2, layer.height / 2, s, rgb, parts)
        layer = layer.rotate(rng.uniform(-35, 35), resample=Image.Resampling.BICUBIC, expand=False)
        x = int(fx * w + rng.uniform(-0.08, 0.08) * w - layer.width / 2)
        y = int(fy * h + rng.uniform(-0.08, 0.08) * h - layer.height / 2)
        img.paste(layer, (x, y), layer)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return img
