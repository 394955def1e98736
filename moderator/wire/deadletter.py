"""Dead letters: the original key, value and headers unchanged, plus headers saying why."""

from __future__ import annotations

from datetime import UTC, datetime

from moderator.errors import MessageError
from moderator.wire.input import Source

PREFIX = "moderator-"
MAX_MESSAGE_CHARS = 1000


def dead_letter_headers(
    original: list[tuple[str, bytes]] | None, source: Source, message_id: str, error: MessageError
) -> list[tuple[str, bytes]]:
    """Original headers unchanged and first, then ``moderator-*`` headers describing the failure."""
    ours = {
        "error-class": type(error).__name__,
        "error-reason": error.reason,
        "error-message": str(error)[:MAX_MESSAGE_CHARS],
        "input-id": message_id,
        "source-topic": source.topic,
        "source-partition": str(source.partition),
        "source-offset": str(source.offset),
        "failed-at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    return list(original or ()) + [(PREFIX + k, v.encode("utf-8")) for k, v in ours.items()]
