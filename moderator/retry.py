"""Retrying with exponential backoff and full jitter: the one helper every retry in the service uses.

Full jitter (each wait drawn uniformly from zero to the exponential cap) spreads the retries of
many workers that failed together (a broker or an encoder coming back) instead of bringing them
back in lock-step. Written here rather than taken from tenacity: besides the blocking loop
(:func:`retry`), delivery needs only the delay of an attempt for its own scheduler
(:meth:`Backoff.delay`), and the loop must wait on the worker's stop event.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Waits before attempt ``n + 1`` (``n`` from 0): uniform in ``[0, min(max_s, initial_s * 2**n)]``."""

    initial_s: float
    max_s: float

    @classmethod
    def from_ms(cls, initial_ms: float, max_ms: float) -> Backoff:
        return cls(initial_ms / 1e3, max(initial_ms, max_ms) / 1e3)

    def cap(self, attempt: int) -> float:
        return min(self.max_s, self.initial_s * 2.0 ** min(attempt, 64))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        return (rng or random).uniform(0.0, self.cap(attempt))


class RetryStopped(Exception):
    """The retry loop gave up: its stop event was set or its deadline passed. ``last`` is the last error."""

    def __init__(self, last: BaseException, attempts: int) -> None:
        super().__init__(str(last))
        self.last = last
        self.attempts = attempts


def retry(
    step: Callable[[], T],
    *,
    on: type[BaseException] | tuple[type[BaseException], ...],
    backoff: Backoff,
    stop: threading.Event | None = None,
    timeout_s: float | None = None,
    attempts: int | None = None,
    on_failure: Callable[[BaseException, int, float], None] | None = None,
) -> T:
    """Run ``step`` until it returns, retrying the exceptions in ``on`` with backoff.

    ``on_failure(exc, attempt, delay)`` is called before each wait (log, count, mark unready).
    Other exceptions propagate at once.

    Raises:
        RetryStopped: ``stop`` was set, ``timeout_s`` passed or ``attempts`` were used up, with the
            last error; the caller turns it into its own error (or gives up quietly).
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    attempt = 0
    while True:
        try:
            return step()
        except on as exc:
            attempt += 1
            left = None if deadline is None else deadline - time.monotonic()
            if (stop is not None and stop.is_set()) or (left is not None and left <= 0) or (attempts is not None and attempt >= attempts):
                raise RetryStopped(exc, attempt) from exc
            delay = backoff.delay(attempt - 1)
            if left is not None:
                delay = min(delay, left)
            if on_failure is not None:
                on_failure(exc, attempt, delay)
            if stop is not None:
                if stop.wait(delay):
                    raise RetryStopped(exc, attempt) from exc
            else:
                time.sleep(delay)
