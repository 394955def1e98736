"""A local single-node Ray cluster (``ray start --head --block``) for tests, benchmarks and the
demo: one process group, stopped without touching other Ray instances on the machine."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


class LocalRay:
    def __init__(self, port: int, num_cpus: int | None = None, log_path: Path | None = None, metrics_port: int | None = None) -> None:
        self.port = port
        self.metrics_port = metrics_port  # Ray's Prometheus endpoint (ray_serve_* metrics), when set
        self.num_cpus = num_cpus or os.cpu_count() or 1
        # Ray puts Unix sockets under the temp dir; their paths must stay short.
        self.temp_dir = Path(f"/tmp/ray-moderator-{port}")
        self.log_path = log_path or self.temp_dir.with_suffix(".log")
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> LocalRay:
        ray_bin = Path(sys.executable).with_name("ray")
        if not ray_bin.exists():
            raise RuntimeError("Ray is not installed in this environment: pip install 'moderator[ray]'")
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                str(ray_bin),
                "start",
                "--head",
                "--block",
                f"--port={self.port}",
                f"--num-cpus={self.num_cpus}",
                "--include-dashboard=false",
                "--disable-usage-stats",
                f"--temp-dir={self.temp_dir}",
                *([f"--metrics-export-port={self.metrics_port}"] if self.metrics_port else []),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.proc.returncode}; see {self.log_path}")
            check = subprocess.run([str(ray_bin), "health-check", f"--address={self.address}"], capture_output=True)
            if check.returncode == 0:
                return self
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"Ray did not start within {timeout:.0f}s; see {self.log_path}")

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()
