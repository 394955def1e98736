"""Errors of the stream package."""

from __future__ import annotations

from moderator.errors import ModeratorError


class OffsetOrderError(ModeratorError):
    """An offset was tracked that is not after the previous one of its partition (a bug, or a
    seek the worker did not make); committing past it could lose messages, so the worker stops."""


class RebalanceError(ModeratorError):
    """An error raised inside a rebalance callback, wrapped so it is not mistaken for a poll error."""
