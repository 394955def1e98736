"""Input messages: two encodings on the same topic, parsed within stated bounds.

(a) Raw image: the value is the image's bytes; ``content-type`` (optional) and ``moderation-id``
    (optional) headers; every other header is passed through to the verdict's ``metadata``.
(b) JSON envelope: ``{"id": ..., "image": {"base64": ...}, "metadata": {...}}``, recognised by a
    ``content-type: application/json`` header or, without one, by a value whose first non-blank
    byte is ``{``.

The message id is the ``moderation-id`` header, else the envelope's ``id``, else
``topic/partition/offset``.

Every byte here is chosen by whoever produced the message, so parsing has bounds
(:class:`MessageLimits`), each checked before the thing it guards is built: nesting depth before
the JSON parser recurses, number length before ``int()`` converts, id length and type, and the
size, entry count and depth of the metadata passed through. Text echoed into verdicts, dead
letters and logs is made valid UTF-8 (lone surrogates, which JSON escapes can carry, become
U+FFFD). docs/wire-format.md gives each bound and its reason.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from moderator.errors import InvalidMessage, MessageLimitExceeded

ID_HEADER = "moderation-id"
CONTENT_TYPE_HEADER = "content-type"
JSON_TYPES = ("application/json", "application/vnd.moderator.envelope+json")

_SURROGATES = re.compile("[\ud800-\udfff]")
# json_depth keeps only these bytes (after removing escaped backslashes and quotes) ...
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
# ... and then drops what is between quotes.
_QUOTED = re.compile(rb'"[^"]*"')
_LEADING_BLANKS = re.compile(rb"[ \t\r\n]*")


class EnvelopeImage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base64: StrictStr = Field(description="The image bytes, standard base64 (RFC 4648), padding required.")


class Envelope(BaseModel):
    """The JSON envelope encoding of an input message."""

    model_config = ConfigDict(extra="ignore", title="ModeratorInputEnvelope")

    id: StrictStr | StrictInt | None = Field(None, description="Caller's id, echoed in the verdict (at most 256 characters by default).")
    image: EnvelopeImage
    metadata: dict[str, Any] = Field(default_factory=dict, description="Passed through to the verdict unchanged (bounded in size, entries and depth).")


@dataclass(frozen=True)
class MessageLimits:
    """Bounds on what one input message may make the parser build (settings ``message.*``)."""

    max_json_depth: int = 16
    max_id_chars: int = 256
    max_number_chars: int = 40
    max_metadata_chars: int = 64 * 1024
    max_metadata_entries: int = 1024
    max_metadata_depth: int = 8
    max_headers: int = 64


@dataclass(frozen=True)
class Source:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None

    @property
    def coordinates(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True)
class ImageRequest:
    id: str
    source: Source
    image: bytes
    content_type: str | None
    encoding: str  # "raw" | "envelope"
    metadata: dict[str, Any] = field(default_factory=dict)


def utf8_safe(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD, so it always encodes as UTF-8."""
    return _SURROGATES.sub("\ufffd", text)


def header_value(headers: list[tuple[str, bytes]] | None, name: str) -> str | None:
    """The last value of a header (names compare case-insensitively), decoded as UTF-8."""
    value = None
    for key, raw in headers or ():
        if isinstance(key, str) and key.lower() == name and raw is not None:
            value = bytes(raw).decode("utf-8", errors="replace")
    return value


def message_id(source: Source, headers: list[tuple[str, bytes]] | None, envelope_id: Any = None, limits: MessageLimits | None = None) -> str:
    """The id rule above, for verdicts and dead letters; never raises.

    An id over the length limit is not used (its message is dead-lettered by :func:`parse_message`
    and the dead letter names the coordinates); an integer id is written in decimal.
    """
    max_chars = (limits or MessageLimits()).max_id_chars
    for candidate in (header_value(headers, ID_HEADER), envelope_id):
        if isinstance(candidate, bool) or not isinstance(candidate, (str, int)):
            continue
        if isinstance(candidate, int) and candidate.bit_length() > 4 * max_chars:  # str() of it could raise
            continue
        text = candidate if isinstance(candidate, str) else str(candidate)
        if text and len(text) <= max_chars:
            return utf8_safe(text)
    return source.coordinates


def parse_message(source: Source, value: bytes | None, headers: list[tuple[str, bytes]] | None, limits: MessageLimits | None = None) -> ImageRequest:
    """Turn one Kafka record into an :class:`ImageRequest`.

    Raises:
        InvalidMessage: empty value, malformed envelope or base64.
        MessageLimitExceeded: over one of the :class:`MessageLimits`.
    """
    limits = limits or MessageLimits()
    if not value:
        raise InvalidMessage("empty message value: no image bytes")
    headers = list(headers or ())
    if len(headers) > limits.max_headers:
        raise MessageLimitExceeded(f"{len(headers)} headers, over the limit of {limits.max_headers}")
    content_type = header_value(headers, CONTENT_TYPE_HEADER)
    header_id = header_value(headers, ID_HEADER)
    if header_id is not None and len(header_id) > limits.max_id_chars:
        raise MessageLimitExceeded(f"{ID_HEADER} header is {len(header_id)} characters, over the limit of {limits.max_id_chars}")
    ctype = (content_type or "").split(";")[0].strip().lower()
    blanks = _LEADING_BLANKS.match(value)  # always matches (possibly nothing)
    start = blanks.end() if blanks is not None else 0
    first = value[start : start + 1]  # one byte: no copy of the rest of a large value
    is_json = ctype in JSON_TYPES or (not ctype.startswith("image/") and first == b"{")
    passthrough = {
        utf8_safe(k): bytes(raw).decode("utf-8", errors="replace")
        for k, raw in headers
        if isinstance(k, str) and k.lower() not in (ID_HEADER, CONTENT_TYPE_HEADER) and raw is not None
    }
    if not is_json:
        _check_metadata(passthrough, limits)
        return ImageRequest(
            id=message_id(source, headers, None, limits),
            source=source,
            image=value,
            content_type=content_type,
            encoding="raw",
            metadata=passthrough,
        )
    envelope = _load_json(value, limits)
    envelope_id, image_b64, metadata = _envelope_fields(envelope, limits)
    merged = {**passthrough, **metadata}
    _check_metadata(merged, limits)
    try:
        image = base64.b64decode(image_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidMessage(f"image.base64 is not valid base64: {exc}") from exc
    return ImageRequest(
        id=message_id(source, headers, envelope_id, limits),
        source=source,
        image=image,
        content_type=None,
        encoding="envelope",
        metadata=merged,
    )


def _load_json(value: bytes, limits: MessageLimits) -> Any:
    """``json.loads`` with its depth checked first (so the parser's recursion is bounded), numbers
    over ``max_number_chars`` refused before ``int()``/``float()`` sees them, and non-finite
    numbers refused (verdicts must stay valid JSON)."""
    depth = json_depth(value, limits.max_json_depth)
    if depth > limits.max_json_depth:
        raise MessageLimitExceeded(f"envelope nests {depth} levels deep, over the limit of {limits.max_json_depth}")

    def number(text: str, convert):
        if len(text) > limits.max_number_chars:
            raise MessageLimitExceeded(f"a number of {len(text)} characters, over the limit of {limits.max_number_chars}")
        out = convert(text)
        if isinstance(out, float) and not math.isfinite(out):
            raise InvalidMessage(f"number {text[:40]} is not finite")
        return out

    def constant(name: str):
        raise InvalidMessage(f"{name} is not valid JSON")

    try:
        return json.loads(value, parse_int=lambda t: number(t, int), parse_float=lambda t: number(t, float), parse_constant=constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidMessage(f"value is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # unreachable below the depth limit; kept so the bound is never the only guard
        raise MessageLimitExceeded("envelope nests too deeply to parse") from exc


def json_depth(value: bytes, at_most: int = 0) -> int:
    """Deepest nesting of ``[``/``{`` in JSON text, strings excluded; linear time, no recursion.

    When the text opens at most ``at_most`` brackets in all (strings included), it cannot nest
    deeper, and that count (a bound, not the depth) is returned: one vectorised pass, about 0.03 ms for a 133 KB envelope
    (a tenth of parsing it). Otherwise: escapes are two characters, so removing ``\\\\`` pairs and
    then ``\\"`` pairs leaves exactly the quotes that open and close strings; every byte but
    quotes and brackets is deleted, the quoted runs dropped, and the rest counted.
    """
    codes = np.frombuffer(value, dtype=np.uint8)
    opened = int(np.count_nonzero((codes | 0x20) == 0x7B))  # "[" is 0x5B, "{" 0x7B
    if opened <= at_most:
        return opened
    structure = value.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in value else value
    structure = _QUOTED.sub(b"", structure.translate(None, _NOT_STRUCTURE))
    codes = np.frombuffer(structure, dtype=np.uint8)
    brackets = codes[(codes == 0x5B) | (codes == 0x7B) | (codes == 0x5D) | (codes == 0x7D)]
    if brackets.size == 0:
        return 0
    steps = np.where((brackets == 0x5B) | (brackets == 0x7B), 1, -1).astype(np.int64)
    return int(np.cumsum(steps).max())


def _envelope_fields(envelope: Any, limits: MessageLimits) -> tuple[str | int | None, str, dict[str, Any]]:
    try:
        env = Envelope.model_validate(envelope)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(utf8_safe(str(x))[:40] for x in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()[:10])
        raise InvalidMessage(f"invalid envelope: {problems}") from exc
    if env.id is not None and len(str(env.id)) > limits.max_id_chars:
        raise MessageLimitExceeded(f"id is {len(str(env.id))} characters long, over the limit of {limits.max_id_chars}")
    return env.id, env.image.base64, env.metadata


def _check_metadata(metadata: dict[str, Any], limits: MessageLimits) -> None:
    """Walk the metadata once, iteratively: bound its depth, entries and encoded size, and make
    every string valid UTF-8 in place (keys too)."""
    entries = 0
    size = 2
    stack: list[tuple[Any, int]] = [(metadata, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limits.max_metadata_depth:
            raise MessageLimitExceeded(f"metadata nests more than {limits.max_metadata_depth} levels deep")
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        entries += len(items)
        if entries > limits.max_metadata_entries:
            raise MessageLimitExceeded(f"metadata has more than {limits.max_metadata_entries} entries")
        for key, child in items:
            if isinstance(key, str):
                size += len(key) + 4
                if _SURROGATES.search(key):
                    node[utf8_safe(key)] = node.pop(key)
                    key = utf8_safe(key)
            if isinstance(child, str):
                size += len(child) + 3
                if _SURROGATES.search(child):
                    node[key] = utf8_safe(child)
            elif isinstance(child, (dict, list)):
                size += 2
                stack.append((child, depth + 1))
            else:
                size += 24
            if size > limits.max_metadata_chars:
                raise MessageLimitExceeded(f"metadata is over the limit of {limits.max_metadata_chars} characters")
