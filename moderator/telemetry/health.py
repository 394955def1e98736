"""Liveness and readiness, fed by the components that know."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

# What /readyz waits for in the service; each fails until the component that knows reports it.
SERVICE_CHECKS = ("model", "policy", "backend", "broker")


class Health:
    """Named readiness checks. ``/healthz`` means the process serves HTTP; ``/readyz`` means every
    check passes (broker connected, model loaded, policy compiled, backend ready).

    ``required`` names checks that fail until a flag or probe of that name is registered: without
    them, /readyz answered 200 while the model, policy and backend had reported and the Kafka
    worker had not been made yet."""

    def __init__(self, required: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._required = tuple(required)
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
