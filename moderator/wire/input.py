"""Input messages: two encodings on the same topic.

(a) Raw image: the value is the image's bytes; ``content-type`` (optional) and ``moderation-id``
    (optional) headers; every other header is passed through to the verdict's ``metadata``.
(b) JSON envelope: ``{"id": ..., "image": {"base64": ...}, "metadata": {...}}``, recognised by a
    ``content-type: application/json`` header or, without one, by a value starting with ``{``.

The message id is the ``moderation-id`` header, else the envelope's ``id``, else
``topic/partition/offset``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from moderator.errors import InvalidMessage

ID_HEADER = "moderation-id"
CONTENT_TYPE_HEADER = "content-type"
JSON_TYPES = ("application/json", "application/vnd.moderator.envelope+json")
MAX_ID_LENGTH = 256


class EnvelopeImage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base64: str = Field(description="The image bytes, standard base64 (RFC 4648), padding required.")


class Envelope(BaseModel):
    """The JSON envelope encoding of an input message."""

    model_config = ConfigDict(extra="ignore", title="ModeratorInputEnvelope")

    id: StrictStr | StrictInt | None = Field(None, description="Caller's id, echoed in the verdict.")
    image: EnvelopeImage
    metadata: dict[str, Any] = Field(default_factory=dict, description="Passed through to the verdict unchanged.")


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


def header_value(headers: list[tuple[str, bytes]] | None, name: str) -> str | None:
    """The last value of a header (names compare case-insensitively), decoded as UTF-8."""
    value = None
    for key, raw in headers or ():
        if key.lower() == name and raw is not None:
            value = raw.decode("utf-8", errors="replace")
    return value


def message_id(source: Source, headers: list[tuple[str, bytes]] | None, envelope_id: Any = None) -> str:
    """The id rule above; used for dead letters too, when the envelope could not be read."""
    candidate = header_value(headers, ID_HEADER)
    if not candidate and envelope_id is not None:
        candidate = str(envelope_id)
    if not candidate:
        return source.coordinates
    return candidate[:MAX_ID_LENGTH]


def parse_message(source: Source, value: bytes | None, headers: list[tuple[str, bytes]] | None) -> ImageRequest:
    """Turn one Kafka record into an :class:`ImageRequest`.

    Raises:
        InvalidMessage: empty value, malformed envelope or base64.
    """
    if not value:
        raise InvalidMessage("empty message value: no image bytes")
    content_type = header_value(headers, CONTENT_TYPE_HEADER)
    ctype = (content_type or "").split(";")[0].strip().lower()
    is_json = ctype in JSON_TYPES or (not ctype.startswith("image/") and value[:64].lstrip()[:1] == b"{")
    passthrough = {
        k: raw.decode("utf-8", errors="replace")
        for k, raw in (headers or ())
        if k.lower() not in (ID_HEADER, CONTENT_TYPE_HEADER) and raw is not None
    }
    if not is_json:
        return ImageRequest(
            id=message_id(source, headers), source=source, image=value, content_type=content_type,
            encoding="raw", metadata=passthrough,
        )
    try:
        env = Envelope.model_validate(json.loads(value))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidMessage(f"value is not valid JSON: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors())
        raise InvalidMessage(f"invalid envelope: {problems}") from exc
    try:
        image = base64.b64decode(env.image.base64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidMessage(f"image.base64 is not valid base64: {exc}") from exc
    return ImageRequest(
        id=message_id(source, headers, env.id), source=source, image=image, content_type=None,
        encoding="envelope", metadata={**passthrough, **env.metadata},
    )
