"""Liveness and readiness, fed by the components that know."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

# What /readyz waits for in the service; each fails until the component that knows reports it.
SERVICE_CHECKS = ("model", "policy", "backend", "broker", "topics")


class Health:
    """Named readiness checks and liveness watchdogs.

    ``/readyz`` means every readiness check passes (broker connected, topics present, model
    loaded, policy compiled, backend ready); a check may carry a note saying why it fails (the
    missing topic's name). ``/healthz`` means every watchdog is fresh: a thread that must make
    progress (the poll loop, the encode thread) calls :meth:`beat`, and its watchdog fails when
    it has not beaten for ``timeout_s`` while it has work pending. A wedged thread makes the
    orchestrator restart the process; a slow broker or backend does not (the loops beat while
    they wait and retry).

    ``required`` names checks that fail until a flag or probe of that name is registered: without
    them, /readyz answered 200 while the model, policy and backend had reported and the Kafka
    worker had not been made yet."""

    def __init__(self, required: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._required = tuple(required)
        self._flags: dict[str, bool] = {}
        self._probes: dict[str, Callable[[], bool]] = {}
        self._notes: dict[str, str] = {}
        self._watchdogs: dict[str, tuple[float, Callable[[], bool]]] = {}
        self._beats: dict[str, float] = {}

    def note(self, name: str, text: str | None) -> None:
        """Why check ``name`` fails (None clears it); shown by /readyz."""
        with self._lock:
            if text is None:
                self._notes.pop(name, None)
            else:
                self._notes[name] = text

    def notes(self) -> dict[str, str]:
        with self._lock:
            return dict(self._notes)

    def watch(self, name: str, timeout_s: float, pending: Callable[[], bool] = lambda: True) -> None:
        """Liveness: ``name`` must :meth:`beat` at least every ``timeout_s`` while ``pending()``."""
        with self._lock:
            self._watchdogs[name] = (timeout_s, pending)
            self._beats[name] = time.monotonic()

    def beat(self, name: str) -> None:
        self._beats[name] = time.monotonic()  # one dict store: no lock needed on the hot path

    def liveness(self) -> dict[str, float | None]:
        """Per watchdog: seconds since its last beat when it is stale, else None."""
        now = time.monotonic()
        with self._lock:
            watchdogs = dict(self._watchdogs)
        out: dict[str, float | None] = {}
        for name, (timeout_s, pending) in watchdogs.items():
            age = now - self._beats.get(name, now)
            try:
                waiting = bool(pending())
            except Exception:  # a failing probe is not evidence of a wedged thread
                waiting = False
            out[name] = round(age, 1) if timeout_s > 0 and age > timeout_s and waiting else None
        return out

    def alive(self) -> bool:
        return all(v is None for v in self.liveness().values())

    def set(self, name: str, ok: bool) -> None:
        with self._lock:
            self._flags[name] = ok

    def probe(self, name: str, check: Callable[[], bool]) -> None:
        with self._lock:
            self._probes[name] = check

    def checks(self) -> dict[str, bool]:
        with self._lock:
            out = {name: False for name in self._required if name not in self._flags and name not in self._probes}
            out.update(self._flags)
            probes = dict(self._probes)
        for name, check in probes.items():
            try:
                ok = bool(check())
            except Exception:  # a failing probe means not ready, never a crashed endpoint
                ok = False
            out[name] = out.get(name, True) and ok  # a flag and a probe of one name must both pass
        return out

    def ready(self) -> bool:
        checks = self.checks()
        return bool(checks) and all(checks.values())
