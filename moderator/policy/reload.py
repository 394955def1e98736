"""Hot reload: on a change of the policy file (polled) or on request (SIGHUP), compile the new
policy beside the old one and swap it in atomically; a policy that fails keeps the old one serving.

The reload thread cannot die: any exception in a reload is a failed reload (old policy kept,
``moderator_policy_reloads_total{result="failed"}``, one log line), and the loop itself is
supervised, so a later good edit is still picked up. While the file on disk differs from the
policy being served, ``moderator_policy_stale`` is 1.

The swap is one attribute assignment on the :class:`~moderator.processing.Processor`; each batch
reads the policy once (``Processor.score_batch``), so no batch is scored by a half-loaded policy
and every verdict names the version that scored it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

from moderator.errors import BackendError, PolicyError
from moderator.policy.compile import compile_policy
from moderator.policy.cache import EmbeddingCache
from moderator.policy.loader import load_policy
from moderator.processing import Processor
from moderator.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


class PolicyReloader:
    """Reloads one policy file into the processor's ``policy`` (role "primary") or ``shadow`` slot."""

    def __init__(self, path: Path, processor: Processor, metrics: Metrics, interval_s: float,
                 role: str = "primary", cache: EmbeddingCache | None = None) -> None:
        self.path = path
        self.processor = processor
        self.metrics = metrics
        self.interval_s = interval_s
        self.role = role
        self.cache = cache
        self._slot = "policy" if role == "primary" else "shadow"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._seen = self._fingerprint()
        self._thread = threading.Thread(target=self._loop, name="policy-reload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request(self) -> None:
        """Reload now (signal-safe: only sets an event)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(5)

    def _fingerprint(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as exc:  # supervision: a bug here must not end reloading for good
                log.exception("%s policy reload loop error (reloading goes on): %s", self.role, exc)
                self._stop.wait(max(self.interval_s, 1.0))

    def _step(self) -> None:
        requested = self._wake.wait(self.interval_s if self.interval_s > 0 else None)
        self._wake.clear()
        if self._stop.is_set():
            return
        current = self._fingerprint()
        if requested or (current is not None and current != self._seen):
            self._seen = current
            self.reload()

    def reload(self) -> bool:
        """Compile and swap; returns False (old policy kept) on any error, whatever it is."""
        old = getattr(self.processor, self._slot)
        was = f"{old.name}@{old.version}" if old is not None else "none"
        try:
            compiled = compile_policy(load_policy(self.path), self.processor.encoder, self.cache)
        except Exception as exc:
            self.metrics.policy_reloads.labels(self.role, "failed").inc()
            self.metrics.policy_stale.labels(self.role).set(1)
            if isinstance(exc, (PolicyError, BackendError)):
                log.error("%s policy reload failed; still serving %s: %s", self.role, was, exc)
            else:
                log.exception("%s policy reload failed unexpectedly; still serving %s: %s: %s",
                              self.role, was, type(exc).__name__, exc)
            return False
        if self.role == "primary":
            self.metrics.add_categories(compiled.categories)
            self.metrics.policy_info.info({"name": compiled.name, "version": compiled.version, "label": compiled.label})
        setattr(self.processor, self._slot, compiled)
        self.metrics.policy_reloads.labels(self.role, "ok").inc()
        self.metrics.policy_stale.labels(self.role).set(0)
        log.info("%s policy reloaded: %s -> %s@%s", self.role, was, compiled.name, compiled.version)
        return True
