"""The per-message fault boundary: the one place where a failure about one message becomes that
message's dead letter.

Every step that concerns a single message (parsing, decoding, preprocessing, building and
serialising its verdict) runs through :func:`contain`. A :class:`~moderator.errors.MessageError`
passes through as it is; any other exception (a bug, or an input nobody foresaw) becomes a
:class:`~moderator.errors.ProcessingFailed` for that message and is logged with its traceback.
Only failures of shared things cross the boundary: :class:`~moderator.errors.BackendError` (the
encoder) and whatever is not an :class:`Exception` (``KeyboardInterrupt``, ``SystemExit``).
Broker failures never reach it: they belong to the poll loop and to delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from moderator.errors import BackendError, MessageError, ProcessingFailed

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_DETAIL_CHARS = 300


def contain(what: str, step: Callable[[], T]) -> T | MessageError:
    """Run ``step``; return its result, or the :class:`MessageError` that ends this message.

    Raises:
        BackendError: a shared failure, never one message's fault.
    """
    try:
        return step()
    except MessageError as exc:
        return exc
    except BackendError:
        raise
    except Exception as exc:
        return unexpected(what, exc)


def unexpected(what: str, exc: BaseException) -> ProcessingFailed:
    """The dead-letter error for an exception nobody planned for (logged with its traceback)."""
    log.warning("%s failed unexpectedly (%s); the message goes to the dead-letter topic", what, type(exc).__name__, exc_info=exc)
    try:
        detail = str(exc)
    except Exception:  # an exception whose __str__ fails
        detail = "<unprintable>"
    return ProcessingFailed(f"{what} failed unexpectedly ({type(exc).__name__}): {detail[:MAX_DETAIL_CHARS]}")
