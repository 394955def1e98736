"""Sample input messages: images of every supported format and mode, in both encodings, plus
broken inputs with the dead-letter reason each must get. Deterministic for a seed."""

from __future__ import annotations

import base64
import io
import json
import random
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross", "bar")
COLOURS = {"red": (220, 30, 30), "green": (30, 160, 60), "blue": (40, 70, 220), "yellow": (240, 200, 20), "black": (10, 10, 10)}


@dataclass(frozen=True)
class Sample:
    id: str
    value: bytes
    headers: list[tuple[str, bytes]]
    expect: str  # "verdict" or a dead-letter reason
    description: str
    key: bytes | None = field(default=None)


def draw(shape: str, colour: tuple[int, int, int], size: tuple[int, int] = (320, 240), background=(250, 250, 250), mode: str = "RGB") -> Image.Image:
    img = Image.new("RGB", size, background)
    d = ImageDraw.Draw(img)
    w, h = size
    box = (w * 0.25, h * 0.2, w * 0.75, h * 0.8)
    if shape == "circle":
        d.ellipse(box, fill=colour)
    elif shape == "square":
        d.rectangle(box, fill=colour)
    elif shape == "triangle":
        d.polygon([(w * 0.5, h * 0.15), (w * 0.8, h * 0.85), (w * 0.2, h * 0.85)], fill=colour)
    elif shape == "cross":
        d.rectangle((w * 0.45, h * 0.1, w * 0.55, h * 0.9), fill=colour)
        d.rectangle((w * 0.2, h * 0.45, w * 0.8, h * 0.55), fill=colour)
    else:
        d.rectangle((w * 0.1, h * 0.4, w * 0.9, h * 0.6), fill=colour)
    return img if mode == "RGB" else img.convert(mode)


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny PNG whose header declares ``width x height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def valid_images(rng: random.Random) -> list[tuple[str, bytes, str, str]]:
    """(name, bytes, content-type, description) for every format and awkward mode."""

    def pick() -> tuple[str, str, tuple[int, int, int]]:
        shape = rng.choice(SHAPES)
        cname = rng.choice(list(COLOURS))
        return shape, cname, COLOURS[cname]

    out = []
    s, c, rgb = pick()
    out.append(("jpeg", encode(draw(s, rgb), "JPEG", quality=90), "image/jpeg", f"JPEG RGB {c} {s}"))
    s, c, rgb = pick()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    out.append(("jpeg-exif", encode(draw(s, rgb), "JPEG", exif=exif), "image/jpeg", f"JPEG with EXIF orientation 6, {c} {s}"))
    s, c, rgb = pick()
    out.append(("jpeg-cmyk", encode(draw(s, rgb, mode="CMYK"), "JPEG"), "image/jpeg", f"JPEG CMYK {c} {s}"))
    s, c, rgb = pick()
    out.append(("jpeg-gray", encode(draw(s, rgb, mode="L"), "JPEG"), "image/jpeg", f"JPEG greyscale {s}"))
    s, c, rgb = pick()
    rgba = draw(s, rgb).convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 128))
    out.append(("png-rgba", encode(rgba, "PNG"), "image/png", f"PNG RGBA half-transparent {c} {s}"))
    s, c, rgb = pick()
    pal = draw(s, rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    out.append(("png-palette", encode(pal, "PNG", transparency=0), "image/png", f"PNG palette with transparency {c} {s}"))
    s, c, rgb = pick()
    gray16 = Image.fromarray(np.asarray(draw(s, rgb, mode="L"), dtype=np.uint16) * 257)
    out.append(("png-16bit", encode(gray16, "PNG"), "image/png", f"PNG 16-bit greyscale {s}"))
    s, c, rgb = pick()
    out.append(("webp", encode(draw(s, rgb), "WEBP", quality=80), "image/webp", f"WebP {c} {s}"))
    s, c, rgb = pick()
    frames = [draw(s, rgb).convert("P"), draw(rng.choice(SHAPES), COLOURS["black"]).convert("P")]
    out.append(
        (
            "gif-animated",
            encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
            "image/gif",
            f"animated GIF (first frame: {c} {s})",
        )
    )
    s, c, rgb = pick()
    out.append(("bmp", encode(draw(s, rgb), "BMP"), "image/bmp", f"BMP {c} {s}"))
    s, c, rgb = pick()
    out.append(("tiff", encode(draw(s, rgb), "TIFF", compression="tiff_deflate"), "image/tiff", f"TIFF {c} {s}"))
    return out


def sample_messages(seed: int = 0, prefix: str = "sample") -> list[Sample]:
    """Valid images in both encodings, then every kind of broken input."""
    rng = random.Random(seed)
    samples: list[Sample] = []
    for name, data, ctype, desc in valid_images(rng):
        rid = f"{prefix}-{name}-raw"
        samples.append(
            Sample(
                rid,
                data,
                [("content-type", ctype.encode()), ("moderation-id", rid.encode()), ("source", b"demo")],
                "verdict",
                f"{desc} (raw bytes)",
                key=rid.encode(),
            )
        )
        eid = f"{prefix}-{name}-envelope"
        env = {"id": eid, "image": {"base64": base64.b64encode(data).decode()}, "metadata": {"source": "demo", "format": name}}
        samples.append(Sample(eid, json.dumps(env).encode(), [("content-type", b"application/json")], "verdict", f"{desc} (JSON envelope)", key=eid.encode()))
    jpeg = encode(draw("circle", COLOURS["red"]), "JPEG")

    def broken(name: str, value: bytes, expect: str, desc: str, ctype: bytes | None = None) -> Sample:
        rid = f"{prefix}-{name}"
        headers = [("moderation-id", rid.encode())] + ([("content-type", ctype)] if ctype else [])
        return Sample(rid, value, headers, expect, desc, key=rid.encode())

    samples += [
        broken("truncated-jpeg", jpeg[: len(jpeg) // 2], "undecodable_image", "JPEG cut in half", b"image/jpeg"),
        broken("random-bytes", bytes(rng.getrandbits(8) for _ in range(2048)), "unsupported_format", "2 KB of random bytes"),
        broken("empty", b"", "invalid_message", "empty value"),
        broken("invalid-json", b'{"id": "x", "image": {"base64": ', "invalid_message", "JSON envelope cut short"),
        broken("bad-base64", json.dumps({"image": {"base64": "not*base64!"}}).encode(), "invalid_message", "envelope with invalid base64"),
        broken("bomb-50000x50000", bomb_png(), "image_too_large", "PNG declaring 50,000 x 50,000 pixels", b"image/png"),
        broken("pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", "unsupported_format", "a PDF document"),
    ]
    return samples


FORMAT_CYCLE = (("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp"), ("GIF", "image/gif"), ("BMP", "image/bmp"), ("TIFF", "image/tiff"))


@dataclass(frozen=True)
class Labelled:
    """A labelled example image (examples/labels.csv)."""

    name: str
    data: bytes
    object: str
    categories: tuple[str, ...]


def load_examples(root, limit: int | None = None) -> list[Labelled]:
    """Read examples/labels.csv and its images, interleaving categories so a prefix is varied."""
    import csv
    from pathlib import Path

    root = Path(root)
    with (root / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    by_group: dict[str, list[dict]] = {}
    for row in rows:
        by_group.setdefault(row["categories"] or "benign", []).append(row)
    ordered = []
    while any(by_group.values()):
        for group in sorted(by_group):
            if by_group[group]:
                ordered.append(by_group[group].pop(0))
    chosen = ordered[:limit] if limit else ordered
    return [Labelled(Path(r["path"]).stem, (root / r["path"]).read_bytes(), r["object"], tuple(c for c in r["categories"].split(";") if c)) for r in chosen]


def example_messages(examples: list[Labelled], prefix: str) -> list[Sample]:
    """Each example re-encoded in the next supported format, alternating raw bytes and envelopes."""
    out = []
    for i, ex in enumerate(examples):
        fmt, ctype = FORMAT_CYCLE[i % len(FORMAT_CYCLE)]
        img = Image.open(io.BytesIO(ex.data)).convert("RGB")
        data = encode(img, fmt) if fmt != "JPEG" else ex.data
        label = f"{ex.object} ({', '.join(ex.categories) or 'benign'}) as {fmt}"
        mid = f"{prefix}-{ex.name}"
        if i % 2 == 0:
            out.append(Sample(mid, data, [("content-type", ctype.encode()), ("moderation-id", mid.encode())], "verdict", label + ", raw", key=mid.encode()))
        else:
            env = {"id": mid, "image": {"base64": base64.b64encode(data).decode()}, "metadata": {"label": ex.object}}
            out.append(Sample(mid, json.dumps(env).encode(), [("content-type", b"application/json")], "verdict", label + ", envelope", key=mid.encode()))
    return out


def broken_messages(prefix: str, seed: int = 0) -> list[Sample]:
    return [s for s in sample_messages(seed, prefix) if s.expect != "verdict"]


def jpeg_stream(count: int, seed: int = 0, size: tuple[int, int] = (640, 480)) -> list[bytes]:
    """``count`` distinct photo-sized JPEGs (a few shapes over noise), for load and benchmarks."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        noise = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
        base = np.asarray(draw(SHAPES[i % len(SHAPES)], list(COLOURS.values())[i % len(COLOURS)], size), dtype=np.uint8)
        out.append(encode(Image.fromarray(np.clip(base.astype(np.int16) - noise, 0, 255).astype(np.uint8)), "JPEG", quality=85))
    return out


def hostile_messages(prefix: str = "hostile") -> list[Sample]:
    """Inputs crafted to crash, stall or confuse a worker, each with the one output it must get.

    ``Sample.id`` is the id the output must carry; empty where no usable id reaches the output (it
    then carries the source's ``topic/partition/offset``). Each crashed or stalled the service before the
    per-message fault boundary and the parsing bounds (docs/wire-format.md#limits); the demo and
    the real-broker tests send them between good messages.
    """
    jpeg = encode(draw("circle", COLOURS["red"], (64, 48)), "JPEG")
    b64 = base64.b64encode(jpeg).decode()

    def envelope(mid: str, expect: str, desc: str, body: str, headers=(), id_header: bool = True) -> Sample:
        hs = ([("moderation-id", mid.encode())] if id_header else []) + list(headers)
        return Sample(mid, body.encode("utf-8", "surrogatepass"), hs, expect, desc, key=mid.encode("utf-8", "replace"))

    def env(**fields) -> str:  # json.dumps escapes lone surrogates as \udXXX, which is what an attacker sends
        return json.dumps({"image": {"base64": b64}, **fields})

    p = prefix
    deep_meta: object = "x"
    for _ in range(300):
        deep_meta = {"a": deep_meta}
    return [
        envelope(
            f"{p}-int-id-5000-digits",
            "message_limit_exceeded",
            "envelope id: an integer of 5 000 digits",
            '{"id": ' + "7" * 5000 + ', "image": {"base64": "' + b64 + '"}}',
        ),
        envelope(f"{p}-nested-root-1000", "message_limit_exceeded", "JSON nested 1 000 levels at the root", '{"a":' * 1000 + "1" + "}" * 1000),
        envelope(
            f"{p}-nested-array-100000",
            "message_limit_exceeded",
            "100 000 nested arrays (content-type JSON)",
            "[" * 100_000 + "]" * 100_000,
            [("content-type", b"application/json")],
        ),
        envelope(f"{p}-metadata-nested-300", "message_limit_exceeded", "metadata nested 300 levels (2 KB)", env(metadata=deep_meta)),
        envelope(
            f"{p}-surrogate\ufffdid", "verdict", "a lone surrogate escape in the envelope id (no id header)", env(id=f"{p}-surrogate\ud800id"), id_header=False
        ),
        envelope(
            f"{p}-surrogate-metadata", "verdict", "lone surrogates in a metadata key and value", env(metadata={"user\udfff": "name\ud800", "ok": ["\udc00"]})
        ),
        envelope(
            f"{p}-surrogate\ufffdbad-image",
            "undecodable_image",
            "a lone surrogate in the id of an envelope whose image is broken",
            json.dumps({"id": f"{p}-surrogate\ud800bad-image", "image": {"base64": b64[: len(b64) // 2 // 4 * 4]}}),
            id_header=False,
        ),
        envelope(f"{p}-nan", "invalid_message", "NaN in metadata (not JSON)", env()[:-1] + ', "metadata": {"x": NaN}}'),
        envelope(f"{p}-infinity", "invalid_message", "1e400 in metadata (not finite)", env()[:-1] + ', "metadata": {"x": 1e400}}'),
        envelope(f"{p}-long-number", "message_limit_exceeded", "a 60-digit number in metadata", env()[:-1] + ', "metadata": {"x": ' + "9" * 60 + "}}"),
        envelope(f"{p}-bool-id", "invalid_message", "envelope id true", env(id=True)),
        envelope(f"{p}-metadata-list", "invalid_message", "metadata is a list", env(metadata=[1, 2])),
        envelope(f"{p}-image-number", "invalid_message", "image.base64 is a number", '{"image": {"base64": 12}}'),
        envelope(f"{p}-metadata-100k", "message_limit_exceeded", "metadata of 100 000 characters", env(metadata={"x": "y" * 100_000})),
        envelope(f"{p}-metadata-5000-keys", "message_limit_exceeded", "metadata with 5 000 keys", env(metadata={f"k{i}": i for i in range(5000)})),
        envelope(f"{p}-leading-blanks", "verdict", "an envelope after 200 bytes of blanks", " \n\t\r" * 50 + env(metadata={"ok": 1})),
        Sample(
            "",
            jpeg,
            [("moderation-id", b"h" * 300)],
            "message_limit_exceeded",
            "a moderation-id header of 300 characters (refused, not truncated)",
            key=f"{p}-long-header-id".encode(),
        ),
        envelope(f"{p}-headers-100", "message_limit_exceeded", "100 headers", env(), [(f"h{i}", b"v") for i in range(100)]),
        envelope(f"{p}-control-chars", "verdict", "control characters and NUL in metadata", env(metadata={"x": "\x00\x01\x1b[31m\u2028"})),
        envelope(f"{p}-tombstone", "invalid_message", "an empty value", ""),
    ]


def animated_messages(prefix: str = "animated") -> list[Sample]:
    """Labelled animations for the demo: a knife shown for 20 ms between cups (GIF) and a knife
    that is only an APNG's default image must be blocked; a benign animation allowed. The label
    in parentheses is what must fire, as in :func:`example_messages`."""
    from moderator.pictograms.draw import render

    rng = random.Random(7)
    cup, knife, flower = (render(obj, colour, 1, "beige", rng, (192, 144)) for obj, colour in (("cup", "brown"), ("knife", "black"), ("flower", "red")))

    def save(fmt: str, frames: list[Image.Image], **kwargs) -> bytes:
        buf = io.BytesIO()
        frames = [f.copy() for f in frames]
        frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], **kwargs)
        return buf.getvalue()

    def sample(name: str, data: bytes, ctype: str, desc: str) -> Sample:
        mid = f"{prefix}-{name}"
        return Sample(mid, data, [("content-type", ctype.encode()), ("moderation-id", mid.encode())], "verdict", desc, key=mid.encode())

    return [
        sample("gif-flash", save("GIF", [cup, knife, cup], duration=[3000, 20, 3000]), "image/gif", "animated GIF: a cup, a knife for 20 ms, a cup (weapons)"),
        sample(
            "apng-default-image",
            save("PNG", [knife, cup, flower], duration=500, default_image=True),
            "image/png",
            "APNG whose default image, outside the animation, is a knife (weapons)",
        ),
        sample("webp-benign", save("WEBP", [cup, flower], duration=500, lossless=True), "image/webp", "animated WebP: a cup, then a flower (benign)"),
    ]
