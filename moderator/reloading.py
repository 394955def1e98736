"""The hot-reload loop shared by policies and hash banks: poll a fingerprint of the files (or
wait for a request, e.g. SIGHUP), rebuild beside what is serving, swap on success, keep the old
on failure.

The thread cannot die: any exception in a reload is a failed reload, and the loop itself is
supervised, so a later good edit is still picked up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable

log = logging.getLogger(__name__)


class Reloader:
    """Subclasses give :meth:`fingerprint` (cheap; None when unreadable) and :meth:`reload`
    (returns False on failure, never raises)."""

    name = "reload"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._seen = self.fingerprint()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)

    def fingerprint(self) -> Hashable | None:
        raise NotImplementedError

    def reload(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def request(self) -> None:
        """Reload now (signal-safe: only sets an event)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as exc:  # supervision: a bug here must not end reloading for good
                log.exception("%s loop error (reloading goes on): %s", self.name, exc)
                self._stop.wait(max(self.interval_s, 1.0))

    def _step(self) -> None:
        requested = self._wake.wait(self.interval_s if self.interval_s > 0 else None)
        self._wake.clear()
        if self._stop.is_set():
            return
        current = self.fingerprint()
        if requested or (current is not None and current != self._seen):
            self._seen = current
            self.reload()
