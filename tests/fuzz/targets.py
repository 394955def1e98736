"""Fuzz targets: each takes one byte string and fails (raises) only on a real defect.

- ``message``: the whole per-message path (parse, decode, encode, score, verdict and dead-letter
  serialisation) must give exactly one output and never contain an unexpected exception
  (``processing_error`` is the fault boundary catching a bug: the target reports it).
- ``envelope``: the same, with the bytes turned into a JSON envelope around a valid image, so the
  fuzzer explores ids, metadata and nesting rather than the image.
- ``image``: ``decode_image`` (a still) and ``decode_any`` (every frame of an animation,
  multi-page TIFF or video, PDQ-hashed and preprocessed as the service does, large JPEGs drafted)
  raise nothing but :class:`~moderator.errors.MessageError`, and what ``decode_any`` returns keeps
  its promises (one prepared square and one hash per kept frame, at most ``max_frames``, in order).
- ``policy``: ``load_policy`` ends in a policy or in located problems, nothing else.
- ``bank``: ``read_bank`` ends in valid rows or in located problems, nothing else; the rows it
  returns find themselves in a :class:`~moderator.hashing.banks.Banks`, and read back the same
  after ``write_bank`` and after ``append_rows`` (rows written are never lost).

Run by atheris (``python -m tests.fuzz.run TARGET``, coverage-guided, time-bounded in CI) and by
the hypothesis properties; every crasher found is kept in ``tests/fuzz/corpus/<target>/`` and
replayed by ``tests/unit/test_fuzz_corpus.py``.
"""

from __future__ import annotations

import base64
import io
import json
import tempfile
from functools import lru_cache
from pathlib import Path

from moderator.errors import MessageError, PolicyError
from moderator.hashing.bankfile import (
    CATEGORY,
    COLUMNS,
    DENY_ACTIONS,
    HASH_TYPES,
    KINDS,
    MAX_PDQ_THRESHOLD,
    MAX_PROBLEMS,
    BankFileError,
    BankRows,
    append_rows,
    read_bank,
    write_bank,
)
from moderator.hashing.banks import MAX_MATCHES, Banks
from moderator.hashing.compute import PDQ_BYTES, PdqHash
from moderator.local.samples import COLOURS, draw, encode
from moderator.media.decode import DecodeLimits, decode_image
from moderator.media.frames import FrameLimits
from moderator.media.preprocess import Preprocessor
from moderator.policy.loader import load_policy
from moderator.processing import FAST_REDUCING_GAP, KnownContentOptions, decode_any, draft_side

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL = REPO / "models" / "tiny-random"
TINY_POLICY = REPO / "policies" / "tiny-random.yaml"
CORPUS = Path(__file__).resolve().parent / "corpus"
TARGETS = ("message", "envelope", "image", "policy", "bank")


class Defect(AssertionError):
    """What a target raises when the code under test misbehaved on the input."""


@lru_cache(maxsize=1)
def _pipeline():
    from moderator.encoders.onnx import OnnxEncoder
    from tests.fuzz.pipeline import Pipeline

    return Pipeline(OnnxEncoder(TINY_MODEL), TINY_POLICY)


@lru_cache(maxsize=1)
def _image_b64() -> str:
    return base64.b64encode(encode(draw("circle", COLOURS["red"], (32, 24)), "PNG")).decode()


def _check_one_output(value: bytes, headers: list[tuple[str, bytes]]) -> None:
    outputs = _pipeline().run([(None, value, headers)])
    if len(outputs) != 1:
        raise Defect(f"{len(outputs)} outputs for one message")
    out = outputs[0]
    if out.kind == "dead_letter" and out.reason == "processing_error":
        raise Defect(f"an exception escaped a step and was caught by the boundary: {out.headers['moderator-error-message']}")
    if out.kind == "verdict":
        out.verdict()  # strict JSON


def message(data: bytes) -> None:
    # first byte picks a content type, so both encodings and both detections are explored
    kinds = (None, b"application/json", b"image/png", b"text/plain")
    ctype = kinds[data[0] % len(kinds)] if data else None
    headers = [("content-type", ctype)] if ctype else []
    _check_one_output(data[1:], headers)


def envelope(data: bytes) -> None:
    reader = _Bytes(data)
    image_b64 = json.dumps(_image_b64())
    image = '{"base64": ' + image_b64 + "}" if reader.byte() % 8 else json_text(reader, 0)
    body = '{"id": ' + json_text(reader, 0) + ', "image": ' + image + ', "metadata": ' + json_text(reader, 0) + "}"
    _check_one_output(body.encode(), [])


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def byte(self) -> int:
        b = self.take(1)
        return b[0] if b else 0


def json_text(r: _Bytes, depth: int) -> str:
    """JSON text decoded from fuzzer bytes: huge numbers, lone surrogates (as \\udXXX escapes),
    deep nesting and wide containers are each a byte or two away."""
    kind = r.byte() % 9
    if kind == 0:
        digits = r.byte() * 24 + 1
        return "-" * (r.byte() % 2) + (str(int.from_bytes(r.take(8), "big")) * digits)[:digits]
    if kind == 1:
        return f"{r.byte() - 128}.{r.byte()}e{r.byte() * 4 - 512}"
    if kind == 2:
        raw = r.take(r.byte() % 32 * 2)
        return json.dumps(raw[: len(raw) // 2 * 2].decode("utf-16-le", "surrogatepass"))
    if kind in (3, 4) and depth < 40:
        items = [json_text(r, depth + 1) for _ in range(r.byte() % 8)]
        if kind == 3:
            return "[" + ", ".join(items) + "]"
        return "{" + ", ".join(f"{json.dumps(str(i) + r.take(2).decode('latin-1'))}: {v}" for i, v in enumerate(items)) + "}"
    if kind == 5:
        return ("true", "false", "NaN", "Infinity", "-Infinity")[r.byte() % 5]
    if kind == 6:
        return "null"
    if kind == 7:
        wraps = r.byte() * 4
        inner = json_text(r, depth + 1) if depth < 40 else "0"
        opener, closer = ("[", "]") if r.byte() % 2 else ('{"k": ', "}")
        return opener * wraps + inner + closer * wraps
    return json.dumps("x" * (r.byte() * 512))


# The service's decode path, with bounds small enough for many runs a second.
IMAGE_LIMITS = DecodeLimits(max_pixels=4_000_000, max_side=4_000)
FRAME_LIMITS = FrameLimits(max_frames=4, max_decoded_frames=64, max_total_pixels=16_000_000, max_decode_seconds=5, max_video_seconds=60)


@lru_cache(maxsize=1)
def _preprocessor() -> Preprocessor:
    from moderator.encoders.onnx import OnnxEncoder

    return Preprocessor(OnnxEncoder(TINY_MODEL).info().preprocess, reducing_gap=FAST_REDUCING_GAP, crops="cover")  # as the service


def image(data: bytes) -> None:
    try:
        decode_image(data, IMAGE_LIMITS)
    except MessageError:
        pass
    prepare = _preprocessor()
    try:
        frames = decode_any(data, IMAGE_LIMITS, FRAME_LIMITS, prepare, KnownContentOptions().hasher, draft_side(prepare.size, True, True))
    except MessageError:
        return
    rows, squares = len(frames.indices), prepare.max_crops  # a row per square scored
    if not 1 <= rows <= FRAME_LIMITS.max_frames * squares or frames.pixels.shape != (rows, prepare.size, prepare.size, 3):
        raise Defect(f"{rows} squares kept, pixels {frames.pixels.shape}")
    per_frame = max(frames.indices.count(i) for i in frames.indices)  # its squares, twice for a frame with transparency
    if len(frames.hashes) != rows or len(frames.timestamps_ms) != rows or list(frames.indices) != sorted(frames.indices) or per_frame > 2 * squares:
        raise Defect(f"frames {frames.indices}, {len(frames.hashes)} hashes, {len(frames.timestamps_ms)} timestamps")
    if not frames.scored <= frames.distinct <= 2 * frames.total or frames.total > FRAME_LIMITS.max_decoded_frames or frames.indices[-1] >= frames.total:
        raise Defect(f"{frames.total} frames decoded, {frames.distinct} distinct, kept up to index {frames.indices[-1]}")
    if frames.uncovered and not frames.overflow:
        raise Defect("a frame its squares do not cover, and no overflow")
    hashes = [*frames.hashes, *(h.trimmed for h in frames.hashes if h.trimmed is not None)]  # with turns and borders cut, as the service
    if any(len(h.bits) != PDQ_BYTES or not 0 <= h.quality <= 100 or len(h.turns) != 7 or any(len(t) != PDQ_BYTES for t in h.turns) for h in hashes):
        raise Defect(f"PDQ hashes {frames.hashes}")


def policy(data: bytes) -> None:
    with tempfile.NamedTemporaryFile(suffix=".yaml") as f:
        f.write(data)
        f.flush()
        try:
            load_policy(f.name)
        except PolicyError:
            pass


def bank(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz.csv"
        path.write_bytes(data)
        try:
            rows = read_bank(path)
        except BankFileError as exc:
            if not exc.problems or len(exc.problems) > MAX_PROBLEMS + 1 or not all(p.startswith(str(path)) for p in exc.problems):
                raise Defect(f"problems not located: {exc.problems[:3]}") from None
            return
        _check_bank(rows)
        found = Banks([rows])
        for i in range(min(len(rows), 8)):
            h = rows.hashes[i]
            got = found.match_sha256(h) if rows.hash_types[i] == "sha256" else found.match_pdq(PdqHash(h, 100))
            if not any(m.hash == h.hex() and m.distance == 0 for m in got) and len(got) < MAX_MATCHES:
                raise Defect(f"row {rows.lines[i]} does not find itself: {got}")
            if rows.hash_types[i] == "pdq":  # as one of a frame's turns: found in deny banks only
                turned = found.match_turns(PdqHash(h, 100, (bytes(32), h)))
                if (rows.kind == "deny") != any(m.hash == h.hex() and m.turn == "rotate180" for m in turned) and len(turned) < MAX_MATCHES:
                    raise Defect(f"row {rows.lines[i]} of a {rows.kind} bank, looked up turned: {turned}")
        listed = _listed(rows)
        overrides = rows.overrides if rows.kind == "allow" else None
        again = write_bank(Path(d) / "again.csv", rows.kind, listed, pdq_threshold=rows.pdq_threshold, overrides=overrides)
        appended = append_rows(path, [{k: v for k, v in r.items() if k in rows.columns} for r in listed[:4]], kind=rows.kind)
        # the rows written read back as written (the rows already in the file, as they were)
        for got, want in ((again, [_explicit(r, again) for r in listed]), (appended, listed + [_explicit(r, rows) for r in listed[:4]])):
            if _listed(got) != want:
                raise Defect(f"{got.path.name}: rows read back differ from those written")


def _check_bank(rows: BankRows) -> None:
    columns = (rows.hash_types, rows.hashes, rows.categories, rows.actions, rows.notes, rows.added, rows.lines)
    if len({len(c) for c in columns}) != 1 or rows.kind not in KINDS or not 0 <= rows.pdq_threshold <= MAX_PDQ_THRESHOLD:
        raise Defect(f"bank {rows.kind} {rows.pdq_threshold} {[len(c) for c in columns]}")
    actions = DENY_ACTIONS if rows.kind == "deny" else ("allow",)
    for t, h, c, a in zip(rows.hash_types, rows.hashes, rows.categories, rows.actions):
        if t not in HASH_TYPES or len(h) != 32 or not CATEGORY.match(c) or a not in actions:
            raise Defect(f"row {t} {h!r} {c!r} {a!r}")


def _listed(rows: BankRows) -> list[dict[str, str]]:
    return [dict(zip(COLUMNS, r)) for r in zip(rows.hash_types, (h.hex() for h in rows.hashes), rows.categories, rows.actions, rows.notes, rows.added)]


def _explicit(row: dict[str, str], rows: BankRows) -> dict[str, str]:
    """``row`` as a bank with ``rows``' columns reads it back: a note or date without its column
    is left out (the row's category and action are the bank's defaults where it has no column),
    and a note's runs of whitespace are one space."""
    out = {k: (v if k in rows.columns or k in ("category", "action") else "") for k, v in row.items()}
    return out | {"note": " ".join(out["note"].split())}


def seeds(target: str) -> list[bytes]:
    """Starting inputs: valid ones, so mutations stay near the interesting paths."""
    if target == "policy":
        return [TINY_POLICY.read_bytes(), (REPO / "policies" / "default.yaml").read_bytes()]
    if target == "bank":
        return [
            f'# kind: deny\n# pdq_threshold: 20\n# category: weapons\nhash_type,hash,category,action,note,added\npdq,{"f8" * 32},,review,"a, b",2026-11-30\n'
            f"# between\nsha256,{'9f' * 32},drugs,,,2026-11-30T12:00:00Z\n".encode(),
            f"\ufeff# kind: allow\n# overrides: block\n\n Note , HASH , Hash_Type \nx,{'0a' * 32},PDQ\n".encode(),
        ]
    png = encode(draw("square", COLOURS["blue"], (32, 24)), "PNG")
    if target == "image":
        stills = [encode(draw("circle", COLOURS["green"], (32, 24)), fmt) for fmt in ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")]
        return stills + animations() + videos() + [encode(draw("square", COLOURS["red"], (1100, 1030)), "JPEG")]
    if target == "envelope":
        return [b'"id": "x", "metadata": {"a": [1, 2.5, {"b": null}]}}', b'"metadata": {}}']
    env = json.dumps({"id": "seed", "image": {"base64": base64.b64encode(png).decode()}, "metadata": {"k": "v"}})
    return [b"\x00" + png, b"\x01" + env.encode(), b"\x00" + animations()[0]]


def animations() -> list[bytes]:
    """Three-frame GIF, APNG, animated WebP and multi-page TIFF: the frame paths' seeds."""
    frames = [draw(shape, COLOURS[colour], (24, 16)) for shape, colour in (("circle", "red"), ("square", "blue"), ("circle", "green"))]
    out = []
    for fmt in ("GIF", "PNG", "WEBP", "TIFF"):
        buf = io.BytesIO()
        timing = {} if fmt == "TIFF" else {"duration": [40, 1000, 40]}
        frames[0].copy().save(buf, fmt, save_all=True, append_images=[f.copy() for f in frames[1:]], **timing)
        out.append(buf.getvalue())
    return out


def videos() -> list[bytes]:
    """Three-frame MP4 (MPEG-4 part 2) and WebM (VP8) of 32x32, when PyAV is installed."""
    try:
        import av
    except ImportError:
        return []
    out = []
    for container, codec in (("mp4", "mpeg4"), ("webm", "libvpx")):
        buf = io.BytesIO()
        with av.open(buf, "w", format=container) as video:
            stream = video.add_stream(codec, rate=10)
            stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
            for colour in ("red", "blue", "green"):
                frame = av.VideoFrame.from_image(draw("circle", COLOURS[colour], (32, 32)))
                video.mux(stream.encode(frame))
            video.mux(stream.encode())
        out.append(buf.getvalue())
    return out
