"""The one error hierarchy, grouped by what the service does about each error.

- :class:`MessageError` and subclasses: the message is skipped to the dead-letter topic, with
  ``reason`` (a closed set, used as a metric label) and a human message in its headers.
- :class:`BackendError`: retried with backoff; while it lasts, consumption pauses and nothing
  past the failing message is committed. (Producer failures are kafka-python's errors and are
  handled the same way by ``stream.delivery``.)
- :class:`StartupError`: the service refuses to start and says why.
"""

from __future__ import annotations


class ModeratorError(Exception):
    """Base of every error this package raises on purpose."""


# --- skip to the dead-letter topic -------------------------------------------------------------


class MessageError(ModeratorError):
    """A message that can never be scored; it goes to the dead-letter topic."""

    reason = "invalid_message"


class InvalidMessage(MessageError):
    """The message is not one of the input wire formats (empty, bad envelope, bad base64)."""

    reason = "invalid_message"


class UnsupportedFormat(MessageError):
    """The bytes are not an image in a supported format (JPEG, PNG, WebP, GIF, BMP, TIFF)."""

    reason = "unsupported_format"


class UndecodableImage(MessageError):
    """The image format was recognised but the data is corrupt or truncated."""

    reason = "undecodable_image"


class ImageTooLarge(MessageError):
    """The image exceeds the byte, pixel or side limits (decompression bombs land here)."""

    reason = "image_too_large"


class MessageLimitExceeded(MessageError):
    """The envelope or its headers exceed a parsing bound (nesting depth, id length, metadata
    size, number length): refused before the part over the bound is built."""

    reason = "message_limit_exceeded"


class UnreadableRecord(MessageError):
    """The Kafka client could not parse the record (corrupt batch, unreadable header, codec
    failure); it is skipped by offset and reported with its coordinates, its value omitted."""

    reason = "unreadable_record"


class ProcessingFailed(MessageError):
    """An unexpected exception while handling one message (a bug, or an input nobody foresaw):
    the per-message fault boundary turns it into this message's dead letter, never a stop."""

    reason = "processing_error"


DEAD_LETTER_REASONS: tuple[str, ...] = (
    InvalidMessage.reason,
    UnsupportedFormat.reason,
    UndecodableImage.reason,
    ImageTooLarge.reason,
    MessageLimitExceeded.reason,
    UnreadableRecord.reason,
    ProcessingFailed.reason,
)


# --- retry, then pause consumption -------------------------------------------------------------


class BackendError(ModeratorError):
    """The encoder backend failed or is unavailable; the batch is retried with backoff."""


# --- refuse to start ---------------------------------------------------------------------------


class StartupError(ModeratorError):
    """Configuration, model or policy is unusable; the service does not start."""


class SettingsError(StartupError):
    """Settings (environment or YAML file) failed validation."""


class BackendUnavailable(StartupError):
    """A remote encoder backend stayed unreachable for ``encoder.startup_timeout_s`` at start."""


class ModelError(StartupError):
    """A model directory is missing files, fails its checksums or cannot be loaded."""


class PolicyError(StartupError):
    """A policy file is unreadable or invalid."""


class BankError(StartupError):
    """A hash bank file or directory is unreadable or invalid (at start the service refuses to
    start; on a reload the banks in service are kept)."""
