"""Dead letters: the original key, value and headers unchanged, plus headers saying why.

Building a dead letter cannot fail: it is what every other failure about a message turns into.
Each header value is made valid UTF-8 (lone surrogates replaced) and bounded in length; the
original headers are passed through as the broker gave them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from moderator.errors import MessageError
from moderator.wire.input import Source, utf8_safe

PREFIX = "moderator-"
MAX_MESSAGE_CHARS = 1000
MAX_ID_CHARS = 1000
VALUE_OMITTED_HEADER = PREFIX + "value-omitted"


def dead_letter_headers(
    original: list[tuple[str, bytes]] | None,
    source: Source,
    message_id: str,
    error: MessageError,
    extra: dict[str, str] | None = None,
) -> list[tuple[str, bytes]]:
    """Original headers unchanged and first, then ``moderator-*`` headers describing the failure.

    ``extra`` adds further ``moderator-*`` headers (e.g. ``value-omitted`` with its reason).
    """
    ours = {
        "error-class": type(error).__name__,
        "error-reason": str(getattr(error, "reason", "processing_error")),
        "error-message": _text(error, MAX_MESSAGE_CHARS),
        "input-id": _text(message_id, MAX_ID_CHARS),
        "source-topic": str(source.topic),
        "source-partition": str(source.partition),
        "source-offset": str(source.offset),
        "failed-at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        **(extra or {}),
    }
    kept = [(k, v) for k, v in (original or ()) if isinstance(k, str) and isinstance(v, (bytes, type(None)))]
    return [(utf8_safe(k), v) for k, v in kept] + [(PREFIX + k, utf8_safe(v).encode("utf-8")) for k, v in ours.items()]


def _text(value: object, limit: int) -> str:
    try:
        text = str(value)
    except Exception as exc:  # an exception whose __str__ fails still gets a dead letter
        text = f"<unprintable {type(value).__name__}: {type(exc).__name__}>"
    return utf8_safe(text[:limit])
