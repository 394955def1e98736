"""Hot reload: on a change of the policy file (polled) or on request (SIGHUP), compile the new
policy beside the old one and swap it in atomically; a policy that fails keeps the old one serving.

The reload thread (:class:`~moderator.reloading.Reloader`) cannot die: any exception in a reload
is a failed reload (old policy kept, ``moderator_policy_reloads_total{result="failed"}``, one
log line), and the loop itself is supervised, so a later good edit is still picked up. While the file on disk differs from the
policy being served, ``moderator_policy_stale`` is 1.

The policy package stays below the pipeline: the reloader swaps through a :class:`PolicyTarget`
(the pipeline's ``Processor.set_policy``, one reference assignment; each batch reads the policy
once, so no batch is scored by a half-loaded policy and every verdict names the version that
scored it) and reports through a :class:`ReloadReporter` (the telemetry side's ``Metrics``).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Protocol

from moderator.encoders.base import Encoder
from moderator.errors import BackendError, PolicyError
from moderator.policy.cache import EmbeddingCache
from moderator.policy.compile import CompiledPolicy, compile_policy
from moderator.policy.loader import load_policy
from moderator.reloading import Reloader

log = logging.getLogger(__name__)

ROLES = ("primary", "shadow")


class PolicyTarget(Protocol):
    """Where compiled policies are served from (the pipeline's ``Processor``)."""

    encoder: Encoder

    def policy_for(self, role: str) -> CompiledPolicy | None: ...

    def set_policy(self, role: str, policy: CompiledPolicy) -> None: ...


class ReloadReporter(Protocol):
    """Who is told how reloads went (the telemetry side's ``Metrics``)."""

    def policy_reloaded(self, role: str, policy: CompiledPolicy) -> None: ...

    def policy_reload_failed(self, role: str) -> None: ...


class PolicyReloader(Reloader):
    """Reloads one policy file into the target's ``primary`` or ``shadow`` role."""

    name = "policy-reload"

    def __init__(
        self, path: Path, target: PolicyTarget, reporter: ReloadReporter, interval_s: float, role: str = "primary", cache: EmbeddingCache | None = None
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        self.path = path
        self.target = target
        self.reporter = reporter
        self.role = role
        self.cache = cache
        super().__init__(interval_s)

    def fingerprint(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def reload(self) -> bool:
        """Compile and swap; returns False (old policy kept) on any error, whatever it is."""
        old = self.target.policy_for(self.role)
        was = f"{old.name}@{old.version}" if old is not None else "none"
        try:
            compiled = compile_policy(load_policy(self.path), self.target.encoder, self.cache)
        except Exception as exc:
            self.reporter.policy_reload_failed(self.role)
            if isinstance(exc, (PolicyError, BackendError)):
                log.error("%s policy reload failed; still serving %s: %s", self.role, was, exc)
            else:
                log.exception("%s policy reload failed unexpectedly; still serving %s: %s: %s", self.role, was, type(exc).__name__, exc)
            return False
        self.target.set_policy(self.role, compiled)
        self.reporter.policy_reloaded(self.role, compiled)
        log.info("%s policy reloaded: %s -> %s@%s", self.role, was, compiled.name, compiled.version)
        return True
