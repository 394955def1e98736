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


DEAD_LETTER_REASONS: tuple[str, ...] = (
    InvalidMessage.reason,
    UnsupportedFormat.reason,
    UndecodableImage.reason,
    ImageTooLarge.reason,
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
