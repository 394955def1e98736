"""Run ``moderator run`` as a child process, configured through MODERATOR_* variables."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from moderator.settings import ENV_PREFIX

_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    """The first port the kernel hands to outgoing connections (Linux's default: 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Below the kernel's ephemeral range (so no outgoing connection is ever given one of these ports as
# its local port) and above Ray's worker ports (10002-19999 by default).
_LOWEST = 20000


def free_port(count: int = 1) -> int:
    """The first of ``count`` consecutive ports free now and not handed out before by this process.

    Ports are chosen before the servers that bind them start, so two things bear on the choice:
    the kernel may offer a free port twice (a Triton server not started yet and a service's
    telemetry port, say), hence ``_handed_out``; and a port from the ephemeral range may be taken
    in between as the local end of any outgoing connection (a Kafka client's, say: a broker then
    failed with "Address already in use"), hence ports below that range.
    """
    rng = random.Random()
    low = _ephemeral_low()
    high = (low if low > _LOWEST + count else 65536) - count  # no room below: anywhere
    for _ in range(1000):
        base = rng.randint(_LOWEST, high)
        block = range(base, base + count)
        if _handed_out.intersection(block) or not all(_bindable(p) for p in block):
            continue
        _handed_out.update(block)
        return base
    raise RuntimeError(f"no {count} consecutive free ports between {_LOWEST} and {high + count}")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def settings_env(settings: dict[str, Any], prefix: str = ENV_PREFIX) -> dict[str, str]:
    """Flatten nested settings into environment variables (``__`` between levels)."""
    env: dict[str, str] = {}
    for key, value in settings.items():
        name = prefix + key.upper()
        if isinstance(value, dict):
            env.update(settings_env(value, name + "__"))
        elif isinstance(value, (list, tuple)):
            env[name] = ",".join(str(v) for v in value)
        else:
            env[name] = str(value)
    return env


class ServiceProcess:
    def __init__(self, settings: dict[str, Any], log_path: Path, cwd: Path | None = None) -> None:
        self.port = free_port()
        settings = {**settings, "telemetry": {"host": "127.0.0.1", "port": self.port, **settings.get("telemetry", {})}}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        self.env.update(settings_env(settings))
        self.env["PYTHONUNBUFFERED"] = "1"
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    @property
    def _proc(self) -> subprocess.Popen:
        if self.proc is None:
            raise RuntimeError("not started")
        return self.proc

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moderator", "run"],
            env=self.env,
            cwd=self.cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait for /readyz to answer 200; raise with the log's tail if the process exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"service exited with {self._proc.returncode} before it was ready:\n{self.log_tail()}")
            try:
                status, _ = self.get("/readyz")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"service not ready after {timeout}s:\n{self.log_tail()}")

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """One sample from /metrics (None if absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        _, body = self.get("/metrics")
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                    return sample.value
        return None

    def readiness(self) -> dict[str, Any]:
        return json.loads(self.get("/readyz")[1])

    def terminate(self, timeout: float = 90.0) -> int:
        """SIGTERM and wait for the exit code."""
        self._proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        self._proc.kill()
        self._proc.wait(10)

    def wait(self, timeout: float) -> int:
        try:
            return self._proc.wait(timeout)
        finally:
            if self._proc.poll() is not None:
                self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
