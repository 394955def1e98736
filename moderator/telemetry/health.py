"""Liveness and readiness, fed by the components that know."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Health:
    """Named readiness checks. ``/healthz`` means the process serves HTTP; ``/readyz`` means every
    check passes (broker connected, model loaded, policy compiled, backend ready)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags: dict[str, bool] = {}
        self._probes: dict[str, Callable[[], bool]] = {}

    def set(self, name: str, ok: bool) -> None:
        with self._lock:
            self._flags[name] = ok

    def probe(self, name: str, check: Callable[[], bool]) -> None:
        with self._lock:
            self._probes[name] = check

    def checks(self) -> dict[str, bool]:
        with self._lock:
            out = dict(self._flags)
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
